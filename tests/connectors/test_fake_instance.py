"""fake_instance: values that validate against the pydantic models the schemas come from."""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, Field, StringConstraints, TypeAdapter

from connectors.llm.fake import fake_instance

SEEDS = range(40)


class Tone(StrEnum):
    FRIENDLY = "friendly"
    FORMAL = "formal"


class Option(BaseModel):
    label: str = Field(min_length=1, max_length=100)
    votes: int = Field(ge=0, le=10)


class Poll(BaseModel):
    question: str = Field(min_length=10, max_length=100)
    options: list[Option] = Field(min_length=3, max_length=4)
    kind: Literal["single", "multiple"]
    confidence: float = Field(ge=0.0, le=1.0)
    tone: Tone
    note: str | None = None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(gt=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Node(BaseModel):
    name: Annotated[str, StringConstraints(max_length=5)]
    children: list[Node] = Field(default_factory=list)


class Everything(BaseModel):
    poll: Poll
    maybe_poll: Poll | None
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    score: float = Field(gt=0, lt=1)
    even: int = Field(gt=-5, lt=5, multiple_of=2)
    ratio: float = Field(ge=0.25, le=0.25)
    weights: dict[str, float]
    pair: tuple[int, str]
    numbers: tuple[int, ...]
    unique: set[int]
    tags: list[Annotated[str, StringConstraints(max_length=3)]] = Field(max_length=2)
    when: datetime
    day: date
    ident: UUID
    slug: str = Field(pattern=r"^[a-z_-]+$")
    code: str = Field(pattern=r"^[0-9]+$", max_length=4)
    tree: Node
    anything: Any
    version: Literal[2] = 2


@pytest.mark.parametrize("model", [Option, Poll, Node, Everything])
def test_instances_validate_against_their_model(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()

    for seed in SEEDS:
        instance = fake_instance(schema, seed)
        # As an LLM answer would arrive: JSON text.
        model.model_validate_json(json.dumps(instance))


def test_lists_honour_bounds_and_default_to_three() -> None:
    schema = TypeAdapter(list[int]).json_schema()
    assert len(fake_instance(schema, 1)) == 3
    assert len(fake_instance({**schema, "minItems": 5}, 1)) == 5
    assert len(fake_instance({**schema, "maxItems": 1}, 1)) == 1


def test_same_seed_same_instance_different_seeds_vary() -> None:
    schema = Everything.model_json_schema()

    assert fake_instance(schema, 7) == fake_instance(schema, 7)
    assert len({json.dumps(fake_instance(schema, seed), sort_keys=True) for seed in SEEDS}) > 30


def test_strings_are_readable_text_from_the_given_words() -> None:
    texts = [fake_instance({"type": "string"}, seed, words=["kubernetes"]) for seed in SEEDS]

    assert any("kubernetes" in text.lower() for text in texts)
    assert all(text.replace(" ", "").isalpha() for text in texts)


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"const": 3}, lambda value: value == 3),
        ({"enum": ["a", "b"]}, lambda value: value in ("a", "b")),
        ({"type": ["null", "integer"]}, lambda value: isinstance(value, int)),
        ({"type": ["null"]}, lambda value: value is None),
        ({"type": "null"}, lambda value: value is None),
        ({"anyOf": [{"type": "null"}]}, lambda value: value is None),
        ({"oneOf": [{"type": "null"}, {"type": "boolean"}]}, lambda value: isinstance(value, bool)),
        ({"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5}, lambda v: v == 4),
        ({"type": "integer", "minimum": 1000}, lambda value: 1000 <= value <= 1100),
        ({"type": "integer", "maximum": -1000}, lambda value: -1100 <= value <= -1000),
        ({"type": "integer", "minimum": 5, "maximum": 1}, lambda value: value == 5),
        ({"type": "integer", "minimum": 1, "maximum": 3, "multipleOf": 5}, lambda v: 1 <= v <= 3),
        ({"type": "integer", "minimum": 1, "maximum": 12, "multipleOf": 5}, lambda v: v in (5, 10)),
        (
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e-9},
            lambda v: 0 < v < 1e-9,
        ),
        ({"type": "number", "minimum": 1, "maximum": 0}, lambda value: value == 1),
        ({"type": "string", "maxLength": 0}, lambda value: value == ""),
        ({"type": "string", "minLength": 60, "maxLength": 60}, lambda value: len(value) == 60),
        ({"type": "string", "pattern": "^never$"}, lambda value: isinstance(value, str)),
        ({"type": "string", "format": "email"}, lambda value: value.endswith("@example.com")),
        ({"type": "string", "format": "uri"}, lambda value: value.startswith("https://")),
        ({"type": "string", "format": "time"}, lambda value: value.count(":") == 2),
        ({"type": "string", "format": "duration"}, lambda value: value.startswith("PT")),
        ({"type": "string", "format": "ipv4"}, lambda value: value.startswith("192.0.2.")),
        ({"type": "string", "format": "ipv6"}, lambda value: value.startswith("2001:db8::")),
        ({"type": "string", "format": "hostname"}, lambda value: value.endswith(".example.com")),
        ({"minLength": 2}, lambda value: isinstance(value, str) and len(value) >= 2),
        ({"maximum": 3}, lambda value: isinstance(value, float) and value <= 3),
        ({"items": {"type": "boolean"}}, lambda value: len(value) == 3),
        ({"required": ["a"], "properties": {"a": True}}, lambda value: set(value) == {"a"}),
        ({}, lambda value: isinstance(value, str)),
        (
            {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True},
            lambda value: sorted(value) == [False, True],
        ),
        (
            {"type": "array", "prefixItems": [{"const": 1}], "items": False},
            lambda value: value == [1],
        ),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2},
            lambda value: len(value) == 2 and all(isinstance(v, int) for v in value.values()),
        ),
        (
            {
                "allOf": [
                    {"properties": {"a": {"const": 1}}, "required": ["a"]},
                    {"properties": {"b": {"const": 2}}, "required": ["b"]},
                ]
            },
            lambda value: value == {"a": 1, "b": 2},
        ),
        (
            {"$defs": {"A~/B": {"const": "ok"}}, "$ref": "#/$defs/A~0~1B"},
            lambda value: value == "ok",
        ),
    ],
)
def test_schema_features(schema: dict[str, Any], check: Any) -> None:
    for seed in range(5):
        assert check(fake_instance(schema, seed)), fake_instance(schema, seed)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "https://example.com/schema.json"}, "only local"),
        ({"$ref": "#"}, "too long"),
        ({"x": 1, "$ref": "#/x"}, "does not point to a schema"),
        ({"$ref": "#/$defs/Missing"}, "does not resolve"),
        ({"x": [1], "$ref": "#/x/0/y"}, "does not resolve"),
        ({"properties": {"a": False}}, "cannot build"),
        ({"type": "tensor"}, "unknown schema type"),
    ],
)
def test_unsupported_schemas_raise_value_error(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fake_instance(schema, 0)


def test_deep_recursion_stops_with_nulls_and_empty_containers() -> None:
    schema = {
        "$defs": {
            "Deep": {
                "type": "object",
                "properties": {
                    "next": {"anyOf": [{"$ref": "#/$defs/Deep"}, {"type": "null"}]},
                    "also": {"type": ["object", "null"], "properties": {}},
                    "map": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Deep"}},
                },
                "required": ["next"],
            }
        },
        "$ref": "#/$defs/Deep",
    }

    value = fake_instance(schema, 0)

    depth = 0
    while value["next"] is not None:
        value = value["next"]
        depth += 1
    assert depth < 10
    assert value["map"] == {}


def test_deep_objects_keep_only_required_properties() -> None:
    schema = {
        "$defs": {
            "Tree": {
                "type": "object",
                "properties": {
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
                    "label": {"type": "string"},
                },
                "required": ["kids"],
            }
        },
        "$ref": "#/$defs/Tree",
    }

    value = fake_instance(schema, 0)

    while value["kids"]:
        value = value["kids"][0]
    assert value == {"kids": []}


def test_schema_without_finite_instance_raises_value_error() -> None:
    schema = {"properties": {"self": {"$ref": "#"}}, "required": ["self"]}

    with pytest.raises(ValueError, match="no finite instance"):
        fake_instance(schema, 0)
