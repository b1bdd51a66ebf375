"""The email connector: the real client against a loopback SMTP server, and the fake."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest

from connectors import fakes
from connectors.email.client import EmailClient
from connectors.email.fake import FakeEmail
from connectors.email.models import message_id_for
from connectors.errors import ConnectorError

MESSAGE = {"to": ["ann@example.test", "bob@example.test"], "subject": "Hi there", "text": "Body"}


def send(payload: dict[str, object] = MESSAGE, key: str = "run-1-call-0") -> dict[str, object]:
    return EmailClient().call("send", payload, idempotency_key=key)


def test_delivers_the_message(smtp_server, settings) -> None:
    settings.DEFAULT_FROM_EMAIL = "Conductor <conductor@example.test>"

    output = send({**MESSAGE, "html": "<p>Body</p>"})

    assert output == {
        "accepted": ["ann@example.test", "bob@example.test"],
        "refused": [],
        "message_id": message_id_for("run-1-call-0"),
    }
    [delivery] = smtp_server.deliveries
    assert delivery.mail_from == "conductor@example.test"
    assert delivery.recipients == ["ann@example.test", "bob@example.test"]
    message = delivery.message
    assert message["Subject"] == "Hi there"
    assert message["To"] == "ann@example.test, bob@example.test"
    assert message["Message-ID"] == message_id_for("run-1-call-0")
    assert message.get_body(("plain",)).get_content().strip() == "Body"
    assert message.get_body(("html",)).get_content().strip() == "<p>Body</p>"


def test_message_id_depends_only_on_the_key(smtp_server) -> None:
    send(key="k-1")
    send({**MESSAGE, "from_email": "other@example.test"}, key="k-1")
    send(key="k-2")

    ids = [delivery.message["Message-ID"] for delivery in smtp_server.deliveries]
    assert ids[0] == ids[1] != ids[2]
    assert smtp_server.deliveries[1].mail_from == "other@example.test"
    assert message_id_for("k-1").endswith("@conductor>")
    assert len(message_id_for("k-1")) == len("<>@conductor") + 32


def test_logs_in_when_a_user_is_set(smtp_server, settings) -> None:
    smtp_server.script.auth = ("mailer", "pw")
    settings.EMAIL_HOST_USER = "mailer"
    settings.EMAIL_HOST_PASSWORD = "pw"

    send()

    assert len(smtp_server.deliveries) == 1


def test_bad_credentials_are_not_retryable(smtp_server, settings) -> None:
    smtp_server.script.auth = ("mailer", "pw")
    settings.EMAIL_HOST_USER = "mailer"
    settings.EMAIL_HOST_PASSWORD = "wrong"

    with pytest.raises(ConnectorError) as caught:
        send()

    assert (caught.value.retryable, caught.value.status_code) == (False, 535)
    assert smtp_server.deliveries == []


def test_tls_required_but_not_offered_is_not_retryable(smtp_server, settings) -> None:
    settings.EMAIL_USE_TLS = True

    with pytest.raises(ConnectorError) as caught:
        send()

    assert caught.value.retryable is False
    assert "STARTTLS" in caught.value.message
    assert smtp_server.deliveries == []  # never falls back to plaintext


@pytest.mark.parametrize(
    ("reply", "retryable"), [("550 5.1.1 no such user", False), ("450 busy", True)]
)
def test_all_recipients_refused(smtp_server, reply, retryable) -> None:
    smtp_server.script.rcpt_replies = {address: reply for address in MESSAGE["to"]}

    with pytest.raises(ConnectorError) as caught:
        send()

    assert caught.value.retryable is retryable
    assert caught.value.status_code == int(reply[:3])
    assert smtp_server.deliveries == []


def test_some_recipients_refused(smtp_server) -> None:
    smtp_server.script.rcpt_replies = {
        "bob@example.test": "550 5.1.1 no such user",
        "cy@example.test": "452 4.2.2 mailbox full",
    }

    output = send({**MESSAGE, "to": ["ann@example.test", "bob@example.test", "cy@example.test"]})

    assert output["accepted"] == ["ann@example.test"]
    assert output["refused"] == [
        {"address": "bob@example.test", "code": 550, "message": "5.1.1 no such user"},
        {"address": "cy@example.test", "code": 452, "message": "4.2.2 mailbox full"},
    ]
    assert smtp_server.deliveries[0].recipients == ["ann@example.test"]


def test_a_repeated_address_is_sent_once(smtp_server) -> None:
    output = send({**MESSAGE, "to": ["ann@example.test", "bob@example.test", "ann@example.test"]})

    assert output["accepted"] == ["ann@example.test", "bob@example.test"]
    assert smtp_server.deliveries[0].recipients == ["ann@example.test", "bob@example.test"]


def test_a_repeated_refused_address_is_still_all_refused(smtp_server) -> None:
    # smtplib counts the addresses it was given: twice the same refused one is not "all refused"
    # to it, and the message would go out to nobody as a success.
    smtp_server.script.rcpt_replies = {"ann@example.test": "550 5.1.1 no such user"}

    with pytest.raises(ConnectorError) as caught:
        send({**MESSAGE, "to": ["ann@example.test", "ann@example.test"]})

    assert (caught.value.retryable, caught.value.status_code) == (False, 550)
    assert smtp_server.deliveries == []


@pytest.mark.parametrize(
    ("field", "reply", "retryable", "status"),
    [
        ("data_reply", "554 5.6.0 message rejected", False, 554),
        ("data_reply", "451 4.3.0 try later", True, 451),
        ("greeting", "421 4.3.2 too busy", True, 421),
        ("greeting", None, True, None),  # the server hangs up at once
    ],
)
def test_server_replies(smtp_server, field, reply, retryable, status) -> None:
    setattr(smtp_server.script, field, reply)

    with pytest.raises(ConnectorError) as caught:
        send()

    assert (caught.value.retryable, caught.value.status_code) == (retryable, status)


def test_closed_port_is_retryable(settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port

    with pytest.raises(ConnectorError) as caught:
        send()

    assert caught.value.retryable is True
    assert "cannot reach 127.0.0.1" in caught.value.message


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections (through the kernel backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_silent_server_times_out_retryably(settings, silent_server) -> None:
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = silent_server
    settings.EMAIL_USE_TLS = False
    settings.CONNECTOR_TIMEOUT_SECONDS = 0.2

    with pytest.raises(ConnectorError) as caught:
        send()

    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
        (smtplib.SMTPResponseException(452, "Too many recipients"), True),
        (smtplib.SMTPResponseException(552, b"Message\r\n too big"), False),
    ],
)
def test_session_errors(monkeypatch, settings, error, retryable) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(smtplib, "SMTP", fail)
    settings.EMAIL_HOST = "smtp.example.test"

    with pytest.raises(ConnectorError) as caught:
        send()

    assert caught.value.retryable is retryable
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    "payload",
    [
        {**MESSAGE, "to": []},
        {**MESSAGE, "to": ["not-an-address"]},
        {**MESSAGE, "to": ["a@example.test\r\nBcc: victim@example.test"]},
        {**MESSAGE, "to": [f"u{i}@example.test" for i in range(1001)]},
        {**MESSAGE, "subject": ""},
        {**MESSAGE, "subject": "x" * 201},
        {**MESSAGE, "subject": "Hi\r\nBcc: victim@example.test"},
        {**MESSAGE, "from_email": "nobody"},
    ],
)
def test_invalid_messages_are_refused(payload) -> None:
    with pytest.raises(ConnectorError) as caught:
        FakeEmail().call("send", payload, idempotency_key="k")

    assert caught.value.retryable is False


def test_fake_records_each_message_once_per_key() -> None:
    first = FakeEmail().call("send", MESSAGE, idempotency_key="k-1")
    again = FakeEmail().call("send", MESSAGE, idempotency_key="k-1")
    FakeEmail().call("send", {**MESSAGE, "subject": "Second"}, idempotency_key="k-2")

    expected = {"accepted": MESSAGE["to"], "refused": [], "message_id": message_id_for("k-1")}
    assert first == again == expected
    effects = fakes.side_effects("email")
    assert [effect["idempotency_key"] for effect in effects] == ["k-1", "k-2"]
    assert effects[0]["action"] == "send"
    assert effects[0]["payload"] == {**MESSAGE, "html": None, "from_email": None}
    assert fakes.deliveries("email") == 3


def test_fake_accepts_a_repeated_address_once_like_the_client() -> None:
    twice = {**MESSAGE, "to": [MESSAGE["to"][0], *MESSAGE["to"]]}

    output = FakeEmail().call("send", twice, idempotency_key="k-3")

    assert output["accepted"] == MESSAGE["to"]


def test_fake_applies_injected_failures_before_recording() -> None:
    fakes.set_behaviour("email", fail_next=1, retryable=False)

    with pytest.raises(ConnectorError) as caught:
        FakeEmail().call("send", MESSAGE, idempotency_key="k")

    assert caught.value.retryable is False
    assert fakes.deliveries("email") == 0
