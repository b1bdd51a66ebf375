"""Environments the tests set up: every connector's credentials, and a production-like process."""

from __future__ import annotations

# One value per credential variable of every connector (none is ever called for real).
CREDENTIALS = {
    "LLM_BASE_URL": "https://llm.test",
    "LLM_API_KEY": "sk",
    "EMAIL_HOST": "smtp.test",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.test/x",
    "WEBHOOK_URL": "https://receiver.test",
    "WEBHOOK_SECRET": "shh",
    "ADS_BASE_URL": "https://ads.test",
    "ADS_API_KEY": "key",
}

# The variables of a deployed process (DEBUG off), without connector credentials.
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 64 + "-a-real-secret-for-tests",
    "ALLOWED_HOSTS": "conductor.example.com",
    "DATABASE_URL": "postgres://conductor@db.invalid/conductor",
    "REDIS_URL": "redis://redis.invalid:6379/0",
}
