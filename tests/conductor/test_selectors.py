"""Reads on hot paths: what they return and how much of the table they read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conductor.live import selectors
from conductor.live.models import EngagementSample
from tests.conductor.plans import rows_read
from tests.factories import LiveSessionFactory

pytestmark = pytest.mark.django_db

SAMPLES_PER_SESSION = 2_000


@pytest.fixture
def long_sessions(event):
    """Three sessions scored every 5 s for almost three hours, and one never scored."""
    start = timezone.now() - timedelta(hours=3)
    sessions = [LiveSessionFactory(event=event, status="live") for _ in range(4)]
    EngagementSample.objects.bulk_create(
        EngagementSample(session=session, at=start + timedelta(seconds=5 * i), score=0.5,
                         band="moderate", present=10, active=i % 10)
        for session in sessions[:3]
        for i in range(SAMPLES_PER_SESSION)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EngagementSample._meta.db_table}")
    return sessions


def test_latest_samples_returns_the_newest_sample_of_each_session(long_sessions):
    ids = [session.pk for session in long_sessions]

    with CaptureQueriesContext(connection) as one_session:
        selectors.latest_samples(ids[:1])
    with CaptureQueriesContext(connection) as queries:
        latest = selectors.latest_samples(ids)

    assert len(one_session) == len(queries) == 1
    assert set(latest) == set(ids[:3])  # the session never scored has no sample
    for session in long_sessions[:3]:
        newest = EngagementSample.objects.filter(session=session).order_by("-at").first()
        assert latest[session.pk].pk == newest.pk
    assert selectors.latest_samples([]) == {}


def test_latest_samples_reads_one_sample_per_session_not_their_history(long_sessions):
    with CaptureQueriesContext(connection) as queries:
        selectors.latest_samples([session.pk for session in long_sessions])

    read = rows_read(queries[0]["sql"], EngagementSample._meta.db_table)

    # A few index entries per session (PostgreSQL evaluates the per-session LIMIT 1 twice) and
    # the row itself: a constant per session, nowhere near the 6,000 samples of their histories.
    assert read <= 3 * len(long_sessions)
