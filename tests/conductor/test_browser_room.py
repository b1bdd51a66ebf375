"""The room from outside: an organizer and three attendees' phones (Chromium contexts) and the
presenter screen on one session, through the served app, the sockets and the database.

A real Celery worker delivers what the organizer sends and the poll results a burst of votes held
back, as in production.
"""

from __future__ import annotations

import time

import pytest

from conductor.live import services, tick
from conductor.live.models import (
    Attendee,
    EngagementSample,
    Intervention,
    LiveSession,
    Signal,
)
from tests.browser import ARTIFACTS, CHROMIUM, log_in
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]

PHONE = {"width": 390, "height": 844}
XSS = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
# Within a word's 24 characters and a name's 40.
XSS_WORD = "<svg/onload=alert(1)>"
XSS_NAME = "<img src=x onerror=alert(2)>"


def test_an_organizer_and_three_phones_run_a_poll_questions_and_a_chat(
    asgi_server, browser, django_side, worker
):
    from playwright.sync_api import expect

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote",
                                     topic="Rust at scale")  # fmt: skip
        services.session_update(session_id=session.pk, status="live")
        return LiveSession.objects.get(pk=session.pk)

    session = django_side(setup)
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []

    def watch(page):
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
        return page

    organizer = watch(browser.new_context(viewport={"width": 1280, "height": 900}).new_page())
    log_in(organizer, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    organizer.wait_for_selector("#socket.socket-live")
    join = organizer.locator("#join-link").get_attribute("href")
    assert join.endswith(f"/j/{session.join_code}/")

    phones = []
    for name in ("Ana", "Bo", "Cy"):
        phone = watch(browser.new_context(viewport=PHONE, is_mobile=True).new_page())
        phone.goto(join)
        expect(phone.locator("#connection")).to_have_text("Connected")
        phone.locator("#name").fill(name)
        phone.locator("#name").dispatch_event("change")
        phones.append(phone)
    screen = watch(browser.new_context(viewport={"width": 1280, "height": 720}).new_page())
    screen.goto(f"{join}screen")
    expect(screen.locator(".code")).to_have_text(session.join_code)

    # The organizer sends a poll; every phone shows it; each votes and sees the results.
    form = organizer.locator("#manual")
    form.locator("select[name=type]").select_option("poll")
    form.locator("input[name=question]").fill("Which part should we dig into next?")
    form.locator("textarea[name=options]").fill("Costs\nSpeed\nRisk")
    form.get_by_role("button", name="Send now").click()
    organizer.locator("#decisions li .status-executed").first.wait_for()
    poll = django_side(Intervention.objects.get, type="poll")
    for choice, phone in zip((0, 1, 1), phones, strict=True):
        card = phone.locator(f"#current .poll[data-id='{poll.pk}']")
        expect(card).to_contain_text("Which part should we dig into next?")
        card.get_by_role("button").nth(choice).click()
        expect(card.locator(".results")).to_be_visible()
    expect(phones[0].locator("#current .results")).to_contain_text("67% (2)")
    expect(organizer.locator(f"#room-polls [data-id='{poll.pk}']")).to_contain_text("3 votes")
    expect(organizer.locator(f"#room-polls [data-id='{poll.pk}']")).to_contain_text(
        "Speed: 67% (2)"
    )
    expect(screen.locator("#poll-results")).to_contain_text("Speed")
    expect(screen.locator("#poll-results")).to_contain_text("67% (2)")
    phones[0].screenshot(path=str(ARTIFACTS / "attendee-poll.png"), full_page=True)
    # A phone that joins late finds the poll under "Now"; one that reloads (a locked phone's
    # browser does), its own vote and the results.
    late = watch(browser.new_context(viewport=PHONE, is_mobile=True).new_page())
    late.goto(join)
    expect(late.locator(f"#current .poll[data-id='{poll.pk}']")).to_contain_text(
        "Which part should we dig into next?"
    )
    late.context.close()
    phones[0].reload()
    card = phones[0].locator(f"#current .poll[data-id='{poll.pk}']")
    expect(card.locator(".results")).to_contain_text("67% (2)")
    expect(card.get_by_role("button", name="Costs")).to_have_attribute("aria-pressed", "true")

    # A question is asked, upvoted, shown on the screen, and hidden by the organizer.
    phones[0].locator("#ask-text").fill("Will the slides be online?")
    phones[0].get_by_role("button", name="Ask").click()
    question = phones[1].locator("#questions li", has_text="Will the slides be online?")
    question.get_by_role("button").click()
    expect(phones[2].locator("#questions li").first).to_contain_text("▲ 1")
    expect(screen.locator("#questions")).to_contain_text("Will the slides be online?")
    screen.screenshot(path=str(ARTIFACTS / "presenter-screen.png"), full_page=True)
    asked = organizer.locator("#room-questions li", has_text="Will the slides be online?")
    expect(asked).to_contain_text("▲ 1")
    asked.get_by_role("button", name="Mark answered").click()
    expect(asked).to_contain_text("· answered")  # a state, beside the button that undoes it
    expect(asked.get_by_role("button", name="Mark unanswered")).to_be_visible()
    asked.get_by_role("button", name="Hide").click()
    expect(asked).to_contain_text("· answered · hidden from the room")
    expect(phones[2].locator("#questions")).not_to_contain_text("Will the slides be online?")
    expect(screen.locator("#questions")).not_to_contain_text("Will the slides be online?")

    # A chat prompt gets replies, seen by the room and the organizer, as text.
    form.locator("select[name=type]").select_option("chat_prompt")
    form.locator("input[name=text]").fill("What would you like to try first?")
    form.get_by_role("button", name="Send now").click()
    organizer.locator("#decisions li .status-executed").nth(1).wait_for()
    expect(organizer.locator("#decisions li .status-executed").first).to_have_text(" sent")
    expect(phones[1].locator("#chat-prompt")).to_have_text("What would you like to try first?")
    for phone, line in ((phones[1], "The borrow checker"), (phones[2], XSS)):
        phone.locator("#say-text").fill(line)
        phone.get_by_role("button", name="Send").click()
    expect(phones[0].locator("#chat")).to_contain_text("Bo: The borrow checker")
    expect(phones[0].locator("#chat")).to_contain_text(f"Cy: {XSS}")
    expect(phones[1].locator("#say-text")).to_have_value("")  # taken: the box is empty again
    # Refused (the room's pace), what was typed stays to send again: it was cleared and lost.
    from conductor.core.redis_client import redis_client

    busy = f"room:s:{session.pk}"
    django_side(lambda: redis_client().set(busy, 10**6, ex=60))
    phones[1].locator("#say-text").fill("Lifetimes, please")
    phones[1].get_by_role("button", name="Send").click()
    expect(phones[1].locator("#notice")).to_contain_text("The room is very busy")
    expect(phones[1].locator("#say-text")).to_have_value("Lifetimes, please")
    django_side(lambda: redis_client().delete(busy))
    phones[1].get_by_role("button", name="Send").click()
    expect(phones[0].locator("#chat")).to_contain_text("Bo: Lifetimes, please")
    expect(phones[1].locator("#say-text")).to_have_value("")
    expect(organizer.locator("#room-chat")).to_contain_text("The borrow checker")
    # A phone back from a reload still shows the prompt (it got the challenge back, not this).
    phones[1].reload()
    expect(phones[1].locator("#chat-prompt")).to_have_text("What would you like to try first?")
    phones[0].screenshot(path=str(ARTIFACTS / "attendee-chat.png"), full_page=True)
    for page in (organizer, screen, *phones):
        assert page.title() != "pwned"  # the script tag stayed text
        assert page.locator("#chat img, #room-chat img").count() == 0

    # A word cloud: each phone answers in words; the cloud grows on every screen, as text.
    form.locator("select[name=type]").select_option("poll")
    form.locator("input[name=question]").fill("In one word, how does Rust feel?")
    form.locator("input[name=words]").check()
    form.get_by_role("button", name="Send now").click()
    organizer.locator("#decisions li .status-executed").nth(2).wait_for()
    cloud = django_side(Intervention.objects.get, type="poll", content__kind="words")
    # A word the cloud cannot take is said next to it, and the card stays unanswered.
    card = phones[0].locator(f"#current .poll[data-id='{cloud.pk}']")
    card.locator("input[name=words]").fill("Supercalifragilisticexpialidocious")
    card.get_by_role("button", name="Send my words").click()
    expect(card.locator(".error")).to_have_text("At most 24 characters a word.")
    expect(card.get_by_role("button", name="Send my words")).to_be_visible()
    for phone, words in zip(phones, ("Fast, SAFE", "fast!", XSS_WORD), strict=True):
        card = phone.locator(f"#current .poll[data-id='{cloud.pk}']")
        expect(card).to_contain_text("In one word, how does Rust feel?")
        card.locator("input[name=words]").fill(words)
        card.get_by_role("button", name="Send my words").click()
        expect(card.locator(".cloud")).to_be_visible()
        expect(card.locator(".error")).to_be_hidden()
    for cloud_on_page in (
        phones[0].locator("#current .cloud"),
        screen.locator("#poll-results.cloud"),
        organizer.locator(f"#room-polls [data-id='{cloud.pk}'] .cloud"),
    ):
        expect(cloud_on_page.locator(".word[data-count='2']")).to_have_text("fast")
        expect(cloud_on_page).to_contain_text("safe")
        expect(cloud_on_page).to_contain_text(XSS_WORD)  # as text
        assert cloud_on_page.locator("svg").count() == 0
        fast, safe = (
            cloud_on_page.locator(".word", has_text=word).evaluate(
                "node => parseFloat(getComputedStyle(node).fontSize)"
            )
            for word in ("fast", "safe")
        )
        assert fast > safe  # sized by its count
    expect(organizer.locator(f"#room-polls [data-id='{cloud.pk}']")).to_contain_text("3 answers")
    # An answer changed elsewhere updates the cloud, not what an attendee is typing.
    typing = phones[0].locator("#current input[name=words]")
    typing.fill("rust")
    changing = phones[1].locator(f"#current .poll[data-id='{cloud.pk}']")
    changing.locator("input[name=words]").fill("fast quick")
    changing.get_by_role("button", name="Change my words").click()
    expect(phones[0].locator("#current .cloud")).to_contain_text("quick")
    expect(typing).to_have_value("rust")
    expect(typing).to_be_focused()
    phones[1].screenshot(path=str(ARTIFACTS / "attendee-word-cloud.png"), full_page=True)

    # A challenge: two take part; the leaderboard reaches the phones, the screen and the
    # organizer, with the names as text.
    phones[2].locator("#name").fill(XSS_NAME)
    phones[2].locator("#name").dispatch_event("change")
    form.locator("select[name=type]").select_option("gamification")
    form.locator("input[name=challenge]").fill("Ask the speaker one question right now")
    form.locator("input[name=points]").fill("40")
    form.get_by_role("button", name="Send now").click()
    organizer.locator("#decisions li .status-executed").nth(3).wait_for()
    expect(screen.locator("#challenge")).to_contain_text("Ask the speaker one question right now")
    for phone in (phones[2], phones[0]):
        card = phone.locator("#current .challenge-card")
        expect(card).to_contain_text("+40 points")
        card.get_by_role("button", name="I did it").click()
        expect(card).to_contain_text("Done: +40 points")
    for board in (phones[1].locator("#leaderboard"), screen.locator("#leaderboard"),
                  organizer.locator("#room-leaders")):  # fmt: skip
        expect(board.locator("li")).to_have_count(2)
        expect(board).to_contain_text("Ana")
        expect(board).to_contain_text(XSS_NAME)
        expect(board).to_contain_text("40 points")
    expect(phones[0].locator("#leaderboard li.me")).to_contain_text("Ana (you)")
    phones[0].screenshot(path=str(ARTIFACTS / "attendee-leaderboard.png"), full_page=True)
    screen.screenshot(path=str(ARTIFACTS / "presenter-screen-cloud.png"), full_page=True)
    organizer.screenshot(path=str(ARTIFACTS / "live-view-room.png"), full_page=True)
    for page in (organizer, screen, *phones):
        assert page.locator("#leaderboard img, #room-leaders img, .cloud svg").count() == 0

    # At phone width nothing scrolls sideways.
    for phone in phones:
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # What they did is in the signals, and the score sees it.
    kinds = django_side(lambda: list(Signal.objects.filter(session=session)
                                     .values_list("type", flat=True)))  # fmt: skip
    # The three, the late phone, and the two reloaded ones back (a reload closes the only socket).
    assert kinds.count("join") == 6
    assert kinds.count("leave") == 3
    assert kinds.count("poll_vote") == 6  # three votes, three word-cloud answers
    assert kinds.count("chat_message") == 3  # the refused one once, when it was taken
    assert kinds.count("question") == 1
    taken = django_side(lambda: list(Signal.objects.filter(session=session, type="reaction",
                                                           data__kind="challenge")))  # fmt: skip
    assert len(taken) == 2
    django_side(tick.sessions_tick)
    sample = django_side(EngagementSample.objects.filter(session=session).latest, "at")
    assert sample.present == 3
    assert sample.score > 0

    # A poll sent after the challenge shows above it: the challenge stays open for its ten
    # minutes, on a phone that was there and after a reload.
    form.locator("select[name=type]").select_option("poll")
    form.locator("input[name=question]").fill("Which topic after the break?")
    form.locator("textarea[name=options]").fill("Tooling\nTesting")
    form.get_by_role("button", name="Send now").click()
    organizer.locator("#decisions li .status-executed").nth(4).wait_for()
    for _ in range(2):
        now = phones[1].locator("#current")
        expect(now.locator(".poll")).to_contain_text("Which topic after the break?")
        expect(now.locator(".challenge-card")).to_contain_text("Ask the speaker one question")
        phones[1].reload()
    card = phones[1].locator("#current .challenge-card")
    card.get_by_role("button", name="I did it").click()
    expect(card).to_contain_text("Done: +40 points")
    assert errors == []


def test_a_decision_in_auto_mode_reaches_the_attendee_page(
    asgi_server, browser, django_side, worker
):
    """The whole loop from outside: a drop, the engagement agent on a real worker, the executed
    poll delivered by the worker, shown on a phone that joined with the code, and its vote."""
    from playwright.sync_api import expect

    from agents import services as agent_services
    from tests.conductor.test_decisions import dropped, make_confident

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote",
                                     topic="Rust at scale", mode="auto")  # fmt: skip
        services.event_update_settings(event=session.event, settings={"holdout_share": 0})
        services.session_update(session_id=session.pk, status="live")
        session = LiveSession.objects.select_related("event").get(pk=session.pk)
        make_confident(session, "poll")
        return session

    session = django_side(setup)
    phone = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
    errors: list[str] = []
    phone.on("pageerror", lambda error: errors.append(str(error)))
    phone.goto(f"{asgi_server}/j/{session.join_code}/")
    expect(phone.locator("#connection")).to_have_text("Connected")

    def drop_and_decide() -> None:
        anomaly = dropped(session)
        agent_services.run_create(
            organizer=session.event.organizers.get(), agent="engagement", intent="decide",
            data={"session_id": session.pk, "anomaly_id": anomaly.pk}, rate_limited=False,
            allow_internal=True, scope=("event", session.event_id),
        )  # fmt: skip

    django_side(drop_and_decide)
    card = phone.locator("#current .poll")
    expect(card).to_be_visible(timeout=30_000)
    poll = django_side(Intervention.objects.get, type="poll")
    assert (poll.status, poll.source in ("llm", "template")) == ("executed", True)
    expect(card).to_contain_text(poll.content["question"])
    card.get_by_role("button").first.click()
    expect(card.locator(".results")).to_contain_text("100% (1)")
    phone.screenshot(path=str(ARTIFACTS / "attendee-auto-poll.png"), full_page=True)
    assert django_side(Signal.objects.filter(session=session, type="poll_vote").count) == 1
    assert errors == []


