"""The real email client: one SMTP session per message, STARTTLS and login per settings."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from django.conf import settings

from connectors.base import BaseConnector
from connectors.email.models import (
    NAME,
    REQUESTS,
    EmailRequest,
    EmailResponse,
    RefusedRecipient,
    message_id_for,
)
from connectors.errors import ConnectorError


class EmailClient(BaseConnector):
    """Send through EMAIL_HOST:EMAIL_PORT (timeout CONNECTOR_TIMEOUT_SECONDS).

    STARTTLS when EMAIL_USE_TLS (a server without it is an error, never a plaintext fallback);
    login when EMAIL_HOST_USER is set. Errors: connection failures, timeouts, disconnects and SMTP
    4xx replies are retryable; 5xx replies (all recipients refused, message rejected),
    authentication failures and missing STARTTLS are not. Recipients refused while others were
    accepted are listed in `refused` with the server's reply; a repeated address is sent once.
    """

    name = NAME
    requests = REQUESTS

    def handle(self, action: str, request: EmailRequest, *, idempotency_key: str) -> EmailResponse:
        """Deliver the message; see the class docstring for errors."""
        message = _message(request, message_id_for(idempotency_key))
        host = settings.EMAIL_HOST
        try:
            with smtplib.SMTP(
                host, int(settings.EMAIL_PORT), timeout=float(settings.CONNECTOR_TIMEOUT_SECONDS)
            ) as smtp:
                if settings.EMAIL_USE_TLS:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.EMAIL_HOST_USER:
                    smtp.login(settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD)
                refused = smtp.send_message(message, to_addrs=list(request.to))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise ConnectorError(
                f"email: all recipients refused by {host} (codes {sorted(set(codes))})",
                retryable=all(400 <= code < 500 for code in codes),
                status_code=max(codes, default=None),
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise ConnectorError(
                f"email: authentication failed at {host} ({exc.smtp_code})",
                retryable=False,
                status_code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise ConnectorError(
                f"email: {host} replied {exc.smtp_code} {_text(exc.smtp_error)}",
                retryable=400 <= exc.smtp_code < 500,
                status_code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise ConnectorError(f"email: {host} disconnected ({exc})", retryable=True) from exc
        except smtplib.SMTPException as exc:
            raise ConnectorError(f"email: {host}: {exc}", retryable=False) from exc
        except ssl.SSLCertVerificationError as exc:
            raise ConnectorError(f"email: {host}: {exc}", retryable=False) from exc
        except OSError as exc:
            # Refused connections, DNS failures and timeouts: the server may be back soon.
            raise ConnectorError(
                f"email: cannot reach {host} ({type(exc).__name__}: {exc})", retryable=True
            ) from exc
        return EmailResponse(
            accepted=[address for address in request.to if address not in refused],
            refused=[
                RefusedRecipient(address=address, code=code, message=_text(reply))
                for address, (code, reply) in refused.items()
            ],
            message_id=str(message["Message-ID"]),
        )


def _message(request: EmailRequest, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = request.subject
    message["From"] = request.from_email or settings.DEFAULT_FROM_EMAIL
    message["To"] = ", ".join(request.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id
    message.set_content(request.text)
    if request.html is not None:
        message.add_alternative(request.html, subtype="html")
    return message


def _text(value: bytes | str) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    return " ".join(text.split())[:200]
