"""Requests and responses of the email connector."""

from __future__ import annotations

import hashlib
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

NAME = "email"


def _address(value: str) -> str:
    # Syntax only: a DNS lookup would make validation slow and flaky, and a domain can come back.
    # Reserved names (.invalid, .localhost, .arpa) are refused; .test is kept for development
    # and test mail servers.
    try:
        return validate_email(value, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as error:
        raise ValueError(f"not an email address: {error}") from None


# An address as the email standards define it (its domain lower-cased), so a list that passes an
# agent's input and waits for approval does not fail at the connector afterwards. One line by
# construction: header values with line breaks would inject headers.
Address = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254),
    AfterValidator(_address),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]
HeaderText = Annotated[str, StringConstraints(pattern=r"^[^\r\n]*$")]


class EmailRequest(BaseModel):
    """A message to up to 1,000 recipients; `from_email` defaults to DEFAULT_FROM_EMAIL."""

    model_config = ConfigDict(extra="forbid")

    to: list[Address] = Field(min_length=1, max_length=1000)
    subject: HeaderText = Field(min_length=1, max_length=200)
    text: str
    html: str | None = None
    from_email: Address | None = None

    @field_validator("to")
    @classmethod
    def _once_each(cls, to: list[str]) -> list[str]:
        # A repeated address gets one copy. It also keeps smtplib's "all refused" honest: it
        # raises only when every address it was given is refused, repeats included.
        return list(dict.fromkeys(to))


class RefusedRecipient(BaseModel):
    """A recipient the server refused while accepting others, with its SMTP reply."""

    address: str
    code: int
    message: str


class EmailResponse(BaseModel):
    """Recipients the server accepted, those it refused (others accepted), the Message-ID sent."""

    accepted: list[str]
    refused: list[RefusedRecipient] = Field(default_factory=list)
    message_id: str


REQUESTS: dict[str, type[BaseModel]] = {"send": EmailRequest}


def message_id_for(idempotency_key: str) -> str:
    """Return the Message-ID of every delivery made with `idempotency_key`."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@conductor>"
