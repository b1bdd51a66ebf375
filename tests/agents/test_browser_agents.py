"""A new organizer uses the marketing agents from the browser, as the issue asks: no API.

Runs go through the real path: the page's form, the service, the Redis broker and a real Celery
worker process (the `worker` fixture), and the run's page follows them with its script.
"""

from __future__ import annotations

import pytest

from connectors import fakes
from tests.browser import ARTIFACTS, CHROMIUM, log_in
from tests.factories import OrganizerFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]

PHONE = 390


def test_a_new_organizer_runs_a_content_agent_and_approves_an_edited_email(
    asgi_server, browser, django_side, worker
):
    from playwright.sync_api import expect

    django_side(fakes.reset)
    django_side(OrganizerFactory, username="newcomer")
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, asgi_server, "newcomer", "/dashboard/agents/")
    page.wait_for_url("**/dashboard/agents/")

    # A content draft, from the form to its text.
    page.get_by_role("link", name="Start an agent").first.click()
    page.click("a[href='/dashboard/agents/new/content/generate-draft/']")
    page.get_by_label("Topic").fill("Rust at scale")
    page.get_by_label("Keywords").fill("memory safety\nperformance")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/dashboard/agents/runs/*/")
    content_run = page.url
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator("#output article.draft h3")).not_to_be_empty()
    expect(page.locator("#calls")).to_contain_text("llm.complete")
    assert not page.locator("#output details.raw").evaluate("d => d.open")  # one click away
    page.click("#output details.raw summary")
    expect(page.locator("#output details.raw pre")).to_contain_text('"call_to_action"')
    page.screenshot(path=str(ARTIFACTS / "agents-run.png"), full_page=True)

    # An email send waits for approval; the subject is changed inline, then approved.
    page.goto(f"{asgi_server}/dashboard/agents/new/")
    page.click("a[href='/dashboard/agents/new/email/send-campaign/']")
    start_form = page.url
    page.get_by_label("To").fill("ana@example.com\nbo@example.com")
    page.get_by_label("Subject").fill("Last tickets")
    page.get_by_label("Text").fill("See you at DevConf.")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/dashboard/agents/runs/*/")
    email_run = page.url
    expect(page.locator("#approval")).to_be_visible(timeout=60_000)
    expect(page.locator("#run-status")).to_have_text("Waiting for your approval")
    subject = page.locator("#approval").get_by_label("Subject")
    expect(subject).to_have_value("Last tickets")
    subject.fill("Two days left: last tickets")
    page.screenshot(path=str(ARTIFACTS / "agents-approve.png"), full_page=True)
    page.locator("#approval").get_by_role("button", name="Approve").click()
    page.wait_for_url(email_run)
    expect(page.locator(".messages")).to_contain_text("approved: it goes on with your changes")
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator(".call-subject")).to_have_text("Two days left: last tickets")
    expect(page.locator("#output")).to_contain_text("2 recipients accepted it")
    expect(page.locator("#decisions")).to_contain_text("Changed by newcomer before approving")
    sent = django_side(fakes.side_effects, "email")
    assert [effect["payload"]["subject"] for effect in sent] == ["Two days left: last tickets"]

    # A campaign plans its parts through the other agents; its page lists them, live.
    page.goto(f"{asgi_server}/dashboard/agents/new/")
    page.click("a[href='/dashboard/agents/new/campaign/plan-campaign/']")
    page.get_by_label("Name", exact=True).fill("Spring launch")
    page.get_by_label("Event name").fill("DevConf")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/dashboard/agents/runs/*/")
    campaign_run = page.url
    children = page.locator("#children tbody tr")
    expect(children.first).to_be_visible(timeout=60_000)
    expect(page.locator("#children")).to_contain_text("email")
    expect(page.locator("#children")).to_contain_text("social")
    page.screenshot(path=str(ARTIFACTS / "agents-campaign.png"), full_page=True)
    children.first.get_by_role("link").click()
    parent_id = campaign_run.rstrip("/").rsplit("/", 1)[-1]
    page.get_by_role("link", name=f"Run {parent_id}").click()  # the part links to its campaign
    page.wait_for_url(campaign_run)

    # Every new page fits a phone.
    phone = context.new_page()
    phone.set_viewport_size({"width": PHONE, "height": 844})
    phone.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    phone.on("pageerror", lambda error: errors.append(str(error)))
    pages = (f"{asgi_server}/dashboard/agents/new/", start_form, content_run, email_run,
             campaign_run, f"{asgi_server}/dashboard/agents/new/ad/allocate-budget/")  # fmt: skip
    for url in pages:
        phone.goto(url)
        phone.wait_for_load_state("networkidle")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE, f"{url} is {width} px wide at {PHONE}"
    phone.screenshot(path=str(ARTIFACTS / "phone-agents-run.png"), full_page=True)
    assert errors == []
    context.close()
