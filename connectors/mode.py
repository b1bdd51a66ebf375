"""USE_MOCK_CONNECTORS, parsed without Django so that settings.py can validate it at load."""

from __future__ import annotations

from typing import Literal

MockMode = Literal["auto", "fake", "real"]

FAKES_ALWAYS = frozenset({"1", "true", "yes", "on"})
REAL_ALWAYS = frozenset({"0", "false", "no", "off"})


def mock_mode(raw: object) -> MockMode:
    """Return "auto" (unset or empty), "fake" (1/true/yes/on) or "real" (0/false/no/off).

    Case and surrounding spaces are ignored; None is unset. Raises ValueError naming the
    variable and the accepted values for anything else.
    """
    value = "" if raw is None else str(raw).strip().lower()
    if not value:
        return "auto"
    if value in FAKES_ALWAYS:
        return "fake"
    if value in REAL_ALWAYS:
        return "real"
    raise ValueError(
        f"USE_MOCK_CONNECTORS={raw!r} is not valid: leave it unset (fakes where credentials are "
        "missing), 1/true/yes/on (fakes always) or 0/false/no/off (real clients always)"
    )
