"""The deterministic fake LLM, and `fake_instance`: a value valid against a JSON Schema.

The same request gives the same answer in every process: the seed is the sha256 of the request's
canonical JSON, never `hash()` (randomised per process). What the product asks for (a poll, an
email sequence...) is written from templates an organizer can read (connectors.llm.writers);
any other schema gets a generic instance.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors import fakes
from connectors.base import BaseConnector, canonical_json, stable_seed
from connectors.errors import ConnectorError
from connectors.llm import writers
from connectors.llm.models import NAME, REQUESTS, LLMRequest, LLMResponse, cost_usd

FAKE_MODEL = "fake-llm"
VOCABULARY = (
    "engagement",
    "audience",
    "session",
    "question",
    "poll",
    "insight",
    "moment",
    "idea",
    "community",
    "feedback",
    "highlight",
    "together",
)
# Recursive schemas (a model containing a list of itself) stop growing below this depth: only
# required properties, minimal arrays, and null wherever null is allowed.
MAX_DEPTH = 6
DEFAULT_ITEMS = 3

_OPENERS = ("Quick thought on", "Let's talk about", "A fresh angle on", "Here is a take on")
_FOLLOW_UPS = (
    "What do you think?",
    "Share your view in the chat.",
    "React if this matches your experience.",
    "Tell us one example from your own work.",
)


class FakeLLM(BaseConnector):
    """A deterministic stand-in for the LLM (model "fake-llm"); no network, no side effect.

    With `json_schema`, the content is JSON of a demo text (connectors.llm.writers) when the
    `schema_name` is one the product asks for, else of `fake_instance(json_schema, seed)`;
    without, a sentence or two about the last user message. Tokens are ceil(characters / 4) of
    the message contents and of the answer; the cost uses the real client's prices.
    """

    name = NAME
    requests = REQUESTS

    def handle(self, action: str, request: LLMRequest, *, idempotency_key: str) -> LLMResponse:
        """Answer `request` after applying the injected behaviour (fakes.before_call)."""
        fakes.before_call(NAME)
        seed = stable_seed(request.model_dump(mode="json"))
        prompt = _last_user_text(request)
        words = words_of(prompt)
        if request.json_schema is not None:
            rng = random.Random(seed)  # noqa: S311 - demo text, not security
            written = writers.write(request.schema_name, request.json_schema, prompt, rng)
            try:
                if written is None:
                    written = fake_instance(request.json_schema, seed, words=words)
                content = json.dumps(written)
            except ValueError as exc:
                raise ConnectorError(
                    f"llm: the fake cannot answer this schema: {exc}", retryable=False
                ) from exc
        else:
            # Roughly honour max_tokens at the fake's own 4-characters-per-token rate.
            content = _prose(words, random.Random(seed))[: request.max_tokens * 4]  # noqa: S311
        prompt_tokens = math.ceil(sum(len(message.content) for message in request.messages) / 4)
        completion_tokens = math.ceil(len(content) / 4)
        return LLMResponse(
            content=content,
            model=FAKE_MODEL,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd(prompt_tokens, completion_tokens),
        )


def words_of(text: str, limit: int = 12) -> list[str]:
    """Return the distinct words (3+ letters, lower case) of `text`, first `limit` of them."""
    words = [word.lower() for word in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", text)]
    return list(dict.fromkeys(words))[:limit]


def _last_user_text(request: LLMRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return request.messages[-1].content


def _prose(words: list[str], rng: random.Random) -> str:
    topic = " ".join(words[:6]) or rng.choice(VOCABULARY)
    return f"{rng.choice(_OPENERS)} {topic}. {rng.choice(_FOLLOW_UPS)}"


def fake_instance(schema: dict[str, Any], seed: int, *, words: Sequence[str] = ()) -> Any:
    """Return a value valid against JSON Schema `schema`; the same for the same seed.

    Covers what pydantic emits: objects (every property filled), strings (length, enum, common
    formats; readable text from `words` and a small vocabulary), integers and numbers (inclusive
    and exclusive bounds, integer multipleOf), booleans, arrays (minItems/maxItems, default 3
    items, prefixItems, uniqueItems), const, enum, anyOf/oneOf (first non-null option), allOf,
    `$ref` into the schema (`$defs`), nullable types. Limits: a `pattern` is honoured only when
    one of a few candidate strings matches it; `not`, `if`/`then` and number multipleOf are
    ignored. Raises ValueError for a `$ref` outside the schema, an unknown type, a `false`
    schema where a value is needed, or required recursion (no finite instance).
    """
    pool = list(dict.fromkeys([*words, *VOCABULARY]))
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    return _Instance(schema, rng, pool).value(schema, 0)


class _Instance:
    def __init__(self, root: dict[str, Any], rng: random.Random, pool: list[str]) -> None:
        self.root = root
        self.rng = rng
        self.pool = pool

    def value(self, schema: Any, depth: int) -> Any:
        if depth > MAX_DEPTH * 4:
            raise ValueError("schema has no finite instance (required recursion)")
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        if "allOf" in schema:
            merged = {key: item for key, item in schema.items() if key != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self.resolve(part))
            return self.value(merged, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.resolve(option) for option in schema[key]]
                solid = [option for option in options if option.get("type") != "null"]
                if not solid or (depth >= MAX_DEPTH and len(solid) < len(options)):
                    return None
                return self.value(solid[0], depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            solid_kinds = [item for item in kind if item != "null"]
            if not solid_kinds or (depth >= MAX_DEPTH and len(solid_kinds) < len(kind)):
                return None
            kind = solid_kinds[0]
        if kind is None:
            kind = _infer_type(schema)
        make: Callable[[dict[str, Any], int], Any] | None = getattr(self, f"make_{kind}", None)
        if make is None:
            raise ValueError(f"unknown schema type {kind!r}")
        return make(schema, depth)

    def resolve(self, schema: Any) -> dict[str, Any]:
        if schema is True:
            return {}
        if not isinstance(schema, dict):
            raise ValueError(f"cannot build a value for schema {schema!r}")
        resolved: dict[str, Any] = schema
        for _ in range(32):
            ref = resolved.get("$ref")
            if ref is None:
                return resolved
            rest = {key: item for key, item in resolved.items() if key != "$ref"}
            resolved = {**self._lookup(ref), **rest}
        raise ValueError("$ref chain too long")

    def _lookup(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, not {ref!r}")
        node: Any = self.root
        for part in ref[1:].split("/"):
            if part:
                try:
                    node = node[part.replace("~1", "/").replace("~0", "~")]
                except (KeyError, TypeError) as exc:
                    raise ValueError(f"$ref {ref!r} does not resolve") from exc
        if not isinstance(node, dict):
            raise ValueError(f"$ref {ref!r} does not point to a schema")
        target: dict[str, Any] = node
        return target

    def make_object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for name, sub in schema.get("properties", {}).items():
            if depth < MAX_DEPTH or name in required:
                out[name] = self.value(sub, depth + 1)
        extra = schema.get("additionalProperties")
        if not out and isinstance(extra, dict):
            # dict[str, X]: at least one entry so the value shows what the map holds.
            low = int(schema.get("minProperties", 0))
            count = _clamp(
                max(low, 1 if depth < MAX_DEPTH else 0), low, schema.get("maxProperties")
            )
            for index in range(count):
                out[f"{self.pool[index % len(self.pool)]}_{index}"] = self.value(extra, depth + 1)
        return out

    def make_array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", {})
        wanted = DEFAULT_ITEMS if depth < MAX_DEPTH else low
        count = _clamp(wanted, low, schema.get("maxItems"))
        if items is False:
            count = min(count, len(prefix))
        unique = bool(schema.get("uniqueItems"))
        values: list[Any] = []
        seen: set[bytes] = set()
        for _ in range(count * 20):
            if len(values) == count:
                break
            sub = prefix[len(values)] if len(values) < len(prefix) else items
            item = self.value(sub, depth + 1)
            marker = canonical_json(item)
            if unique and marker in seen:
                continue
            seen.add(marker)
            values.append(item)
        return values

    def make_string(self, schema: dict[str, Any], depth: int) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        make = _FORMATS.get(schema.get("format", ""))
        if make is not None:
            return make(self.rng, self.pool)
        text = self.text(low, high)
        pattern = schema.get("pattern")
        if pattern is None:
            return text
        word = self.rng.choice(self.pool)
        candidates = (
            text,
            text.lower(),
            text.lower().replace(" ", "-"),
            text.lower().replace(" ", "_"),
            word,
            word.upper(),
            "abc",
            "ABC",
            "a1",
            "123",
            "x",
        )
        for candidate in candidates:
            fits = low <= len(candidate) and (high is None or len(candidate) <= high)
            if fits and re.search(pattern, candidate):
                return candidate
        return text

    def text(self, low: int, high: int | None) -> str:
        count = self.rng.randint(2, 6)
        text = " ".join(self.rng.choice(self.pool) for _ in range(count)).capitalize()
        while len(text) < low:
            text += " " + self.rng.choice(self.pool)
        if high is not None and len(text) > high:
            text = text[:high].rstrip()
        return text.ljust(low, "x")

    def make_integer(self, schema: dict[str, Any], depth: int) -> int:
        lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
        if "exclusiveMinimum" in schema:
            lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
        highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
        if "exclusiveMaximum" in schema:
            highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
        bounds = _bounds([float(bound) for bound in lows], [float(bound) for bound in highs])
        low, high = int(bounds[0]), int(bounds[1])
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first, last = math.ceil(low / step), math.floor(high / step)
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(low, high) if low <= high else low

    def make_number(self, schema: dict[str, Any], depth: int) -> float:
        lows = [float(schema[key]) for key in ("minimum", "exclusiveMinimum") if key in schema]
        highs = [float(schema[key]) for key in ("maximum", "exclusiveMaximum") if key in schema]
        low, high = _bounds(lows, highs)
        low_open = "exclusiveMinimum" in schema and low == schema["exclusiveMinimum"]
        high_open = "exclusiveMaximum" in schema and high == schema["exclusiveMaximum"]

        def inside(value: float) -> bool:
            above = value > low if low_open else value >= low
            below = value < high if high_open else value <= high
            return above and below

        raw = self.rng.uniform(low, high)
        for candidate in (round(raw, 2), raw, (low + high) / 2):
            if inside(candidate):
                return candidate
        return low

    def make_boolean(self, schema: dict[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def make_null(self, schema: dict[str, Any], depth: int) -> None:
        return None

    def make_any(self, schema: dict[str, Any], depth: int) -> str:
        return self.rng.choice(self.pool)


def _infer_type(schema: dict[str, Any]) -> str:
    if {"properties", "additionalProperties", "required"} & schema.keys():
        return "object"
    if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
        return "array"
    if {"minLength", "maxLength", "pattern", "format"} & schema.keys():
        return "string"
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
        return "number"
    return "any"


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = {**left, **right}
    if "properties" in left and "properties" in right:
        merged["properties"] = {**left["properties"], **right["properties"]}
    if "required" in left and "required" in right:
        merged["required"] = list(dict.fromkeys([*left["required"], *right["required"]]))
    return merged


def _clamp(value: int, low: int, high: int | None) -> int:
    value = max(value, low)
    return value if high is None else min(value, high)


def _bounds(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """Return the tightest (low, high); an unbounded side sits 100 away from the other."""
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    if low is None:
        low = 0.0 if high is None else high - 100
    if high is None:
        high = low + 100
    return low, high


def _moment(rng: random.Random) -> datetime:
    return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 525_600))


_FORMATS: dict[str, Callable[[random.Random, list[str]], str]] = {
    "date-time": lambda rng, pool: _moment(rng).isoformat().replace("+00:00", "Z"),
    "date": lambda rng, pool: _moment(rng).date().isoformat(),
    "time": lambda rng, pool: _moment(rng).time().isoformat(),
    "duration": lambda rng, pool: f"PT{rng.randint(1, 120)}M",
    "uuid": lambda rng, pool: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "email": lambda rng, pool: f"{rng.choice(pool)}@example.com",
    "uri": lambda rng, pool: f"https://example.com/{rng.choice(pool)}",
    "ipv4": lambda rng, pool: f"192.0.2.{rng.randint(1, 254)}",
    "ipv6": lambda rng, pool: f"2001:db8::{rng.randint(1, 65534):x}",
    "hostname": lambda rng, pool: f"{rng.choice(pool)}.example.com",
}
