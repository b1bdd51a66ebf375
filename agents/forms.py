"""Forms built from JSON Schemas: an intent's input, and the arguments of a call to approve.

The schema's model stays the only validation: the form turns what was typed into JSON of the
right types (numbers, lists, booleans), the service validates it with the pydantic model, and the
model's error locations (`input.topic`, `arguments.subject`) are put back next to their fields.
Kinds of properties and their fields: string -> text (a text area when it may be long), enum ->
select, integer and number -> number, boolean -> checkbox, list of strings -> one per line, list
of enum values -> checkboxes, anything else (objects, lists of objects) -> JSON.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from conductor.core.errors import ApplicationError

# Strings that may be longer than this get a text area instead of a one-line input.
LONG_TEXT = 300
TEXTAREA_ROWS = 4


class LinesField(forms.CharField):
    """A list of strings, typed one per line; blank lines are dropped."""

    widget = forms.Textarea(attrs={"rows": TEXTAREA_ROWS})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(str(item) for item in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        return [line.strip() for line in str(text).splitlines() if line.strip()]


class SchemaForm(forms.Form):
    """The properties of a JSON Schema object as fields; `json_data()` is what to validate.

    `only` keeps those properties (the arguments a call was asked with); `location` is the first
    part of the service's error locations for these fields (`input`, `arguments`).
    """

    def __init__(
        self,
        schema: dict[str, Any],
        *args: Any,
        location: str,
        only: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.location = location
        self._kinds: dict[str, str] = {}
        definitions = schema.get("$defs", {})
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            if only is not None and name not in only:
                continue
            resolved, nullable = _resolve(prop, definitions)
            field, kind = _field(name, resolved, required=name in required and not nullable)
            self.fields[name] = field
            self._kinds[name] = kind

    def json_data(self) -> dict[str, Any]:
        """The cleaned values as JSON; fields left empty are left out (their default applies)."""
        data: dict[str, Any] = {}
        for name, kind in self._kinds.items():
            value = self.cleaned_data.get(name)
            if kind == "boolean":
                data[name] = bool(value)
            elif value not in (None, "", []):
                data[name] = value
        return data

    def add_service_errors(self, error: ApplicationError) -> None:
        """Put the service's refusals next to their fields (`input.a.sends` -> field `a`)."""
        if not error.details:
            self.add_error(None, error.message)
        for detail in error.details:
            parts = str(detail.get("field", "")).split(".")
            if parts[0] == self.location:
                parts = parts[1:]
            if parts and parts[0] in self.fields:
                inner = ".".join(parts[1:])
                if inner.isdigit() and isinstance(self.fields[parts[0]], LinesField):
                    inner = f"line {int(inner) + 1}"  # the item's index, as the form counts
                message = f"{inner}: {detail['message']}" if inner else detail["message"]
                self.add_error(parts[0], message)
            else:
                self.add_error(None, detail["message"])


def _resolve(prop: dict[str, Any], definitions: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property's own schema (a `$ref` followed, an optional's type), and if null is allowed."""
    nullable = False
    options = prop.get("anyOf")
    if options:
        kept = [option for option in options if option.get("type") != "null"]
        nullable = len(kept) < len(options)
        if len(kept) == 1:
            prop = {**kept[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
    reference = prop.get("$ref", "")
    if reference.startswith("#/$defs/"):
        prop = {**definitions.get(reference.removeprefix("#/$defs/"), {}), **prop}
        prop.pop("$ref")
    return prop, nullable


def _field(name: str, prop: dict[str, Any], *, required: bool) -> tuple[forms.Field, str]:
    """The form field of one property, and its kind (see the module docstring)."""
    common: dict[str, Any] = {
        "label": name.replace("_", " ").capitalize(),
        "help_text": prop.get("description", ""),
        "required": required,
        "initial": prop.get("default"),
    }
    kind = prop.get("type")
    items = prop.get("items", {})
    if "enum" in prop:
        choices = [(value, str(value)) for value in prop["enum"]]
        return forms.ChoiceField(choices=choices if required else [("", "—"), *choices],
                                 **common), "enum"  # fmt: skip
    if kind == "string":
        long = prop.get("maxLength", LONG_TEXT + 1) > LONG_TEXT
        widget = forms.Textarea(attrs={"rows": TEXTAREA_ROWS}) if long else forms.TextInput
        return forms.CharField(widget=widget, **common), "string"
    if kind == "integer":
        return forms.IntegerField(**common), "integer"
    if kind == "number":
        return forms.FloatField(**common), "number"
    if kind == "boolean":
        return forms.BooleanField(**{**common, "required": False}), "boolean"
    if kind == "array" and "enum" in items:
        return forms.MultipleChoiceField(
            choices=[(value, str(value)) for value in items["enum"]],
            widget=forms.CheckboxSelectMultiple, **common,
        ), "choices"  # fmt: skip
    if kind == "array" and items.get("type") == "string":
        common["help_text"] = " ".join(filter(None, ["One per line.", common["help_text"]]))
        return LinesField(**common), "lines"
    common["help_text"] = " ".join(filter(None, ["As JSON.", common["help_text"]]))
    return forms.JSONField(widget=forms.Textarea(attrs={"rows": TEXTAREA_ROWS}), **common), "json"


def pretty_json(value: Any) -> str:
    """JSON for people to read (indented, non-ASCII kept)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
