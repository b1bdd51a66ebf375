"""Email connector: SMTP (stdlib smtplib) or a deterministic fake.

Action `send`: EmailRequest -> EmailResponse. The Message-ID is derived from the idempotency key,
so a message delivered twice by a retry can be deduplicated downstream.
"""
