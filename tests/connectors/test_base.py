"""connectors.base and errors: dispatch, validation, canonical JSON."""

from __future__ import annotations

import pytest

from connectors.base import canonical_json, stable_seed
from connectors.errors import ConnectorError, ConnectorNotConfigured
from connectors.slack.fake import FakeSlack


def test_unknown_action_is_not_retryable() -> None:
    with pytest.raises(ConnectorError) as caught:
        FakeSlack().call("delete_everything", {}, idempotency_key="k")

    assert caught.value.retryable is False
    assert "unknown action 'delete_everything'" in caught.value.message
    assert "post_message" in caught.value.message


def test_invalid_payload_names_fields_without_values() -> None:
    with pytest.raises(ConnectorError) as caught:
        FakeSlack().call("post_message", {"text": "", "extra": "secret-value"}, idempotency_key="k")

    error = caught.value
    assert error.retryable is False
    assert "text:" in error.message
    assert "extra:" in error.message
    assert "secret-value" not in error.message


def test_empty_idempotency_key_is_refused() -> None:
    with pytest.raises(ConnectorError) as caught:
        FakeSlack().call("post_message", {"text": "hi"}, idempotency_key="")

    assert caught.value.retryable is False


def test_call_returns_json_data() -> None:
    assert FakeSlack().call("post_message", {"text": "hi"}, idempotency_key="k") == {"ok": True}


def test_errors_carry_their_classification() -> None:
    error = ConnectorError("boom", retryable=True, status_code=503)
    assert (error.message, error.retryable, error.status_code, str(error)) == (
        "boom",
        True,
        503,
        "boom",
    )
    assert repr(error) == "ConnectorError('boom', retryable=True, status_code=503)"
    missing = ConnectorNotConfigured("no key")
    assert isinstance(missing, ConnectorError)
    assert missing.retryable is False


def test_canonical_json_and_seed_ignore_key_order() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert stable_seed({"a": 1, "b": 2}) == stable_seed({"b": 2, "a": 1})
    assert stable_seed({"a": 1}) != stable_seed({"a": 2})
    # A fixed value: the seed must not change between processes or Python runs.
    assert stable_seed([]) == int.from_bytes(
        bytes.fromhex("4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945")[:8], "big"
    )
