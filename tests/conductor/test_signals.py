"""Signal ingestion through the batch endpoint."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from conductor.live import collector, ingest
from conductor.live.models import LiveSession, Signal
from tests.database import inserts_fail
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_collector():
    collector.reset()


def post(api, session, signals, **extra):
    return api.post(
        f"/api/v1/sessions/{session.pk}/signals/",
        json.dumps({"signals": signals, **extra}),
        content_type="application/json",
    )


def test_a_batch_is_stored_and_starts_the_session(api, live_session):
    at = (timezone.now() - timedelta(seconds=30)).isoformat()
    response = post(api, live_session, [
        {"id": "s1", "type": "join", "attendee": "ann", "at": at},
        {"type": "chat_message", "attendee": "ann", "data": {"text": "hi"}},
        {"id": "s3", "type": "reaction", "attendee": "bob"},
    ])  # fmt: skip

    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 3, "duplicates": 0}
    stored = {s.signal_id: s for s in Signal.objects.filter(session=live_session)}
    assert stored["s1"].at.isoformat() == at
    assert stored[None].data == {"text": "hi"}
    live_session.refresh_from_db()
    assert live_session.status == "live"
    assert live_session.started_at is not None


def test_people_arriving_do_not_start_a_session_what_they_do_does(api, live_session):
    """A room fills up before the talk: presence alone leaves the session scheduled, kept for when
    it starts; the first signal of anything else starts it."""
    arrivals = post(api, live_session, [
        {"id": "j1", "type": "join", "attendee": "ann"},
        {"id": "j2", "type": "join", "attendee": "bob"},
        {"id": "l1", "type": "leave", "attendee": "bob"},
    ])  # fmt: skip
    live_session.refresh_from_db()
    assert (arrivals.json()["accepted"], live_session.status) == (3, "scheduled")

    post(api, live_session, [{"id": "r1", "type": "reaction", "attendee": "ann"}])

    live_session.refresh_from_db()
    assert live_session.status == "live"
    assert Signal.objects.filter(session=live_session).count() == 4


def test_repeated_ids_are_counted_not_stored(api, live_session):
    post(api, live_session, [{"id": "a", "type": "join", "attendee": "x"}])

    response = post(api, live_session, [
        {"id": "a", "type": "join", "attendee": "x"},
        {"id": "b", "type": "reaction", "attendee": "x"},
        {"id": "b", "type": "reaction", "attendee": "x"},
    ])  # fmt: skip

    assert response.json() == {"accepted": 1, "duplicates": 2}
    assert Signal.objects.filter(session=live_session).count() == 2
    health = collector.health()
    assert (health.processed, health.duplicates) == (4, 2)


def _ingested(kind: str) -> float:
    return REGISTRY.get_sample_value("conductor_signals_ingested_total", {"type": kind}) or 0.0


def test_the_ingested_counter_counts_what_was_stored_not_a_retry_s_repeats(api, live_session):
    """An operator reads `conductor_signals_ingested_total` as the rate of signals stored: a
    client retrying after timeouts must not inflate it (it did: every item counted)."""
    joins, reactions = _ingested("join"), _ingested("reaction")
    batch = [{"id": "a", "type": "join", "attendee": "x"}]
    for _ in range(5):
        post(api, live_session, batch)
    post(api, live_session, [
        {"id": "a", "type": "join", "attendee": "x"},
        {"id": "b", "type": "reaction", "attendee": "x"},
        {"id": "b", "type": "reaction", "attendee": "x"},
        {"type": "reaction", "attendee": "y"},
    ])  # fmt: skip

    assert (_ingested("join") - joins, _ingested("reaction") - reactions) == (1, 2)
    assert Signal.objects.filter(session=live_session).count() == 3


def test_the_same_id_in_another_session_is_not_a_duplicate(api, event, live_session):
    other = LiveSessionFactory(event=event)

    post(api, live_session, [{"id": "a", "type": "join", "attendee": "x"}])
    response = post(api, other, [{"id": "a", "type": "join", "attendee": "x"}])

    assert response.json()["accepted"] == 1


def test_an_invalid_item_rejects_the_whole_batch_naming_each_item(api, live_session):
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    response = post(api, live_session, [
        {"type": "join", "attendee": "ok"},
        {"type": "dance", "attendee": "x"},
        {"type": "join"},
        {"type": "join", "attendee": "y", "at": "yesterday"},
        {"type": "join", "attendee": "z", "colour": "red"},
    ])  # fmt: skip
    far = post(api, live_session, [{"type": "join", "attendee": "a", "at": future}])

    assert response.status_code == 400
    details = {(d["index"], d["field"]) for d in response.json()["error"]["details"]}
    assert details == {(1, "type"), (2, "attendee"), (3, "at"), (4, "colour")}
    assert far.status_code == 400
    assert far.json()["error"]["details"] == [
        {"index": 0, "field": "at", "message": "More than 5 minutes in the future."}
    ]
    assert not Signal.objects.exists()
    assert collector.health().rejected == 5


def test_a_batch_with_faults_of_every_kind_names_them_all_at_once(api, live_session):
    """The schema's faults and the time's or the data's come in one answer: a client fixes its
    batch once, not once per kind of fault."""
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    response = post(api, live_session, [
        {"type": "join", "attendee": "a", "at": future},
        {"type": "dance", "attendee": "b"},
        {"type": "chat_message", "attendee": "c", "data": {"text": "x" * 5_000}},
        {"type": "join", "attendee": "d"},
    ])  # fmt: skip

    error = response.json()["error"]
    assert response.status_code == 400
    assert [(d["index"], d["field"]) for d in error["details"]] == [
        (0, "at"), (1, "type"), (2, "data"),
    ]  # fmt: skip
    assert error["message"] == "The batch has 3 invalid item(s); nothing was stored."
    assert not Signal.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"signals": []}, "signals"),
        ({"signals": [{"type": "join", "attendee": "a"}] * 5001}, "signals"),
        ({"events": []}, "events"),
        ([{"type": "join", "attendee": "a"}], ""),  # a list, not a batch
    ],
)
def test_batch_shape_errors(api, live_session, body, field):
    response = api.post(f"/api/v1/sessions/{live_session.pk}/signals/", body, format="json")

    assert response.status_code == 400
    assert field in {d["field"] for d in response.json()["error"]["details"]}
    assert response.json()["error"]["message"] == "The batch is invalid; nothing was stored."


def test_a_signals_data_is_a_few_kilobytes_not_a_document(api, live_session):
    response = post(api, live_session, [
        {"type": "chat_message", "attendee": "a", "data": {"text": "hi " * 100}},
        {"type": "chat_message", "attendee": "b", "data": {"text": "x" * 2_000_000}},
    ])  # fmt: skip

    assert response.status_code == 400
    assert response.json()["error"]["details"] == [
        {"index": 1, "field": "data", "message": "Larger than 4,096 characters of JSON."}
    ]
    assert not Signal.objects.exists()


def test_items_are_named_once_each_and_times_are_iso_8601_with_an_offset(api, live_session):
    now = timezone.now()
    response = post(api, live_session, [
        {"type": "dance", "attendee": ""},  # two faults, one item
        {"type": "join", "attendee": "a", "at": now.timestamp()},  # seconds, not a time
        {"type": "join", "attendee": "b", "at": now.replace(tzinfo=None).isoformat()},
    ])  # fmt: skip

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["message"] == "The batch has 3 invalid item(s); nothing was stored."
    assert {(d["index"], d["field"]) for d in error["details"]} == {
        (0, "type"), (0, "attendee"), (1, "at"), (2, "at"),
    }  # fmt: skip
    assert not Signal.objects.exists()


def test_malformed_json_and_wrong_content_type(api, live_session):
    url = f"/api/v1/sessions/{live_session.pk}/signals/"

    broken = api.generic("POST", url, '{"signals": [', content_type="application/json")
    form = api.post(url, {"signals": "x"})

    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "malformed_json"  # as every other endpoint says it
    assert broken.json()["error"]["message"].startswith("Malformed JSON: ")
    assert form.status_code == 415
    batch = '{"signals": [{"type": "join", "attendee": "a"}]}'
    for media_type, expected in [
        ("APPLICATION/JSON", 202), ("application/json; charset=UTF-8", 202),
        ("application/json; charset=latin-1", 415), ("application/jsonx", 415),
    ]:  # fmt: skip
        assert api.generic("POST", url, batch, content_type=media_type).status_code == expected


def test_an_ended_session_takes_no_signals(api, live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="ended")

    response = post(api, live_session, [{"type": "join", "attendee": "a"}])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_ended"
    assert not Signal.objects.exists()


def test_a_batch_stored_before_the_end_sent_again_is_all_duplicates_not_a_409(api, live_session):
    """A client that timed out, retrying after the organizer ended the session, learns its
    signals were kept; one new signal among them is still refused."""
    batch = [{"id": "s1", "type": "join", "attendee": "a"},
             {"id": "s2", "type": "reaction", "attendee": "a"}]  # fmt: skip
    assert post(api, live_session, batch).status_code == 202
    LiveSession.objects.filter(pk=live_session.pk).update(status="ended")

    again = post(api, live_session, batch)
    more = post(api, live_session, [*batch, {"id": "s3", "type": "leave", "attendee": "a"}])
    unnamed = post(api, live_session, [{"type": "leave", "attendee": "a"}])

    assert (again.status_code, again.json()) == (202, {"accepted": 0, "duplicates": 2})
    assert (more.status_code, unnamed.status_code) == (409, 409)
    assert Signal.objects.count() == 2


def test_a_blank_attendee_or_id_is_named_not_counted_as_someone(api, live_session):
    response = post(api, live_session, [
        {"type": "join", "attendee": "   "},
        {"id": " ", "type": "join", "attendee": "b"},
    ])  # fmt: skip

    assert response.status_code == 400
    assert [(d["index"], d["field"], d["message"]) for d in
            response.json()["error"]["details"]] == [
        (0, "attendee", "Must not be blank."), (1, "id", "Must not be blank.")
    ]  # fmt: skip
    assert not Signal.objects.exists()


def test_the_data_limit_counts_the_characters_sent(api, live_session):
    """4,096 characters of compact JSON, each "é" one of them (it counted as its six-character
    escape, so a non-Latin text had a sixth of the room)."""
    fits = {"t": "é" * (4096 - len('{"t":""}'))}
    too_long = {"t": "é" * (4097 - len('{"t":""}'))}

    response = post(api, live_session, [
        {"type": "chat_message", "attendee": "a", "data": fits},
        {"type": "chat_message", "attendee": "b", "data": too_long},
    ])  # fmt: skip

    assert response.status_code == 400
    assert [d["index"] for d in response.json()["error"]["details"]] == [1]
    assert post(api, live_session, [{"type": "chat_message", "attendee": "a", "data": fits}]
                ).status_code == 202  # fmt: skip
    assert Signal.objects.get().data == fits


def test_another_organizers_session_is_404(api, other_organizer):
    theirs = LiveSessionFactory(event=EventFactory(organizers=[other_organizer]))

    assert post(api, theirs, [{"type": "join", "attendee": "a"}]).status_code == 404
    assert not Signal.objects.exists()


def writes_fail():
    """Every insert into the signal table fails in PostgreSQL itself, as on a full disk."""
    return inserts_fail("conductor_signal")


def test_a_failed_write_is_503_counted_and_stores_nothing(api, live_session):
    with writes_fail():
        for _ in range(10):
            response = post(api, live_session, [{"type": "join", "attendee": "a"}])

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "write_failed"
    assert not Signal.objects.exists()
    health = collector.health()
    assert health.write_errors == 10
    assert not health.healthy
    assert "10 consecutive write errors" in health.problem
    assert api.get("/healthz").json()["checks"]["collector"].startswith("error")


def test_collector_health_recovers_and_reports_ratio(api, live_session):
    with writes_fail():
        post(api, live_session, [{"type": "join", "attendee": "a"}])
    for _ in range(5):
        post(api, live_session, [{"type": "join", "attendee": "a"}])

    health = collector.health()
    assert health.consecutive_errors == 0
    assert health.error_ratio == pytest.approx(1 / 6)
    assert not health.healthy  # over 10% of the recent batches failed
    assert "17%" in health.problem


def counter_errors(operation: str) -> float:
    sample = REGISTRY.get_sample_value(
        "conductor_collector_counter_errors_total", {"operation": operation}
    )
    return sample or 0.0


def test_a_redis_outage_loses_the_counters_not_the_answer(api, live_session, redis_down, caplog):
    before = counter_errors("batch")

    response = post(api, live_session, [
        {"id": "r1", "type": "join", "attendee": "ann"},
        {"type": "chat_message", "attendee": "ann"},
    ])  # fmt: skip

    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert Signal.objects.filter(session=live_session).count() == 2
    assert counter_errors("batch") == before + 1
    assert "collector counters not updated (batch)" in caplog.text


def test_after_a_redis_failure_the_counters_are_left_alone_for_a_while(
    api, live_session, redis_down, caplog
):
    before = counter_errors("batch")

    for attempt in range(3):
        response = post(api, live_session, [{"id": f"p{attempt}", "type": "join", "attendee": "a"}])
        assert response.status_code == 202

    # One try at Redis (one warning), then the pause: each lost update is still counted.
    assert caplog.text.count("collector counters not updated") == 1
    assert counter_errors("batch") == before + 3


def test_a_redis_outage_keeps_a_bad_batch_a_400(api, live_session, redis_down):
    before = counter_errors("rejected")

    response = post(api, live_session, [{"type": "wave", "attendee": "ann"}])

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "type"
    assert counter_errors("rejected") == before + 1


def test_a_redis_outage_keeps_a_failed_write_a_503(api, live_session, redis_down):
    before = counter_errors("write_error")

    with writes_fail():
        response = post(api, live_session, [{"type": "join", "attendee": "ann"}])

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "write_failed"
    assert counter_errors("write_error") == before + 1


def test_a_batch_racing_another_with_the_same_ids_is_deduplicated(api, live_session):
    """The optimistic COPY is refused by the unique index; the staging path takes over."""
    Signal.objects.create(session=live_session, signal_id="raced", type="join", attendee="a",
                          at=timezone.now(), received_at=timezone.now())  # fmt: skip

    response = post(api, live_session, [
        {"id": "raced", "type": "join", "attendee": "a"},
        {"id": "fresh", "type": "join", "attendee": "b"},
    ])  # fmt: skip

    assert response.json() == {"accepted": 1, "duplicates": 1}


def test_engagement_and_anomalies_endpoints(api, client_for, other_organizer, live_session):
    from conductor.live.models import Anomaly, EngagementSample

    now = timezone.now()
    for seconds in (20, 10, 0):
        EngagementSample.objects.create(
            session=live_session, at=now - timedelta(seconds=seconds), score=0.5,
            band="moderate", present=10, active=5,
        )  # fmt: skip
    Anomaly.objects.create(session=live_session, type="SUDDEN_DROP", severity="WARNING",
                           score=0.2, baseline=0.5, deviation=-0.3, message="fell",
                           detected_at=now)  # fmt: skip
    base = f"/api/v1/sessions/{live_session.pk}"

    everything = api.get(f"{base}/engagement/").json()["samples"]
    since = api.get(f"{base}/engagement/", {"since": (now - timedelta(seconds=15)).isoformat()})
    anomalies = api.get(f"{base}/anomalies/").json()["results"]

    assert [s["at"] for s in everything] == sorted(s["at"] for s in everything)
    assert len(everything) == 3
    assert len(since.json()["samples"]) == 2
    assert since.json()["more"] is False
    # A limit that cuts the list says so: the latest ones, or the first ones after `since`.
    latest = api.get(f"{base}/engagement/", {"limit": 2}).json()
    first = api.get(f"{base}/engagement/", {"limit": 2, "since": (now - timedelta(minutes=1))
                                            .isoformat()}).json()  # fmt: skip
    rest = api.get(f"{base}/engagement/", {"limit": 2, "since": first["samples"][-1]["at"]}).json()
    assert ([s["at"] for s in latest["samples"]], latest["more"]) == (
        [s["at"] for s in everything[1:]],
        True,
    )
    assert ([s["at"] for s in first["samples"]], first["more"]) == (
        [s["at"] for s in everything[:2]],
        True,
    )
    assert ([s["at"] for s in rest["samples"]], rest["more"]) == ([everything[2]["at"]], False)
    assert anomalies[0]["type"] == "SUDDEN_DROP"
    assert api.get(f"{base}/engagement/", {"since": "soon"}).status_code == 400
    # As the signals take times: with their offset, never guessed.
    for naive in ("2026-12-02T12:44:00", "2026-12-02"):
        refused = api.get(f"{base}/engagement/", {"since": naive})
        assert refused.status_code == 400
        assert refused.json()["error"]["details"][0]["field"] == "since"
    stranger = client_for(other_organizer)
    assert stranger.get(f"{base}/engagement/").status_code == 404
    assert stranger.get(f"{base}/anomalies/").status_code == 404


def test_a_nul_character_is_refused_with_its_item_not_at_the_write(api, live_session):
    response = post(api, live_session, [
        {"type": "join", "attendee": "ok"},
        {"type": "join", "attendee": "a\u0000b"},
        {"type": "chat_message", "attendee": "c", "data": {"text": ["hi", "x\u0000"]}},
        {"type": "chat_message", "attendee": "d", "data": {"text": "a literal \\u0000 is fine"}},
    ])  # fmt: skip

    assert response.status_code == 400
    details = {(d["index"], d["field"]) for d in response.json()["error"]["details"]}
    assert details == {(1, "attendee"), (2, "data")}
    assert collector.health().write_errors == 0
    assert (
        post(
            api,
            live_session,
            [
                {
                    "type": "chat_message",
                    "attendee": "d",
                    "data": {"text": "a literal \\u0000 is fine"},
                }
            ],
        ).status_code
        == 202
    )


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "9" * 400 + ".5"])
def test_a_number_jsonb_cannot_hold_is_refused_with_its_item_not_at_the_write(
    api, live_session, number
):
    # The parser reads these as float NaN or infinity; jsonb has neither. A retry of the batch
    # cannot succeed, so this is the client's 400, not a 503.
    body = (
        '{"signals": [{"type": "join", "attendee": "ok", "data": {"n": 1e300}},'
        f' {{"type": "poll_vote", "attendee": "b", "data": {{"votes": [1, {number}]}}}}]}}'
    )

    response = api.generic(
        "POST", f"/api/v1/sessions/{live_session.pk}/signals/", body,
        content_type="application/json",
    )  # fmt: skip

    assert response.status_code == 400, response.content
    details = [(d["index"], d["field"]) for d in response.json()["error"]["details"]]
    assert details == [(1, "data")]
    assert collector.health().write_errors == 0
    assert not Signal.objects.exists()


def test_a_batch_over_its_limit_is_413_naming_it_and_stores_nothing(api, live_session, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_BODY_BYTES", 2 * 1024 * 1024)

    response = post(api, live_session, [{"type": "join", "attendee": "a" * 100}] * 25_000)

    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": "The batch is larger than 2 MB; send it as smaller batches.",
        "details": [],
    }
    assert not Signal.objects.exists()


def test_a_batch_as_large_as_the_readme_allows_is_taken(api, live_session):
    """5,000 signals with data of 500 characters each: a 413 at Django's 2.5 MB before, though
    the README allows 5,000 signals of up to 4,096 characters of data."""
    text = "x" * 480
    batch = [{"type": "chat_message", "attendee": f"a{i}", "data": {"text": text}}
             for i in range(5_000)]  # fmt: skip

    response = post(api, live_session, batch)

    assert response.status_code == 202, response.content[:300]
    assert response.json()["accepted"] == 5_000
