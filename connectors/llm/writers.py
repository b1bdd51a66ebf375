"""Readable demo texts for the fake LLM: one writer per kind of structured answer we ask for.

Without an LLM, the product still shows what the LLM would have written - polls, prompts, email
sequences, posts - so the fake must write something an organizer can read: short, grammatical,
about the session or event at hand. What to write is keyed on the request's `schema_name` (the
output model's class name, which every caller sets with its `json_schema`), never guessed from
the prompt's wording. Only the subject (a session's topic, an event or product name), the
audience and a count are read from the prompt, each with a default when the prompt says nothing
recognisable.

Each writer picks among several templates with the request's seed, so the same prompt gets the
same text and a session's successive moments (whose prompts differ in their numbers) get varied
ones. A writer's answer is used only when its fields are the schema's (`write`): a schema that
changed shape gets the generic `fake_instance` instead of a stale answer.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Texts that sit inside short fields (a poll question, a 60-character headline) carry the subject
# cut to this many characters at a word boundary.
SHORT_SUBJECT = 30
LONG_SUBJECT = 60
DEFAULT_SUBJECT = "this session"

# A Python string literal, as the prompts quote values with `!r`.
_LITERAL = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""
# The live decision's prompt (conductor.live.decide): the session's title, then its topic.
_LIVE = re.compile(rf"^Live session (?P<title>{_LITERAL}) about (?P<topic>.+?): engagement is")
_QUOTED = re.compile(_LITERAL)
_AUDIENCE = re.compile(r"^\s*,?\s*(?:for|to|aimed at) (?P<audience>[^.,:;\n]+)")
_KEYWORDS = re.compile(r"keywords where natural: (?P<keywords>[^.\n]+)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NO_LITERAL_SUBJECT = "its subject"  # what the live prompt says for a session without a topic


@dataclass(frozen=True)
class Brief:
    """What a prompt asks about: `subject` (clean, one phrase), `audience`, and the whole text."""

    subject: str
    audience: str
    prompt: str

    def short(self, limit: int = SHORT_SUBJECT) -> str:
        """The subject cut at a word boundary to at most `limit` characters."""
        return _cut(self.subject, limit)

    def number(self, pattern: str, default: int, low: int, high: int) -> int:
        """The integer `pattern`'s first group finds in the prompt, within [low, high]."""
        found = re.search(pattern, self.prompt)
        value = int(found.group(1)) if found else default
        return max(low, min(high, value))

    def body(self) -> str:
        """The text after the prompt's first line: what to summarize or rewrite."""
        _, _, rest = self.prompt.partition("\n")
        return rest.strip()


def brief_of(prompt: str) -> Brief:
    """Read the subject and audience of `prompt` (the last user message)."""
    first_line = prompt.split("\n", 1)[0]
    live = _LIVE.match(first_line)
    audience = ""
    if live is not None:
        topic = live.group("topic")
        subject = _unquote(live.group("title")) if topic == _NO_LITERAL_SUBJECT else topic
        audience = "attendees"
    else:
        quoted = _QUOTED.search(first_line)
        if quoted is not None:
            subject = _unquote(quoted.group())
            after = _AUDIENCE.match(first_line[quoted.end() :])
            audience = after.group("audience") if after else ""
        else:
            body = prompt.partition("\n")[2] or first_line
            subject = _first_sentence(body)
    return Brief(subject=clean(subject) or DEFAULT_SUBJECT, audience=clean(audience), prompt=prompt)


def clean(text: str) -> str:
    """One phrase: no quotes, no line breaks, no sentence breaks, no trailing punctuation."""
    text = re.sub(r"[\"'`\u2018\u2019\u201c\u201d]", "", text)
    # A full stop inside would make a one-sentence prompt two sentences.
    text = re.sub(r"[.!?]+(?=\s|$)", "", " ".join(text.split()))
    return text.strip(" ,;:-")


def _unquote(literal: str) -> str:
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal[1:-1]
    return value if isinstance(value, str) else literal[1:-1]


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-") or text[:limit]


