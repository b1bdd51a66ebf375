"""Test overrides: the same real services, in a data directory of their own."""

from __future__ import annotations

import os
from pathlib import Path

# Never touch the `make run` data: the suite gets its own PostgreSQL and Redis.
os.environ.setdefault(
    "CONDUCTOR_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test")
)

from conductor.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; never in production
USE_MOCK_CONNECTORS = "1"
# Agents with scripted behaviour (slow, failing, approval-gated) for the orchestrator's tests.
AGENT_MODULES = [*AGENT_MODULES, "tests.agents.sample_agents"]  # noqa: F405
