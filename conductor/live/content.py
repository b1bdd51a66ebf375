"""What an intervention says: validated models per type, and template families for fallback.

The LLM writes from the session topic and live numbers; its answer must validate against the
type's model. When it fails or is too slow, a template of the family chosen by the anomaly type
is used instead, never one of the last 10 templates the session used.

Two kinds of rules: what the join page needs (lengths, 2-6 distinct options) holds for every
text; the rules of style asked of the LLM (a poll that is not yes/no and ends with a question
mark, a prompt of one inviting sentence) do not bind what an organizer writes by hand, which is
sent as typed (`validate(..., by_organizer=True)`): "Did that make sense? Yes / No / Kind of"
is theirs to ask.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

RECENT_TEMPLATES = 10
_YES_NO_OPENERS = re.compile(
    r"^(is|are|do|does|did|can|could|will|would|should|shall|have|has|was|were|am)\b", re.I
)


class _Content(BaseModel):
    model_config = ConfigDict(extra="forbid")


_BY_ORGANIZER = {"by_organizer": True}


def _by_organizer(info: ValidationInfo) -> bool:
    """Whether the text being validated was written by an organizer (the style rules wait)."""
    return isinstance(info.context, dict) and info.context.get("by_organizer") is True


class PollContent(_Content):
    """A poll: a question under 100 characters that is not yes/no (asked of the LLM, not of an
    organizer), and 2-6 options (the LLM is asked for 3-4; an organizer may write fewer or more) - or, with `kind: "words"`, no options:
    a word cloud, each attendee answering in one to three words."""

    # An option poll is stored and sent as it always was, `{question, options}` (`kind` is
    # written only for a word cloud), so clients that predate word clouds keep working.
    question: str = Field(min_length=5, max_length=99)
    # Before `options`: its validator reads it.
    kind: Literal["options", "words"] = Field(
        "options",
        description="options: attendees choose one of the options; words: a word cloud, "
        "attendees answer in one to three words, and there are no options",
    )
    options: list[str] = Field(default_factory=list, max_length=6, validate_default=True)

    @field_validator("question")
    @classmethod
    def _not_yes_no(cls, question: str, info: ValidationInfo) -> str:
        question = question.strip()
        if _by_organizer(info):
            return question
        if _YES_NO_OPENERS.match(question):
            raise ValueError("a poll question must not be answerable with yes or no")
        if not question.endswith("?"):
            raise ValueError("a poll question ends with a question mark")
        return question

    @field_validator("options")
    @classmethod
    def _distinct_options(cls, options: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("kind") == "words":
            if options:
                raise ValueError("a word cloud has no options")
            return options
        if len(options) < 2:  # as pydantic says it of a minimum length, as before word clouds
            raise PydanticCustomError(
                "too_short",
                "List should have at least 2 items after validation, not {actual_length}",
                {"field_type": "List", "min_length": 2, "actual_length": len(options)},
            )
        cleaned = [option.strip() for option in options]
        if any(not option or len(option) > 60 for option in cleaned):
            raise ValueError("options must be 1-60 characters")
        if len({option.lower() for option in cleaned}) != len(cleaned):
            raise ValueError("options must differ")
        yes_no = {option.lower() for option in cleaned} <= {"yes", "no", "maybe"}
        if yes_no and not _by_organizer(info):
            raise ValueError("a poll must offer more than yes and no")
        return cleaned

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        if self.kind == "options":
            del dumped["kind"]
        return dumped


class PromptContent(_Content):
    """A chat or Q&A prompt: one inviting sentence."""

    text: str = Field(min_length=10, max_length=200)

    @field_validator("text")
    @classmethod
    def _one_inviting_sentence(cls, text: str, info: ValidationInfo) -> str:
        text = text.strip()
        if _by_organizer(info):
            return text
        if len(re.findall(r"[.!?](\s|$)", text)) > 1:
            raise ValueError("one sentence only")
        if not text.endswith(("?", "!")):
            raise ValueError("an invitation ends with a question or an exclamation mark")
        return text


class ChatPromptContent(PromptContent):
    """A chat prompt. Its own class so that the schema's name tells the LLM which kind it writes."""


class QnaPromptContent(PromptContent):
    """A Q&A prompt. Its own class so that the schema's name tells the LLM which kind it writes."""


class BroadcastContent(_Content):
    """A short banner with a call to action."""

    headline: str = Field(min_length=5, max_length=80)
    call_to_action: str = Field(min_length=2, max_length=40)


