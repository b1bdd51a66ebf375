from tests.conductor.test_replay import *  # noqa

def test_sample(live_session):
    start = record(live_session)
    anomaly = Anomaly.objects.create(session=live_session, type="SUDDEN_DROP", severity="WARNING", score=0.3, baseline=0.5, deviation=-0.2, message="fell", detected_at=start + timedelta(seconds=DROP_AT + 2))
    Intervention.objects.create(session=live_session, anomaly=anomaly, type="broadcast", status="executed", source="template")
    print(replay_table(live_session))
    print(replay_table(live_session, "--set", "holdout_share=0.5", "--seed", "4", "--set", "cooldowns.poll=30", "--mode", "auto"))
    r = replay_json(live_session, "--set", 'allowed_interventions=["poll"]')
    print(json.dumps(r["decisions"][0], indent=1)); print(r["summary"])