def _first_sentence(text: str) -> str:
    sentences = _sentences(text)
    return sentences[0] if sentences else ""


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(" ".join(text.split())) if part.strip()]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _hashtag(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "#" + "".join(word if word.isupper() else word.capitalize() for word in words)


# -- the live session's interventions (conductor.live.content) ----------------------------------

_POLLS = (
    ("Which part of {t} should we dig into next?",
     ["Real examples", "The basics", "Tools and tips", "Your questions"]),
    ("What is your biggest challenge with {t}?",
     ["Getting started", "Finding the time", "Choosing tools", "Convincing my team"]),
    ("How familiar are you with {t}?",
     ["Brand new to it", "Tried it once", "Use it often", "Could teach it"]),
    ("What would help you most with {t} right now?",
     ["A live demo", "A checklist", "Real stories", "Time for questions"]),
    ("Where would you use {t} first?",
     ["At work", "In a side project", "With my team", "Not sure yet"]),
    ("How should we spend the next ten minutes on {t}?",
     ["A live demo", "A deep dive", "Open questions"]),
)  # fmt: skip
_CHAT_PROMPTS = (
    "What is one thing about {t} you want to try after this session?",
    "Tell us in the chat how {t} shows up in your work today!",
    "What is the most useful idea about {t} you have heard so far?",
    "Share one word that sums up {t} for you right now!",
    "Which tool or habit helps you most with {t}?",
    "What surprised you most about {t} so far?",
)
_QNA_PROMPTS = (
    "What question about {t} would you like the speaker to answer next?",
    "Ask us anything about {t} and we will take it live!",
    "Which part of {t} should we explain again?",
    "Which question about {t} should we answer before we move on?",
    "Send us your toughest question on {t}!",
)
_BROADCASTS = (
    ("A quick question on {t} is coming up", "Get ready to vote"),
    ("Your questions on {t} shape what comes next", "Ask now"),
    ("Share your experience with {t} in the chat", "Join in"),
    ("Live demo of {t} in two minutes", "Stay tuned"),
    ("Stay to the end for resources on {t}", "Don't miss it"),
)
# Pushed to the attendees' phones: addressed to them, never advice to the organizer.
_NOTIFICATIONS = (
    ("Still with us?",
     "The chat and questions on {t} are open: tap in and take part."),
    ("Your turn on {t}",
     "Send the question you would like answered live."),
    ("Have your say",
     "How is {t} going for you so far? Tell us in the chat."),
    ("Don't leave yet",
     "The best part of {t} is coming up, with time for your questions."),
)  # fmt: skip
_CHALLENGES = (
    ("The first five to share a tip on {t} in the chat earn a badge!", 50),
    ("Ask the best question about {t} and win bonus points!", 100),
    ("Answer the next poll on {t} to climb the leaderboard!", 30),
    ("Post one way you would use {t} this week to earn points!", 40),
    ("Name a tool you use for {t} in the chat for quick points!", 20),
)


_WORD_CLOUDS = (
    "In one word, how does {t} feel so far?",
    "Which word comes to mind when you hear {t}?",
    "What one word sums up {t} for you right now?",
)
# Where the schema offers word clouds (a `kind` of poll), one poll in five is one.
WORD_CLOUD_SHARE = 0.2


def poll(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    question, options = rng.choice(_POLLS)
    if "kind" in schema.get("properties", {}) and rng.random() < WORD_CLOUD_SHARE:
        return {"question": rng.choice(_WORD_CLOUDS).format(t=brief.short()), "kind": "words"}
    return {"question": question.format(t=brief.short()), "options": list(options)}


def chat_prompt(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    return {"text": rng.choice(_CHAT_PROMPTS).format(t=brief.short())}


def qna_prompt(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    return {"text": rng.choice(_QNA_PROMPTS).format(t=brief.short())}


def broadcast(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    headline, action = rng.choice(_BROADCASTS)
    return {"headline": headline.format(t=brief.short()), "call_to_action": action}


def notification(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    title, body = rng.choice(_NOTIFICATIONS)
    return {"title": title.format(t=brief.short()), "body": body.format(t=brief.short())}


def gamification(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    challenge, points = rng.choice(_CHALLENGES)
    return {"challenge": challenge.format(t=brief.short()), "points": points}


# -- the marketing agents (agents.builtin) -------------------------------------------------------

_DRAFT_TITLES = (
    "{T}: what to expect",
    "Why {t} matters this year",
    "Join us for {t}",
    "{T}, in practice",
)
_DRAFT_OPENERS = {
    "friendly": "We can't wait to share {t} with {a}.",
    "professional": "{T} brings {a} practical answers to the questions that matter.",
    "playful": "Ready for something different? {T} is coming, and {a} are invited.",
    "urgent": "Seats for {t} are going fast, so {a} should not wait.",
}
_DRAFT_SENTENCES = (
    "You will hear from people who do this work every day.",
    "Expect real examples, honest lessons and time for your questions.",
    "Every session is short, concrete and easy to put into practice.",
    "You will leave with ideas you can use the very next day.",
    "Bring your questions: the speakers stay for an open discussion.",
    "It is also a chance to meet peers facing the same challenges.",
)
_ACTIONS = ("Save your seat", "Register today", "Reserve your spot", "Join the session")
_SENTENCES_BY_LENGTH = {"short": 2, "medium": 4, "long": 6}


def draft(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    subject = brief.short(LONG_SUBJECT)
    audience = brief.audience or "everyone interested"
    tone = next((name for name in _DRAFT_OPENERS if f" {name} " in brief.prompt), "friendly")
    length = next((name for name in _SENTENCES_BY_LENGTH if f" {name} " in brief.prompt), "medium")
    found = _KEYWORDS.search(brief.prompt)
    keywords = [clean(word) for word in found.group("keywords").split(",")] if found else []
    keywords = [word for word in keywords if word and word != "none"][:10]
    sentences = [_DRAFT_OPENERS[tone].format(t=subject, T=_capital(subject), a=audience)]
    if keywords:
        sentences.append(f"We will cover {_join(keywords)}.")
    extra = _SENTENCES_BY_LENGTH[length] - len(sentences)
    sentences += rng.sample(_DRAFT_SENTENCES, max(0, extra))
    return {
        "title": _cut(rng.choice(_DRAFT_TITLES).format(t=subject, T=_capital(subject)), 120),
        "body": " ".join(sentences),
        "call_to_action": f"{rng.choice(_ACTIONS)} for {subject}",
        "keywords": keywords or [word.lower() for word in subject.split()[:3]],
    }


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def summary(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    sentences = _sentences(brief.body()) or [brief.subject + "."]
    count = brief.number(r"at most (\d+) sentences", 3, 1, 10)
    points = [_cut(clean(sentence), 100) for sentence in sentences[:3]]
    return {
        "summary": " ".join(sentences[:count]),
        "key_points": [point for point in points if point] or [brief.subject],
    }


_FORMAT_WRITERS: dict[str, Callable[[str, str], str]] = {
    "tweet": lambda lead, tag: f"{_cut(lead, 200)} {tag}",
    "linkedin": lambda lead, tag: f"A few thoughts worth sharing. {lead} What is your take? {tag}",
    "email": lambda lead, tag: f"Hi there,\n\n{lead}\n\nSee you there,\nThe event team",
    "blog_intro": lambda lead, tag: (
        f"{lead} In this post, we look at what it means for your "
        "next event and how to put it into practice."
    ),
}


def repurposed(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    sentences = _sentences(brief.body()) or [brief.subject + "."]
    lead = " ".join(sentences[:2])
    tag = _hashtag(brief.short())
    formats = _enum_of(schema, "format") or list(_FORMAT_WRITERS)
    return {
        "items": [
            {"format": name, "content": _FORMAT_WRITERS.get(name, _FORMAT_WRITERS["blog_intro"])(
                lead, tag
            )}
            for name in formats
        ]
    }  # fmt: skip


_POSTS = (
    "Join us for {t}: real stories, practical tips and time for your questions.",
    "{T} is coming up, and we saved you a seat. Come learn with peers who share your goals.",
    "What does {t} look like in practice? Find out with us, live.",
    "Mark your calendar: {t}. Short talks, honest lessons, and plenty of time to connect.",
)
_GENERIC_TAGS = (
    "#Events", "#LiveEvents", "#EventProfs", "#Community", "#Networking", "#Conference",
    "#Learning", "#Webinar", "#Workshop", "#Meetup", "#Speakers", "#SaveTheDate", "#Innovation",
    "#Leadership", "#Growth", "#Tech", "#Future", "#Ideas", "#Inspiration", "#Teamwork",
    "#Careers", "#Skills", "#Insights", "#Connect", "#Live", "#Talks", "#Stories", "#Practice",
    "#Summit", "#Online",
)  # fmt: skip


def _tags(brief: Brief, count: int) -> list[str]:
    own = [_hashtag(brief.short())]
    own += [f"#{word.capitalize()}" for word in re.findall(r"[A-Za-z]{4,}", brief.subject)]
    tags = list(dict.fromkeys(tag.lower() for tag in (*own, *_GENERIC_TAGS)))
    spelled = {tag.lower(): tag for tag in (*own, *_GENERIC_TAGS)}
    return [spelled[tag] for tag in tags[:count]]


def social_post(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    subject = brief.short(LONG_SUBJECT)
    text = rng.choice(_POSTS).format(t=subject, T=_capital(subject))
    return {"text": text, "hashtags": _tags(brief, 4)}


def captions(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    original = brief.prompt.partition(": ")[2].strip() or brief.subject
    core = _cut(clean(original), 200) or brief.subject
    options = [
        f"{_capital(core)}, and you are invited!",
        f"Don't miss it: {core}.",
        f"{_capital(core)}. Save your seat today!",
        f"New this season: {core}.",
    ]
    rng.shuffle(options)
    return {"options": options[:3]}


def hashtags(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    return {"hashtags": _tags(brief, brief.number(r"Suggest (\d+) hashtags", 10, 1, 30))}


_EMAIL_STEPS: dict[str, tuple[tuple[int, str, str, str], ...]] = {
    # (days from the event, subject, preview, what the email says)
    "before": (
        (-21, "You're invited: {t}", "Save the date and see what is planned.",
         "we would love to see you at {t}. Here is what is planned and why it is worth your time."),
        (-14, "What you will learn at {t}", "A look at the speakers and sessions.",
         "here is a look at the speakers and sessions of {t}, and what you will take away."),
        (-7, "{T} is one week away", "Everything you need to get ready.",
         "{t} is one week away. Add it to your calendar and send us your questions in advance."),
        (-3, "Your questions for {t}", "Tell us what you want answered.",
         "the speakers of {t} want to answer your questions: reply to this email with yours."),
        (-1, "Tomorrow: {t}", "Your link and the schedule inside.",
         "{t} is tomorrow. Your link and the schedule are below; we will start on time."),
        (0, "Starting soon: {t}", "Join in a few minutes.",
         "{t} starts in a few minutes. Join now to get a good seat and meet the others."),
    ),
    "after": (
        (1, "Thank you for joining {t}", "The slides and recording inside.",
         "thank you for joining {t}. The slides and the recording are ready for you."),
        (3, "Your recap of {t}", "The three ideas people liked most.",
         "here are the three ideas from {t} that people talked about most."),
        (7, "What did you think of {t}?", "Two minutes to help us improve.",
         "tell us what you thought of {t}; two minutes of your time shapes the next one."),
        (14, "Keep the conversation going after {t}", "Resources and next steps.",
         "the conversation from {t} goes on: here are resources and what comes next."),
    ),
}  # fmt: skip


def email_sequence(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    count = brief.number(r"sequence of (\d+) emails", 3, 1, 7)
    subject = brief.short(LONG_SUBJECT)
    # The goal's side of the event first (after it for a follow-up), then the other side.
    first, then = ("after", "before") if "follow_up" in brief.prompt else ("before", "after")
    steps = _EMAIL_STEPS[first]
    if count <= len(steps):
        chosen = rng.sample(steps, count)
    else:
        chosen = [*steps, *rng.sample(_EMAIL_STEPS[then], count - len(steps))]
    chosen.sort()
    return {
        "emails": [
            {
                "subject": _capital(title.format(t=subject, T=_capital(subject))),
                "preview": preview,
                "body": f"Hi there,\n\n{_capital(text.format(t=subject, T=_capital(subject)))}"
                "\n\nSee you soon,\nThe event team",
                "send_offset_days": offset,
            }
            for offset, title, preview, text in chosen
        ]
    }


_SUBJECT_REWRITES = (
    ("{s}: save your seat", "Adds a clear action to the subject."),
    ("Last chance: {s}", "A deadline makes people open now rather than later."),
    ("{s} - what you will learn", "Promises a concrete benefit."),
    ("You're invited: {s}", "Personal and welcoming."),
    ("{s} - don't miss it", "Short, with a gentle sense of urgency."),
)


def subject_options(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    original = brief.short(LONG_SUBJECT)
    picked = rng.sample(_SUBJECT_REWRITES, 4)
    return {
        "options": [
            {"subject": _capital(text.format(s=original)), "rationale": why} for text, why in picked
        ]
    }


_AD_HEADLINES = ("Try {t} today", "{T}: see it in action", "Meet {t}", "{T}, made simple",
                 "Why teams choose {t}")  # fmt: skip
_AD_DESCRIPTIONS = (
    "Built for {a}: clear results from day one. Start today.",
    "Join {a} who already rely on {t}. See how it works in minutes.",
    "Less effort, better results for {a}. Find out how.",
    "Everything {a} need, in one place. Get started now.",
    "Made for {a}, with support when you need it. Try it now.",
)


def ad_variants(brief: Brief, rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    count = brief.number(r"Write (\d+) ", 3, 1, 5)
    subject = brief.short()
    audience = _cut(brief.audience or "busy teams", LONG_SUBJECT)
    headlines = rng.sample(_AD_HEADLINES, count)
    descriptions = rng.sample(_AD_DESCRIPTIONS, count)
    return {
        "variants": [
            {
                "headline": _cut(head.format(t=subject, T=_capital(subject)), 60),
                "description": _cut(text.format(t=subject, a=audience), 180),
            }
            for head, text in zip(headlines, descriptions, strict=True)
        ]
    }


def _enum_of(schema: Any, field: str) -> list[Any]:
    """The enum of the first property named `field` anywhere in `schema` (refs included)."""
    if isinstance(schema, dict):
        found = schema.get("properties", {}).get(field)
        if isinstance(found, dict) and isinstance(found.get("enum"), list):
            return list(found["enum"])
        children: list[Any] = list(schema.values())
    elif isinstance(schema, list):
        children = schema
    else:
        return []
    for child in children:
        values = _enum_of(child, field)
        if values:
            return values
    return []


Writer = Callable[[Brief, random.Random, dict[str, Any]], dict[str, Any]]

# By the output model's class name (`schema_name`).
WRITERS: dict[str, Writer] = {
    "PollContent": poll,
    "ChatPromptContent": chat_prompt,
    "QnaPromptContent": qna_prompt,
    "BroadcastContent": broadcast,
    "NotificationContent": notification,
    "GamificationContent": gamification,
    "Draft": draft,
    "Summary": summary,
    "Repurposed": repurposed,
    "_Drafted": social_post,
    "_Captions": captions,
    "_Tags": hashtags,
    "EmailSequence": email_sequence,
    "SubjectOptions": subject_options,
    "_Variants": ad_variants,
}


def write(
    schema_name: str, schema: dict[str, Any], prompt: str, rng: random.Random
) -> dict[str, Any] | None:
    """A readable answer for the schema called `schema_name`, or None when there is no writer.

    None too when the writer's fields are not the schema's (required ones missing, unknown ones
    added): the caller then falls back to a generic instance of the schema.
    """
    writer = WRITERS.get(schema_name)
    if writer is None:
        return None
    answer = writer(brief_of(prompt), rng, schema)
    properties = set(schema.get("properties", {}))
    required = set(schema.get("required", ()))
    if not required <= set(answer) <= properties:
        return None
    return answer
