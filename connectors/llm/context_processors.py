"""Template context about the LLM: pages say when its texts are demo texts."""

from __future__ import annotations

from django.http import HttpRequest

from connectors.errors import ConnectorError
from connectors.factory import choices


def llm_is_fake() -> bool:
    """Whether LLM calls are answered by the fake (no LLM configured, or fakes forced).

    False for an unrecognised USE_MOCK_CONNECTORS: every LLM call fails then, none is faked.
    """
    try:
        return any(choice.name == "llm" and choice.kind == "fake" for choice in choices())
    except ConnectorError:
        return False


def llm(request: HttpRequest) -> dict[str, bool]:
    """`llm_is_fake` for every template (settings TEMPLATES' context processors)."""
    return {"llm_is_fake": llm_is_fake()}
