"""Each built-in agent, through the orchestrator, with the deterministic fake connectors."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents import services
from agents.builtin import campaign as campaign_agent
from agents.builtin.email import Variant, two_proportion_test
from agents.builtin.social import fit, normalize_hashtags
from agents.models import AgentRun, Campaign, CampaignMetric, MemoryItem
from conductor.core.errors import ApplicationError
from connectors import fakes
from tests.factories import OrganizerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_fakes():
    fakes.reset()


@pytest.fixture
def organizer_():
    return OrganizerFactory()


def run(organizer, intent: str, data: dict, agent: str | None = None) -> AgentRun:
    created, _ = services.run_create(organizer=organizer, intent=intent, data=data, agent=agent)
    services.run_execute(run_id=created.pk)
    created.refresh_from_db()
    return created


@pytest.mark.parametrize(
    ("intent", "data", "check"),
    [
        ("generate-draft", {"topic": "AI", "keywords": ["llm"]},
         lambda o: o["title"] and o["call_to_action"]),
        # Passes the model's answer through: its output model is the whole contract.
        ("optimize-subject", {"subject": "Join us"}, None),
        ("repurpose", {"text": "Our keynote", "formats": ["tweet", "email"]},
         lambda o: all(i["format"] in {"tweet", "email"} for i in o["items"])),
        ("generate-sequence", {"event_name": "DevConf", "emails": 3},
         lambda o: [e["send_offset_days"] for e in o["emails"]]
         == sorted(e["send_offset_days"] for e in o["emails"])),
        ("generate-post", {"platform": "x", "topic": "AI", "link": "https://e.example/x"},
         lambda o: len(o["text"]) <= 280 and all(t.startswith("#") for t in o["hashtags"])),
        ("optimize-caption", {"platform": "instagram", "caption": "Come"},
         lambda o: all(len(c) <= 2200 for c in o["options"])),
        ("hashtag-pack", {"topic": "cloud", "count": 5},
         lambda o: len(o["hashtags"]) <= 5 and len(set(o["hashtags"])) == len(o["hashtags"])),
        ("generate-ad-copy", {"product": "DevConf", "audience": "engineers", "variants": 2},
         lambda o: len(o["variants"]) == 2),  # the fake offers 3
    ],
)  # fmt: skip
def test_llm_intents_return_structured_output(organizer_, intent, data, check):
    done = run(organizer_, intent, data)

    assert done.status == "succeeded", done.error
    if check is not None:
        assert check(done.output)
    again = run(organizer_, intent, data)
    assert again.output == done.output  # the fakes are deterministic


def test_summarize_records_how_much_it_compressed(organizer_):
    text = "Long talk. " * 50

    done = run(organizer_, "summarize", {"text": text, "max_sentences": 2})

    assert done.status == "succeeded", done.error
    [metric] = done.metrics.filter(name="summary.compression")
    assert metric.value == pytest.approx(len(done.output["summary"]) / len(text))


def test_ab_test_needs_significance():
    clear = two_proportion_test(Variant(name="A", sends=1000, opens=300),
                                Variant(name="B", sends=1000, opens=200))  # fmt: skip
    unclear = two_proportion_test(Variant(name="A", sends=50, opens=11),
                                  Variant(name="B", sends=50, opens=10))  # fmt: skip

    assert clear[2] < 0.001
    assert unclear[2] > 0.5
    assert two_proportion_test(Variant(name="A", sends=0, opens=0),
                               Variant(name="B", sends=5, opens=1))[2] == 1.0  # fmt: skip
    assert two_proportion_test(Variant(name="A", sends=5, opens=0),
                               Variant(name="B", sends=5, opens=0))[2] == 1.0  # fmt: skip


def test_ab_test_run(organizer_):
    winner = run(
        organizer_,
        "ab-test",
        {
            "a": {"name": "A", "sends": 1000, "opens": 300},
            "b": {"name": "B", "sends": 1000, "opens": 200},
        },
    )
    tie = run(organizer_, "ab-test", {"a": {"name": "A", "sends": 100, "opens": 20},
                                      "b": {"name": "B", "sends": 100, "opens": 21}})  # fmt: skip

    assert winner.output["winner"] == "A"
    assert winner.output["lift"] == pytest.approx(0.5)
    assert tie.output["winner"] is None
    assert tie.output["significant"] is False


def test_send_campaign_waits_for_approval_then_sends_once(organizer_):
    message = {"to": ["a@e.example", "b@e.example"], "subject": "Hi", "text": "Come"}
    waiting = run(organizer_, "send-campaign", message)

    assert waiting.status == "awaiting_approval"
    assert fakes.deliveries("email") == 0
    services.approval_decide(run_id=waiting.pk, approve=True, user=organizer_)
    services.run_execute(run_id=waiting.pk)
    waiting.refresh_from_db()

    assert waiting.status == "succeeded"
    assert waiting.output["accepted"] == 2
    assert fakes.deliveries("email") == 1


def test_allocate_budget_plans_from_measured_performance(organizer_):
    request = {"channels": ["search", "social", "display"], "total_daily_budget": 300}
    plan = run(organizer_, "allocate-budget", request)

    assert plan.status == "succeeded", plan.error
    budgets = [a["budget"] for a in plan.output["allocations"]]
    assert sum(budgets) == pytest.approx(300)
    assert plan.output["applied"] is False
    assert plan.output["reasons"]


def test_applying_a_budget_asks_for_each_change(organizer_):
    request = {"channels": ["search", "social"], "total_daily_budget": 100, "apply": True}
    plan = run(organizer_, "allocate-budget", request)

    assert plan.status == "awaiting_approval"
    for _ in range(2):
        services.approval_decide(run_id=plan.pk, approve=True, user=organizer_)
        services.run_execute(run_id=plan.pk)
        plan.refresh_from_db()

    assert plan.status == "succeeded"
    assert plan.approvals.count() == 2
    changed = {e["payload"]["channel"] for e in fakes.side_effects("ads")}
    assert changed == {"search", "social"}


def test_an_applied_plan_says_what_was_set_after_an_edit_and_edits_are_strictly_typed(
    organizer_,
):
    request = {"channels": ["search", "social"], "total_daily_budget": 100, "apply": True}
    plan = run(organizer_, "allocate-budget", request)

    with pytest.raises(ApplicationError) as refused:
        services.approval_decide(run_id=plan.pk, approve=True, user=organizer_,
                                 arguments={"daily_budget": "5"})  # fmt: skip
    assert [d["field"] for d in refused.value.details] == ["arguments.daily_budget"]
    services.approval_decide(run_id=plan.pk, approve=True, user=organizer_,
                             arguments={"daily_budget": 5})  # fmt: skip
    services.run_execute(run_id=plan.pk)
    services.approval_decide(run_id=plan.pk, approve=True, user=organizer_)
    services.run_execute(run_id=plan.pk)
    plan.refresh_from_db()

    planned = {a["channel"]: round(a["budget"], 2) for a in plan.output["allocations"]}
    set_ = {b["channel"]: b["daily_budget"] for b in plan.output["budgets_set"]}
    first = plan.approvals.order_by("seq").first().arguments["channel"]
    assert plan.status == "succeeded"
    assert set_ == {**planned, first: 5.0}
    assert set_[first] != planned[first]
    assert all(b["previous_budget"] > 0 for b in plan.output["budgets_set"])


def test_campaign_report_totals_and_recommendation(organizer_):
    campaign = Campaign.objects.create(organizer=organizer_, name="Launch", budget=100)
    now = timezone.now()
    for channel, impressions, clicks, conversions, spend in [
        ("search", 10_000, 500, 50, 250.0),
        ("social", 20_000, 300, 6, 240.0),
    ]:
        for kind, value in [("impressions", impressions), ("clicks", clicks),
                            ("conversions", conversions), ("spend", spend)]:  # fmt: skip
            CampaignMetric.objects.create(
                campaign=campaign, kind=kind, channel=channel, value=value, at=now
            )

    report = run(organizer_, "campaign-report", {"campaign_id": campaign.pk})

    assert report.status == "succeeded", report.error
    assert report.output["totals"]["clicks"] == 800
    search = next(c for c in report.output["channels"] if c["channel"] == "search")
    assert search["ctr"] == pytest.approx(0.05)
    assert search["cost_per_conversion"] == pytest.approx(5.0)
    shares = {a["channel"]: a["share"] for a in report.output["recommendation"]["allocations"]}
    assert shares["search"] > shares["social"]


def _measure(campaign: Campaign, channels: dict[str, tuple[int, int, int, float]]) -> None:
    now = timezone.now()
    for channel, (impressions, clicks, conversions, spend) in channels.items():
        for kind, value in [("impressions", impressions), ("clicks", clicks),
                            ("conversions", conversions), ("spend", spend)]:  # fmt: skip
            CampaignMetric.objects.create(
                campaign=campaign, kind=kind, channel=channel, value=value, at=now
            )


def _planned(organizer, name: str, event_name: str, **more) -> Campaign:
    return Campaign.objects.create(
        organizer=organizer, name=name, budget=100,
        config={"name": name, "event_name": event_name, "audience": "data engineers", **more},
    )  # fmt: skip


def test_a_report_remembers_the_campaign_and_a_later_report_revises_it(organizer_):
    campaign = _planned(organizer_, "Early birds", "PyData Berlin")
    _measure(campaign, {"search": (10_000, 500, 50, 250.0), "social": (9_000, 400, 60, 100.0)})

    run(organizer_, "campaign-report", {"campaign_id": campaign.pk})

    learned = MemoryItem.objects.get(organizer=organizer_, agent="campaign")
    assert learned.key == f"campaign:{campaign.pk}"
    assert learned.reward == pytest.approx(110 / 900)
    assert learned.metadata["best_channel"] == "social"  # 0.6 conversions per unit spent
    assert learned.metadata["situation"] == "PyData Berlin: Early birds, for data engineers"
    assert "search: 50 conversions from 500 clicks, 250 spent" in learned.content

    _measure(campaign, {"search": (10_000, 500, 250, 10.0)})
    run(organizer_, "campaign-report", {"campaign_id": campaign.pk})

    learned = MemoryItem.objects.get(organizer=organizer_, agent="campaign")
    assert learned.reward == pytest.approx(360 / 1400)
    assert learned.metadata["best_channel"] == "search"


def test_a_deleted_campaign_is_forgotten(organizer_):
    campaigns = [_planned(organizer_, name, "PyData Berlin") for name in ("Gone", "Kept")]
    for campaign in campaigns:
        _measure(campaign, {"search": (1_000, 100, 10, 5.0)})
        run(organizer_, "campaign-report", {"campaign_id": campaign.pk})

    campaigns[0].delete()

    assert list(MemoryItem.objects.values_list("key", flat=True)) == [f"campaign:{campaigns[1].pk}"]


def test_a_report_with_nothing_measured_learns_nothing(organizer_):
    campaign = _planned(organizer_, "Quiet", "PyData Berlin")
    _measure(campaign, {"search": (1_000, 0, 0, 5.0)})

    assert run(organizer_, "campaign-report", {"campaign_id": campaign.pk}).status == "succeeded"
    assert not MemoryItem.objects.exists()


def _plan(organizer, **data) -> AgentRun:
    """Plan a campaign, let its children finish, and finish the plan."""
    plan = run(organizer, "plan-campaign", {"emails": 0, "social_platforms": [], **data})
    for child in plan.children.all():
        services.run_execute(run_id=child.pk)
    services.run_execute(run_id=plan.pk)
    plan.refresh_from_db()
    assert plan.status == "succeeded", plan.error
    return plan


def test_a_plan_takes_the_ad_channels_of_similar_past_campaigns(organizer_):
    past = _planned(organizer_, "Early birds", "PyData Berlin")
    _measure(past, {"search": (10_000, 500, 50, 250.0), "video": (9_000, 400, 60, 100.0)})
    run(organizer_, "campaign-report", {"campaign_id": past.pk})
    unrelated = _planned(organizer_, "Knitting circle", "Wool fair")
    _measure(unrelated, {"radio": (1_000, 100, 90, 1.0)})
    run(organizer_, "campaign-report", {"campaign_id": unrelated.pk})

    plan = _plan(organizer_, name="Last call", event_name="PyData Berlin",
                 audience="data engineers")  # fmt: skip

    assert plan.output["ad_channels"] == ["video"]
    assert [s["campaign_id"] for s in plan.output["similar"]] == [past.pk]
    assert plan.output["similar"][0]["conversion_rate"] == pytest.approx(110 / 900)
    assert list(plan.children.filter(agent="ad").values_list("input__channel", flat=True)) == [
        "video"
    ]
    # Channels asked for are kept; a newcomer, with nothing learned, gets the default.
    asked = _plan(organizer_, name="Last call", event_name="PyData Berlin", ad_channels=["x"])
    assert asked.output["ad_channels"] == ["x"]
    newcomer = _plan(OrganizerFactory(), name="Last call", event_name="PyData Berlin")
    assert (newcomer.output["ad_channels"], newcomer.output["similar"]) == (["search"], [])


def test_a_plan_starts_the_children_it_chose_first_whatever_is_learned_meanwhile(organizer_):
    plan = run(organizer_, "plan-campaign", {"name": "Last call", "event_name": "PyData Berlin",
                                             "emails": 0, "social_platforms": []})  # fmt: skip
    assert list(plan.children.filter(agent="ad").values_list("input__channel", flat=True)) == [
        "search"
    ]
    past = _planned(organizer_, "Early birds", "PyData Berlin")
    _measure(past, {"video": (9_000, 400, 60, 100.0)})
    run(organizer_, "campaign-report", {"campaign_id": past.pk})

    for child in plan.children.all():
        services.run_execute(run_id=child.pk)
    services.run_execute(run_id=plan.pk)
    plan.refresh_from_db()

    assert plan.status == "succeeded", plan.error
    assert (plan.output["ad_channels"], plan.output["similar"]) == (["search"], [])
    assert plan.children.count() == 2


@pytest.mark.parametrize("whose", ["someone else's", "nobody's"])
def test_a_report_of_a_campaign_the_organizer_does_not_own_is_refused_before_any_run(
    organizer_, whose
):
    theirs = Campaign.objects.create(organizer=OrganizerFactory(), name="Theirs")
    campaign_id = theirs.pk if whose == "someone else's" else theirs.pk + 1000

    with pytest.raises(ApplicationError) as refused:
        services.run_create(
            organizer=organizer_, intent="campaign-report", data={"campaign_id": campaign_id}
        )

    # The same answer either way: nothing tells which ids exist, and no run is stored.
    assert (refused.value.status_code, refused.value.message) == (404, "Campaign not found.")
    assert refused.value.details == [{"field": "input.campaign_id", "message": "Not found."}]
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize(
    ("intent", "data", "field"),
    [
        ("send-campaign", {"to": ["a@example.com", "not an address"], "subject": "Hi",
                           "text": "Hello"}, "input.to.1"),
        ("send-campaign", {"to": ["a@example.com"], "subject": "Hi\r\nBcc: all@example.com",
                           "text": "Hello"}, "input.subject"),
        ("generate-post", {"platform": "x", "topic": "AI", "link": "javascript:alert(1)"},
         "input.link"),
        ("hashtag-pack", {"topic": "cloud", "count": True}, "input.count"),
        ("allocate-budget", {"channels": [" "], "total_daily_budget": 10}, "input.channels.0"),
        ("allocate-budget", {"channels": ["search", "Bad Channel!! <x>"],
                             "total_daily_budget": 10}, "input.channels.1"),
        ("generate-ad-copy", {"product": "DevConf", "audience": "devs",
                              "channel": "Bad Channel!! <x>"}, "input.channel"),
    ],
)  # fmt: skip
def test_what_would_fail_when_acted_on_is_refused_before_anyone_approves_it(
    organizer_, intent, data, field
):
    with pytest.raises(ApplicationError) as refused:
        services.run_create(organizer=organizer_, intent=intent, data=data)

    assert refused.value.status_code == 400
    assert [detail["field"] for detail in refused.value.details] == [field]
    assert not AgentRun.objects.exists()


def test_an_address_is_stored_as_the_connector_will_send_it(organizer_):
    sent = run(organizer_, "send-campaign", {"to": [" Ann@Example.COM "], "subject": "Hi",
                                             "text": "Hello"})  # fmt: skip

    assert sent.input["to"] == ["Ann@example.com"]
    assert sent.status == "awaiting_approval"


def test_social_helpers():
    assert normalize_hashtags(["ai", "#AI", "Machine Learning", "", "#ml!"], 10) == [
        "#ai",
        "#MachineLearning",
        "#ml",
    ]
    long_text = "word " * 100
    assert len(fit(long_text, "x")) <= 280
    assert fit(long_text, "x").endswith("…")
    assert fit("short", "x") == "short"


@pytest.mark.parametrize(
    ("name", "event_name", "audience", "text"),
    [
        ("Early birds", "PyData Berlin", "data engineers",
         "PyData Berlin: Early birds, for data engineers"),
        ("Early birds", "", " ", "Early birds"),
        ("", "", "students", "for students"),
        ("!!!", "", "", ""),  # nothing to match on: not remembered, nothing recalled
    ],
)  # fmt: skip
def test_a_campaign_is_remembered_by_its_event_name_and_audience_in_words(
    organizer_, name, event_name, audience, text
):
    assert campaign_agent.situation(name=name, event_name=event_name, audience=audience) == text
    if not text:
        assert campaign_agent.recall_similar(organizer_.pk, text) == []
