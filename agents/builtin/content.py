"""Content agent: drafts, summaries and repurposed copy for event marketing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agents.context import RunContext
from agents.registry import Agent, AgentInput, IntentSpec, registry

Tone = Literal["friendly", "professional", "playful", "urgent"]
Format = Literal["tweet", "linkedin", "email", "blog_intro"]


class GenerateDraftInput(AgentInput):
    topic: str = Field(min_length=1, max_length=200)
    audience: str = Field("event attendees", max_length=200)
    tone: Tone = "friendly"
    length: Literal["short", "medium", "long"] = "medium"
    keywords: list[str] = Field(default_factory=list, max_length=10)


class Draft(BaseModel):
    title: str = Field(max_length=120)
    body: str = Field(min_length=1)
    call_to_action: str = Field(max_length=120)
    keywords: list[str] = Field(max_length=10)


class SummarizeInput(AgentInput):
    text: str = Field(min_length=1, max_length=50_000)
    max_sentences: int = Field(3, ge=1, le=10)


class Summary(BaseModel):
    summary: str = Field(min_length=1)
    key_points: list[str] = Field(min_length=1, max_length=10)


class RepurposeInput(AgentInput):
    text: str = Field(min_length=1, max_length=20_000)
    formats: list[Format] = Field(min_length=1, max_length=4)


class RepurposedItem(BaseModel):
    format: Format
    content: str = Field(min_length=1)


class Repurposed(BaseModel):
    items: list[RepurposedItem]


_WORDS = {"short": 80, "medium": 200, "long": 500}


@registry.register
class ContentAgent(Agent):
    name = "content"
    version = "1"
    description = "Writes drafts, summaries and repurposed copy for an event's marketing."
    intents = (
        IntentSpec("generate-draft", GenerateDraftInput, Draft, "A titled draft with a CTA."),
        IntentSpec("summarize", SummarizeInput, Summary, "A summary with key points."),
        IntentSpec("repurpose", RepurposeInput, Repurposed, "One text in several formats."),
    )
    tools = frozenset({"llm"})
    time_limit_seconds = 60.0

    def generate_draft(self, ctx: RunContext, data: GenerateDraftInput) -> Draft:
        return ctx.llm(
            f"Write a {data.tone} {data.length} draft (about {_WORDS[data.length]} words) "
            f"about {data.topic!r} for {data.audience}. "
            f"Use these keywords where natural: {', '.join(data.keywords) or 'none'}.",
            Draft,
            system="You write concise, concrete marketing copy for live events.",
        )

    def summarize(self, ctx: RunContext, data: SummarizeInput) -> Summary:
        summary = ctx.llm(
            f"Summarize in at most {data.max_sentences} sentences and list key points:\n"
            f"{data.text}",
            Summary,
            temperature=0.2,
        )
        ctx.metric("summary.compression", len(summary.summary) / len(data.text))
        return summary

    def repurpose(self, ctx: RunContext, data: RepurposeInput) -> Repurposed:
        result = ctx.llm(
            f"Rewrite the text below as: {', '.join(data.formats)}. One item per format.\n"
            f"{data.text}",
            Repurposed,
        )
        # Keep the formats asked for, in the order asked, whatever the model returned.
        by_format = {item.format: item for item in result.items}
        missing = [f for f in data.formats if f not in by_format]
        if missing:
            ctx.metric("repurpose.missing_formats", len(missing))
        return Repurposed(items=[by_format[f] for f in data.formats if f in by_format])