class NotificationContent(_Content):
    title: str = Field(min_length=3, max_length=80)
    body: str = Field(min_length=5, max_length=200)


class GamificationContent(_Content):
    challenge: str = Field(min_length=10, max_length=160)
    points: int = Field(ge=1, le=1000)


CONTENT_MODELS: dict[str, type[_Content]] = {
    "poll": PollContent,
    "chat_prompt": ChatPromptContent,
    "qna_prompt": QnaPromptContent,
    "broadcast": BroadcastContent,
    "notification": NotificationContent,
    "gamification": GamificationContent,
}

GUIDANCE = {
    "poll": "a poll question under 100 characters that cannot be answered yes/no, with 3-4 "
    'short distinct options (or, for a word cloud, kind "words" and no options)',
    "chat_prompt": "one inviting sentence that gets attendees typing in the chat",
    "qna_prompt": "one inviting sentence that asks attendees for their questions",
    "broadcast": "a short banner headline and a call to action of a few words",
    "notification": "a short note pushed to the attendees' phones, addressed to them, that "
    "invites them back in: a title and one or two sentences",
    "gamification": "a quick challenge attendees can do now, and the points it earns",
}

# Template families by anomaly type; each has templates for every intervention type.
# `{topic}` is filled with the session topic.
FAMILIES: dict[str, str] = {
    "SUDDEN_DROP": "quick_pulse",
    "GRADUAL_DECLINE": "opinion",
    "LOW_ENGAGEMENT": "engaging",
    "MASS_EXIT": "crisis",
}
TEMPLATES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "quick_pulse": {
        "poll": [
            {"question": "How are you finding {topic} so far?",
             "options": ["Loving it", "It's okay", "Lost me a bit", "Need a break"]},
            {"question": "Which part of {topic} should we dig into next?",
             "options": ["Real examples", "The basics", "Tools", "Q&A"]},
            {"question": "What pace works best for you right now?",
             "options": ["Faster", "Keep it", "Slower"]},
            # A word cloud: the room answers in one to three words.
            {"question": "In one word, how does {topic} feel so far?", "kind": "words"},
        ],
        "chat_prompt": [
            {"text": "Drop one word in the chat that sums up {topic} for you so far!"},
            {"text": "What is the one thing about {topic} you want to try after this session?"},
        ],
        "qna_prompt": [
            {"text": "What question about {topic} is on your mind right now?"},
            {"text": "Ask us anything about {topic} - we'll answer live in a moment!"},
        ],
        "broadcast": [{"headline": "Quick check-in on {topic}", "call_to_action": "Vote now"}],
        "notification": [{"title": "Quick check-in on {topic}",
                          "body": "The speaker wants to hear from you: take part from this page."}],
        "gamification": [{"challenge": "First five to share a {topic} tip in chat earn a badge",
                          "points": 50}],
    },
    "opinion": {
        "poll": [
            {"question": "Which {topic} idea would change your work most?",
             "options": ["The first one", "The second one", "The last one", "None yet"]},
            {"question": "Where would you apply {topic} first?",
             "options": ["At work", "Side project", "Learning", "Not sure yet"]},
        ],
        "chat_prompt": [{"text": "Agree or disagree with what you just heard about {topic}, and why?"}],
        "qna_prompt": [{"text": "Which claim about {topic} would you challenge?"}],
        "broadcast": [{"headline": "Your take on {topic} matters", "call_to_action": "Share it"}],
        "notification": [{"title": "Your view counts",
                          "body": "What do you make of {topic} so far? Say it in the chat."}],
        "gamification": [{"challenge": "Best counter-argument on {topic} in chat wins the round",
                          "points": 100}],
    },
    "engaging": {
        "poll": [
            {"question": "What would make this {topic} session more useful?",
             "options": ["More demos", "More Q&A", "More depth", "A break"]},
            {"question": "What's your experience level with {topic}?",
             "options": ["New to it", "Some", "A lot", "I teach it"]},
            {"question": "Which word comes to mind when you hear {topic}?", "kind": "words"},
        ],
        "chat_prompt": [{"text": "Say hi in the chat and tell us where you're joining from!"}],
        "qna_prompt": [{"text": "What would you like to know about {topic} before we wrap up?"}],
        "broadcast": [{"headline": "Join the conversation on {topic}", "call_to_action": "Open chat"}],
        "notification": [{"title": "Join in",
                          "body": "Chat and questions on {topic} are open: take part from your phone."}],
        "gamification": [{"challenge": "React to this slide to unlock a bonus resource on {topic}",
                          "points": 20}],
    },
    "crisis": {
        "poll": [
            {"question": "What would keep you here for the rest of {topic}?",
             "options": ["Live demo", "Q&A now", "Summary", "Resources"]},
        ],
        "chat_prompt": [{"text": "Tell us what you'd like to see next and we'll switch to it!"}],
        "qna_prompt": [{"text": "Ask your question about {topic} now and we will take it live!"}],
        "broadcast": [{"headline": "Coming up next: the best part of {topic}",
                       "call_to_action": "Stay tuned"}],
        "notification": [{"title": "Don't leave yet",
                          "body": "The best part of {topic} is coming up, with time for your questions."}],
        "gamification": [{"challenge": "Stay to the end for a chance to win a {topic} prize",
                          "points": 200}],
    },
    # Any drop: taken after the anomaly's own family, so that no template repeats within ten.
    "general": {
        "poll": [
            {"question": "Which {topic} topic should we go deeper on?", "options": ["Foundations", "Tools", "Case studies", "Pitfalls"]},
            {"question": "How would you rate this part of {topic}?", "options": ["Eye-opening", "Useful", "Too basic", "Too advanced"]},
            {"question": "What's your biggest {topic} challenge right now?", "options": ["Getting started", "Scaling", "Cost", "Skills"]},
            {"question": "How do you use {topic} today?", "options": ["Daily", "Sometimes", "Exploring", "Not yet"]},
            {"question": "What format helps you most right now?", "options": ["Slides", "Live demo", "Discussion", "Q&A"]},
            {"question": "Which example should we show next?", "options": ["Beginner", "Intermediate", "Advanced"]},
            {"question": "What would you share with your team from {topic}?", "options": ["The idea", "The tools", "The numbers", "Nothing yet"]},
            {"question": "Where does {topic} save you the most time?", "options": ["Planning", "Building", "Reviewing", "Reporting"]},
            {"question": "What one word sums up {topic} for you?", "kind": "words"},
        ],
        "chat_prompt": [
            {"text": "What is your favourite {topic} tip so far?"},
            {"text": "Which tool do you pair with {topic}?"},
            {"text": "Share one question you'd ask an expert on {topic}!"},
            {"text": "What surprised you most in the last few minutes?"},
            {"text": "Tell us in one line how you'd use this tomorrow!"},
            {"text": "What's one thing you'd do differently after hearing this?"},
            {"text": "Drop an emoji that matches how you feel about {topic} right now!"},
            {"text": "Who here has tried this already, and how did it go?"},
        ],
        "qna_prompt": [
            {"text": "What should we clarify about {topic} before moving on?"},
            {"text": "Which part of {topic} would you like explained again?"},
            {"text": "What would you ask if you had the speaker for one minute?"},
            {"text": "Send us the question you think everyone is wondering about!"},
            {"text": "What's blocking you from trying {topic} - ask us now!"},
            {"text": "Which example would help you most - tell us in the Q&A!"},
            {"text": "What did we skip that you hoped to hear about?"},
            {"text": "Post your toughest {topic} question and we'll tackle it live!"},
        ],
        "broadcast": [
            {"headline": "Your questions on {topic} shape what's next", "call_to_action": "Ask now"},
            {"headline": "Quick poll coming up on {topic}", "call_to_action": "Get ready"},
            {"headline": "Share your {topic} experience in chat", "call_to_action": "Join in"},
            {"headline": "Resources for {topic} after this session", "call_to_action": "Stay to the end"},
            {"headline": "Live demo of {topic} starting soon", "call_to_action": "Watch now"},
            {"headline": "Meet others working on {topic}", "call_to_action": "Say hi in chat"},
            {"headline": "We want your feedback on {topic}", "call_to_action": "Tell us"},
            {"headline": "Bonus material on {topic} if you take part", "call_to_action": "Take part"},
        ],
        "notification": [
            {"title": "Still with us?", "body": "The chat and questions on {topic} are open: tap in."},
            {"title": "Your turn", "body": "Send the question on {topic} you would like answered live."},
            {"title": "Have your say", "body": "How is {topic} going for you? Tell us in the chat."},
            {"title": "Questions welcome", "body": "The speaker is taking questions on {topic}: ask yours."},
            {"title": "Points on the table", "body": "Take part in the chat or the Q&A to climb the leaderboard."},
            {"title": "Don't miss the end", "body": "Resources on {topic} are shared before we close."},
            {"title": "Quick break from the slides", "body": "Tell us in the chat how you would use {topic}."},
            {"title": "Share a tip", "body": "Know a trick for {topic}? Post it in the chat for everyone."},
        ],
        "gamification": [
            {"challenge": "Answer the next poll to earn points on the leaderboard", "points": 30},
            {"challenge": "Ask a question about {topic} to climb the leaderboard", "points": 40},
            {"challenge": "Share a resource on {topic} in chat for bonus points", "points": 60},
            {"challenge": "Be among the first ten to react to unlock a badge", "points": 25},
            {"challenge": "Guess the next slide's key number in chat", "points": 50},
            {"challenge": "Name a {topic} tool in chat for a quick point", "points": 10},
            {"challenge": "Help another attendee in chat and earn helper points", "points": 80},
            {"challenge": "Complete the {topic} quiz at the end for a prize draw", "points": 150},
        ],
    },
}  # fmt: skip


