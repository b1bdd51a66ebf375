"""The API's request parser (DEFAULT_PARSER_CLASSES)."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Half of a UTF-16 pair on its own: JSON text may escape one ("\ud800"), but it is no character,
# UTF-8 cannot encode it and PostgreSQL cannot store it.
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, where a body nested too deeply to decode, or holding a lone surrogate
    (in a value or a key), is a 400 like any other malformed JSON: the standard library raises
    RecursionError for the first and accepts the second, which then failed the answer that
    named the key (a 500, its database connection never given back)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            lone_surrogate = _has_lone_surrogate(data)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        if lone_surrogate:
            raise ParseError(
                "JSON parse error - a \\u escape between \\ud800 and \\udfff that is not half of "
                "a pair is not a character."
            )
        return data


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False
