"""What drf-spectacular needs to document the API as it behaves.

- `ErrorSerializer`: the one error shape of conductor.core.errors (component `Error`).
- `document_errors`: a postprocessing hook giving every operation the error statuses its shape
  makes possible - 400 for a body or a query, 401, 403 for a write (a session login without its
  CSRF token), 404 for an object in the path, 413 and 415 for a body, 503 when the database or
  Redis is out. A view declares the rest itself with `error_responses` (409, 429, a 404 for an
  object its body names).
- `openapi_schema`: a pydantic model's JSON Schema as OpenAPI 3.0 reads it.
- `document_parameters`, `require_bodies`: hooks for what drf-spectacular leaves out (ids are
  from 1, no NUL character in a string, a body that must hold something is required).
- Serializer extensions: strict inputs say `additionalProperties: false` and no NUL character;
  pydantic-validated fields show their model.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse
from pydantic import BaseModel
from rest_framework import serializers

ERROR_COMPONENT = "Error"

ERROR_DESCRIPTIONS = {
    400: "The request is invalid: `details` names each wrong field (and item `index`).",
    401: "No valid credentials (`Authorization: Token <key>`, or a session login).",
    403: "Not allowed: a session login that sent no CSRF token.",
    404: "No such object among the caller's.",
    409: "The object's state does not allow it now.",
    413: "The request body, or what it asks to store, is too large.",
    415: "The body is not JSON (`Content-Type: application/json`).",
    429: "Too many requests: retry after `Retry-After` seconds.",
    503: "The database or Redis is unavailable (`unavailable`): retry later.",
}
_UNSAFE = {"post", "put", "patch", "delete"}


class ErrorDetailSerializer(serializers.Serializer[Any]):
    field = serializers.CharField(help_text="Dotted path of the field; empty for the whole input.")
    message = serializers.CharField()
    index = serializers.IntegerField(required=False, help_text="The item of a batch.")


class ErrorBodySerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Stable and machine-readable, e.g. `not_found`.")
    message = serializers.CharField()
    details = ErrorDetailSerializer(many=True)


class ErrorSerializer(serializers.Serializer[Any]):
    """`conductor.core.errors.error_body`."""

    error = ErrorBodySerializer()


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """`extend_schema(responses=...)` entries for the error statuses only this view knows of."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


def _possible_errors(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation of this shape can answer, whatever its view."""
    query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    body = "requestBody" in operation
    codes = [401, 503]
    # A GET refuses a query parameter it does not take, and so does every write
    # (NoQueryParametersOnWrites): a body or not, any operation may answer 400.
    if body or query or method == "get" or method in _UNSAFE:
        codes.append(400)
    if method in _UNSAFE:
        codes.append(403)
    if re.search(r"\{\w+\}", path):
        codes.append(404)
    if body:
        codes += [413, 415]
    return sorted(codes)


def document_errors(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS entry: every operation documents its error statuses, with `Error`."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    if ERROR_COMPONENT not in schemas:
        raise RuntimeError(
            "No view uses conductor.core.schema.error_responses, so the Error component is missing."
        )
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, methods in result.get("paths", {}).items():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            for code in _possible_errors(path, method, operation):
                responses.setdefault(
                    str(code),
                    {
                        "description": ERROR_DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": reference}},
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
    return result


# PostgreSQL text cannot hold a NUL character, and DRF's CharField refuses one.
NO_NUL = "^[^\\u0000]*$"


def _forbid_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and not {"enum", "format", "pattern"} & set(schema):
        schema["pattern"] = NO_NUL


def document_parameters(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS entry: an `<int:...>` id in a path is a whole number from 1 (the URL
    converter matches digits only; anything else is not a URL of the API), and a string in a
    query holds no NUL character."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"]["minimum"] = 1
                if parameter.get("in") == "query":
                    _forbid_nul(parameter["schema"])
    return result


def require_bodies(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS entry: a body that must hold something (`minProperties`) is
    required, as one with required fields already is."""
    schemas = result.get("components", {}).get("schemas", {})
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            body = operation.get("requestBody", {})
            for media in body.get("content", {}).values():
                reference = media.get("schema", {}).get("$ref", "")
                if schemas.get(reference.rsplit("/", 1)[-1], {}).get("minProperties"):
                    body["required"] = True
    return result


# -- pydantic models in OpenAPI 3.0 ---------------------------------------------------------------


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema, inlined (OpenAPI has no `#/$defs`) and in OpenAPI 3.0's dialect:
    `exclusiveMinimum: true` beside `minimum`, `nullable` for `anyOf [X, null]`, `enum` for
    `const`."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(definitions[node["$ref"].rsplit("/", 1)[-1]])
        node = {key: convert(value) for key, value in node.items()}
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
                node[plain] = node[bound]
                node[bound] = True
        if "const" in node:
            node["enum"] = [node.pop("const")]
        variants = node.get("anyOf")
        if isinstance(variants, list) and {"type": "null"} in variants:
            rest = [variant for variant in variants if variant != {"type": "null"}]
            del node["anyOf"]
            node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
            node["nullable"] = True
        return node

    return dict(convert(schema))


def merge_patch_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) of an object of `schema`: every property optional and
    nullable (null puts the default back), nested objects patched the same way."""
    if schema.get("type") != "object" or "properties" not in schema:
        return schema
    properties = {}
    for name, value in schema["properties"].items():
        patched = {key: item for key, item in merge_patch_schema(value).items() if key != "default"}
        properties[name] = {**patched, "nullable": True}
    return {
        **{key: item for key, item in schema.items() if key not in {"required", "default"}},
        "properties": properties,
    }


# drf-spectacular is untyped: its extension base classes register themselves on subclassing.
class PydanticFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """Documents a PydanticField with its model's JSON Schema."""

    target_class = "conductor.live.api.PydanticField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = openapi_schema(self.target.model)
        return merge_patch_schema(schema) if self.target.merge_patch else schema


class StrictSerializerExtension(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """A StrictSerializer answers 400 to a field it does not know: `additionalProperties: false`."""

    target_class = "conductor.live.api.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        for field in schema.get("properties", {}).values():
            _forbid_nul(field)
        min_properties = getattr(self.target, "min_properties", None)
        if min_properties:
            schema["minProperties"] = min_properties
        return schema


# The served schema's settings over SPECTACULAR_SETTINGS (conductor/urls.py): drf-spectacular's
# default hook, then ours. A PATCH takes its own input serializer, whose required fields are
# required: not the "every field optional" copy drf-spectacular makes for a partial update.
SERVED_SETTINGS = {
    "COMPONENT_SPLIT_PATCH": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "conductor.core.schema.document_errors",
        "conductor.core.schema.document_parameters",
        "conductor.core.schema.require_bodies",
    ],
}
