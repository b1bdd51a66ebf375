"""The startup heap is frozen in web processes and in the worker before its pool forks."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest
from celery import signals
from django.conf import settings

from conductor.celery import freeze_before_fork
from conductor.core.heap import freeze_startup_heap
from tests.conftest import child_env


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs as before


def test_freezing_moves_the_loaded_heap_out_of_the_collectors_way(unfrozen):
    assert gc.get_freeze_count() == 0

    freeze_startup_heap()

    assert gc.get_freeze_count() > 10_000  # modules, models, URL patterns and views
    assert "conductor.live.views" in sys.modules


def test_the_worker_freezes_before_its_pool_forks(unfrozen):
    # Connected to the signal the worker's main process sends before it starts its pool.
    assert freeze_before_fork in signals.worker_init._live_receivers(None)

    freeze_before_fork()

    assert gc.get_freeze_count() > 0


@pytest.mark.parametrize("module", ["conductor.asgi", "conductor.wsgi"])
def test_web_processes_freeze_once_loaded(module, db):
    loaded = subprocess.run(
        [sys.executable, "-c", f"import gc, {module}; print(gc.get_freeze_count())"],
        cwd=settings.BASE_DIR, env=child_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip

    assert int(loaded.stdout.split()[-1]) > 10_000