def test_phones_that_arrive_early_wait_for_the_organizer_to_go_live(
    asgi_server, browser, django_side, worker
):
    """People open the link before the talk: the session stays scheduled (the conductor does not
    score a room that waits), the page says it starts soon and takes only a name; the organizer's
    Go live opens every waiting phone at once, and a broadcast's call to action leads to the chat.
    """
    from playwright.sync_api import expect

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote",
                                     topic="Rust at scale")  # fmt: skip
        return LiveSession.objects.get(pk=session.pk)

    session = django_side(setup)
    errors: list[str] = []
    phone = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
    phone.on("pageerror", lambda error: errors.append(str(error)))
    phone.on("dialog", lambda dialog: dialog.accept())
    phone.goto(f"{asgi_server}/j/{session.join_code}/")
    expect(phone.locator("#connection")).to_have_text("Connected")
    expect(phone.locator("#waiting")).to_contain_text("hasn't started yet")
    expect(phone.get_by_role("button", name="Applause")).to_be_disabled()
    expect(phone.locator("#say-text")).to_be_disabled()
    send = phone.locator("#say button")
    expect(send).to_be_disabled()  # and it looks it: it stayed fully blue, as if it could send
    assert float(send.evaluate("button => getComputedStyle(button).opacity")) < 0.6
    phone.locator("#name").fill("Ana")
    phone.locator("#name").dispatch_event("change")
    # Arriving is not starting: still scheduled, its presence kept for when it starts.
    signals = Signal.objects.filter(session_id=session.pk)
    assert django_side(lambda: list(signals.values_list("type", flat=True))) == ["join"]
    assert django_side(lambda: LiveSession.objects.get(pk=session.pk).status) == "scheduled"

    organizer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    organizer.on("dialog", lambda dialog: dialog.accept())
    log_in(organizer, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    # Who waits, before any tick counts the room (it read "- present · updated never").
    expect(organizer.locator("#presence-when")).to_have_text("Waiting: ")
    expect(organizer.locator("#present")).to_have_text("1")
    organizer.get_by_role("button", name="Go live").click()
    expect(organizer.get_by_role("button", name="End the session")).to_be_visible()

    expect(phone.locator("#waiting")).to_be_hidden()
    phone.get_by_role("button", name="Applause").click()
    deadline = time.monotonic() + 10
    while not django_side(signals.filter(type="reaction").exists) and time.monotonic() < deadline:
        time.sleep(0.05)  # the action's ack is not shown: its signal is what it left
    assert django_side(lambda: signals.filter(type="reaction").count()) == 1
    assert django_side(lambda: Attendee.objects.get(session_id=session.pk).display_name) == "Ana"

    form = organizer.locator("#manual")
    form.locator("select[name=type]").select_option("broadcast")
    form.locator("input[name=headline]").fill("Meet the others here tonight")
    form.locator("input[name=call_to_action]").fill("Say hi in chat")
    form.get_by_role("button", name="Send now").click()
    cta = phone.locator("#banner").get_by_role("button", name="Say hi in chat")
    expect(cta).to_be_visible(timeout=30_000)
    cta.click()
    expect(phone.locator("#say-text")).to_be_focused()
    assert errors == []
