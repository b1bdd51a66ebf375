"""The pure engine imports with numpy and pydantic alone: no Django, no Celery, nothing else of
ours. An evaluation or a notebook can use it without the product."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from django.conf import settings

ENGINE = Path(settings.BASE_DIR) / "conductor" / "live" / "engine"

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("django", "celery", "kombu", "rest_framework", "channels", "redis", "psycopg",
               "agents", "connectors", "telemetry")

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            packages = ("conductor.live", "conductor.live.engine")
            ours = name.startswith("conductor.") and name not in packages and not name.startswith(
                "conductor.live.engine.")
            if name.split(".")[0] in BLOCKED or ours:
                raise ImportError(f"the engine imported {name}")
            return None

    sys.meta_path.insert(0, Blocked())
    """
)


def test_the_engine_imports_without_django_celery_or_the_rest_of_the_product():
    modules = sorted(f"conductor.live.engine.{path.stem}" for path in ENGINE.glob("[!_]*.py"))
    code = BLOCKER + "\n".join(f"import {module}" for module in modules) + "\nprint('pure')"

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin"}, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"
    assert len(modules) >= 5  # score, anomaly, policy, offpolicy, vocabulary


def test_the_blocker_would_catch_an_import_of_django():
    code = BLOCKER + "import conductor.live.engine.score\nimport django"

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin"}, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode != 0
    assert "the engine imported django" in done.stderr