def validate(
    intervention_type: str, content: dict[str, Any], *, by_organizer: bool = False
) -> dict[str, Any]:
    """The content as its type's model dumps it. Raises pydantic.ValidationError.

    `by_organizer`: typed by an organizer (sent as typed: the LLM's style rules do not apply).
    Strict, as JSON types go: `true` is not a number of points, nor `"5"` (coerced, it reached
    the phones as 1).
    """
    model = CONTENT_MODELS[intervention_type]
    return model.model_validate(
        content, strict=True, context=_BY_ORGANIZER if by_organizer else None
    ).model_dump()


def template_for(
    intervention_type: str, anomaly_type: str | None, topic: str, recent: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """Pick a template of the anomaly's family not among `recent` keys; return (key, content).

    When every template of the family was used recently, the least recently used one is taken.
    """
    family = FAMILIES.get(anomaly_type or "", "engaging")
    # The anomaly's own family first, then the general pool, then the other families.
    order = [family, "general", *(f for f in TEMPLATES if f not in (family, "general"))]
    candidates = {
        f"{name}.{intervention_type}.{i}": raw
        for name in order
        for i, raw in enumerate(TEMPLATES[name][intervention_type])
    }
    recent_window = list(recent)[:RECENT_TEMPLATES]
    fresh = [key for key in candidates if key not in recent_window]
    # There are more than ten of each type, so a fresh one is always left; the fallback is the
    # one used longest ago.
    key = fresh[0] if fresh else max(candidates, key=recent_window.index)
    return key, validate(intervention_type, fill(candidates[key], short_topic(topic)))


#: The longest topic every template takes whole within its fields' limits (the tightest: a
#: broadcast's headline of 80 characters, "Your questions on {topic} shape what's next").
TOPIC_LIMIT = 44

# Words a cut topic must not end on: "What is your biggest challenge with ARIA, keyboard
# navigation and?" reached the phones when a topic was cut at 30 characters.
_DANGLING = frozenset({
    "a", "an", "and", "or", "nor", "but", "of", "the", "for", "with", "without", "to", "in",
    "into", "on", "at", "by", "from", "about", "vs", "versus", "via", "per", "as", "&", "+",
    "-", "\N{EN DASH}", "\N{EM DASH}",
})  # fmt: skip
_TRAILING = " ,;:/(&+-.\N{EN DASH}\N{EM DASH}"


def short_topic(topic: str, limit: int = TOPIC_LIMIT) -> str:
    """The topic, cut at a word boundary when longer than `limit` (so that every template stays
    within its limits), never ending on a word that leaves the phrase hanging."""
    topic = " ".join(topic.split()) or "this session"
    if len(topic) <= limit:
        return topic
    cut = topic[:limit] if topic[limit] == " " else topic[:limit].rsplit(" ", 1)[0]
    while True:
        cut = cut.rstrip(_TRAILING)
        head, _, last = cut.rpartition(" ")
        if not head or last.lower() not in _DANGLING:
            break
        cut = head
    return cut or topic[:limit]


def fill(raw: dict[str, Any], topic: str) -> dict[str, Any]:
    return {field: _fill(value, topic) for field, value in raw.items()}


def _fill(value: Any, topic: str) -> Any:
    if isinstance(value, str):
        return value.replace("{topic}", topic)
    if isinstance(value, list):
        return [_fill(item, topic) for item in value]
    return value
