"""Social agent: posts, captions and hashtag packs per platform."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl, UrlConstraints

from agents.context import RunContext
from agents.registry import Agent, AgentInput, IntentSpec, registry

Platform = Literal["x", "linkedin", "instagram", "facebook"]
# What each platform accepts in one post.
MAX_CHARS: dict[str, int] = {"x": 280, "linkedin": 3000, "instagram": 2200, "facebook": 5000}


class GeneratePostInput(AgentInput):
    platform: Platform
    topic: str = Field(min_length=1, max_length=300)
    link: Annotated[HttpUrl, UrlConstraints(max_length=500)] | None = None


class SocialPost(BaseModel):
    platform: Platform
    text: str = Field(min_length=1)
    hashtags: list[str]


class OptimizeCaptionInput(AgentInput):
    platform: Platform
    caption: str = Field(min_length=1, max_length=5000)


class CaptionOptions(BaseModel):
    platform: Platform
    options: list[str] = Field(min_length=1, max_length=5)


class HashtagPackInput(AgentInput):
    topic: str = Field(min_length=1, max_length=300)
    count: int = Field(10, ge=3, le=30)


class HashtagPack(BaseModel):
    hashtags: list[str]


class _Drafted(BaseModel):
    text: str = Field(min_length=1)
    hashtags: list[str] = Field(max_length=10)


class _Captions(BaseModel):
    options: list[str] = Field(min_length=1, max_length=5)


class _Tags(BaseModel):
    hashtags: list[str] = Field(min_length=1, max_length=30)


def normalize_hashtags(raw: list[str], limit: int) -> list[str]:
    """`#OneWord` tags, deduplicated case-insensitively, in the order given."""
    seen: set[str] = set()
    tags: list[str] = []
    for item in raw:
        word = re.sub(r"[^\w]", "", item)
        if word and word.lower() not in seen:
            seen.add(word.lower())
            tags.append(f"#{word}")
    return tags[:limit]


def fit(text: str, platform: str) -> str:
    """Cut to the platform's limit at a word boundary, with an ellipsis."""
    limit = MAX_CHARS[platform]
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"


@registry.register
class SocialAgent(Agent):
    name = "social"
    version = "1"
    description = "Writes social posts and captions that fit each platform, and hashtag packs."
    intents = (
        IntentSpec("generate-post", GeneratePostInput, SocialPost),
        IntentSpec("optimize-caption", OptimizeCaptionInput, CaptionOptions),
        IntentSpec("hashtag-pack", HashtagPackInput, HashtagPack),
    )
    tools = frozenset({"llm"})
    time_limit_seconds = 60.0

    def generate_post(self, ctx: RunContext, data: GeneratePostInput) -> SocialPost:
        drafted = ctx.llm(
            f"Write a {data.platform} post (at most {MAX_CHARS[data.platform]} characters) "
            f"about {data.topic!r}, with up to 5 hashtags.",
            _Drafted,
        )
        text = drafted.text if data.link is None else f"{drafted.text} {data.link}"
        return SocialPost(
            platform=data.platform,
            text=fit(text, data.platform),
            hashtags=normalize_hashtags(drafted.hashtags, 5),
        )

    def optimize_caption(self, ctx: RunContext, data: OptimizeCaptionInput) -> CaptionOptions:
        captions = ctx.llm(
            f"Suggest up to 3 stronger {data.platform} captions than: {data.caption}", _Captions
        )
        return CaptionOptions(
            platform=data.platform, options=[fit(o, data.platform) for o in captions.options]
        )

    def hashtag_pack(self, ctx: RunContext, data: HashtagPackInput) -> HashtagPack:
        tags = ctx.llm(f"Suggest {data.count} hashtags for {data.topic!r}.", _Tags)
        return HashtagPack(hashtags=normalize_hashtags(tags.hashtags, data.count))
