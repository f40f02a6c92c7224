"""The dashboard at /ui in a real headless browser (Debian's chromium, driven by Selenium) against a running pipeline
(broker, ingest, scheduler, delivery, SMTP sink): an operator signs in with a key, filters and pages the message
table, opens a message and sees its attempt, suspends a campaign's queues from the operations form (after
confirming), sees the queue row and the controls table change and mail injected meanwhile held, resumes it from the
controls table and sees that mail delivered, and runs set_priority (POST /api/queue/operations) on the campaign.
A wrong key is refused; a tenant's key sees only its own messages. The browser's console must show no error (a
Content-Security-Policy violation would be one).

MAILSTREAM_DASHBOARD_SCREENSHOT=PATH saves a screenshot of the page there (docs/dashboard.png is made so)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ACME_KEY, ADMIN_KEY, GLOBEX_KEY, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RUN = uuid.uuid4().hex[:8]
CAMPAIGN = f"ui-{RUN}"
WAIT = 60.0  # seconds for the pipeline to show a change (the scheduler publishes queue stats every few seconds)


@pytest.fixture(scope="module")
def ui_stack(kafka_bootstrap: str, sink: CaptureSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, sink.address, tmp_path_factory.mktemp("ui")) as s:
        yield s


@pytest.fixture(scope="module")
def browser(chromium: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    try:
        yield driver
    finally:
        driver.quit()


def inject(stack: Stack, *recipients: str, key: str = ACME_KEY) -> list[str]:
    with stack.client(key) as client:
        r = client.post(
            "/api/inject/v1",
            json={
                "envelope_sender": "ops@acme.test",
                "recipients": [{"email": rcpt} for rcpt in recipients],
                "metadata": {"campaign": CAMPAIGN},
                "content": {"subject": f"dashboard {RUN}", "text_body": "t"},
            },
        )
    assert r.status_code == 200, r.text
    return [str(t["id"]) for t in r.json()["transactions"]]


def wait(driver: WebDriver, probe: Callable[[WebDriver], Any], timeout: float = WAIT) -> Any:
    def steady(d: WebDriver) -> Any:
        try:
            return probe(d)
        except StaleElementReferenceException:  # the table was redrawn under us: ask again
            return False

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(steady)


def css(driver: WebDriver, selector: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def sign_in(driver: WebDriver, stack: Stack, key: str) -> None:
    driver.get(f"{stack.api}/ui")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{stack.api}/ui/")
    field = wait(driver, lambda d: d.find_element(By.ID, "api-key"))
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "dashboard").is_displayed())


def search(driver: WebDriver, **fields: str | list[str]) -> None:
    """Clear the filter form, fill `fields` (a list: the options of a multiple select) and search."""
    form = driver.find_element(By.ID, "message-filters")
    form.find_element(By.CSS_SELECTOR, "button[type=reset]").click()
    for name, value in fields.items():
        control = form.find_element(By.NAME, name)
        if isinstance(value, list):
            for option in value:
                Select(control).select_by_visible_text(option)
        else:
            control.clear()
            control.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def message_rows(driver: WebDriver) -> list[dict[str, str]]:
    rows = []
    for tr in css(driver, "#messages tbody tr[data-id]"):
        cells = {td.get_attribute("data-col") or "": td.text for td in tr.find_elements(By.TAG_NAME, "td")}
        rows.append({"id": tr.get_attribute("data-id") or "", **cells})
    return rows


def until_found(driver: WebDriver, count: int, **fields: str | list[str]) -> list[dict[str, str]]:
    """Search again until the table shows `count` messages (the read model follows the pipeline)."""

    def shown(d: WebDriver) -> list[dict[str, str]] | None:
        search(d, **fields)
        rows = message_rows(d)
        return rows if len(rows) == count else None

    found: list[dict[str, str]] = wait(driver, shown)
    return found


def queue_state(driver: WebDriver) -> str | None:
    for tr in css(driver, "#queues tbody tr"):
        if tr.get_attribute("data-tenant") == "acme" and tr.get_attribute("data-campaign") == CAMPAIGN:
            return tr.find_element(By.CSS_SELECTOR, "td[data-col=state]").text
    return None


def confirm(driver: WebDriver, expect: str) -> None:
    dialog = wait(
        driver, lambda d: d.find_element(By.ID, "confirm") if d.find_element(By.ID, "confirm").is_displayed() else None
    )
    assert expect in dialog.find_element(By.ID, "confirm-text").text
    dialog.find_element(By.ID, "confirm-yes").click()
    wait(driver, lambda d: not d.find_element(By.ID, "confirm").is_displayed())


def banner(driver: WebDriver) -> str:
    return str(wait(driver, lambda d: d.find_element(By.ID, "banner").text))


def console_errors(driver: webdriver.Chrome) -> list[str]:
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e["message"] for e in entries if e["level"] == "SEVERE"]


def test_a_wrong_key_is_refused_and_the_page_stays_signed_out(ui_stack: Stack, browser: webdriver.Chrome) -> None:
    browser.get(f"{ui_stack.api}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "api-key").send_keys("not-a-key")
    browser.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    assert "unknown API key" in banner(browser)
    assert not browser.find_element(By.ID, "dashboard").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.get_log("browser")  # type: ignore[no-untyped-call]  # the refused request's 401 is expected: drop it


def test_an_operator_filters_opens_suspends_and_resumes(ui_stack: Stack, browser: webdriver.Chrome) -> None:
    delivered = inject(ui_stack, *(f"ui-{RUN}-{n}@example.com" for n in range(3)))
    for tx in delivered:
        ui_stack.wait_status(tx, {"delivered"})
    sign_in(browser, ui_stack, ADMIN_KEY)

    # the widgets, the chart and domain health come from the metrics
    wait(browser, lambda d: css(d, "#chart svg rect.delivered"))
    assert css(browser, "#widgets [data-widget='Queue depth']")
    wait(browser, lambda d: "example.com" in d.find_element(By.ID, "health").text)

    # filter, search and page
    rows = until_found(browser, 3, campaign_id=CAMPAIGN, status=["delivered"], search_query=RUN)
    assert sorted(r["id"] for r in rows) == sorted(delivered)
    assert {r["status"] for r in rows} == {"delivered"}
    [one] = until_found(browser, 1, recipient=f"ui-{RUN}-1@example.com")
    assert one["id"] == delivered[1]
    until_found(browser, 2, campaign_id=CAMPAIGN, limit="2", sort_by=["recipient"], sort_order=["asc"])
    first = [r["recipient"] for r in message_rows(browser)]
    browser.find_element(By.ID, "page-next").click()
    wait(browser, lambda d: [r["recipient"] for r in message_rows(d)] == [f"ui-{RUN}-2@example.com"])
    assert not browser.find_element(By.ID, "page-next").is_enabled()
    browser.find_element(By.ID, "page-prev").click()
    wait(browser, lambda d: [r["recipient"] for r in message_rows(d)] == first)
    assert first == [f"ui-{RUN}-0@example.com", f"ui-{RUN}-1@example.com"]

    # open a message: its fields and its attempt
    css(browser, f"#messages tr[data-id='{delivered[0]}']")[0].click()
    wait(browser, lambda d: d.find_element(By.ID, "detail-id").text == delivered[0])
    fields = browser.find_element(By.ID, "detail-fields").text
    assert f"ui-{RUN}-0@example.com" in fields
    [attempt] = css(browser, "#attempts tbody tr")
    assert attempt.find_element(By.CSS_SELECTOR, "td[data-col=outcome]").text == "DELIVERED"
    assert attempt.find_element(By.CSS_SELECTOR, "td[data-col=code]").text == "250"
    browser.find_element(By.ID, "detail-close").click()

    # suspend the campaign from the operations form, after confirming
    wait(browser, lambda d: queue_state(d) == "active")
    form = browser.find_element(By.ID, "operation-form")
    Select(form.find_element(By.NAME, "operation")).select_by_visible_text("suspend")
    for name, value in (("tenant", "acme"), ("campaign", CAMPAIGN), ("reason", f"dashboard {RUN}")):
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    confirm(browser, f"tenant=acme campaign={CAMPAIGN}")
    assert "suspend accepted" in banner(browser)
    wait(browser, lambda d: queue_state(d) == "suspended")
    wait(browser, lambda d: f"dashboard {RUN}" in d.find_element(By.ID, "controls").text)

    # mail for the suspended campaign is held, and shows so
    [held] = inject(ui_stack, f"ui-{RUN}-held@example.com")
    [row] = until_found(browser, 1, recipient=f"ui-{RUN}-held@example.com", status=["suspended"])
    assert row["id"] == held
    if path := os.environ.get("MAILSTREAM_DASHBOARD_SCREENSHOT"):
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(path)

    # resume from the controls table: the row is active again and the held mail is delivered
    [control] = [tr for tr in css(browser, "#controls tbody tr") if f"dashboard {RUN}" in tr.text]
    control.find_element(By.CSS_SELECTOR, "button[data-action=resume]").click()
    confirm(browser, f"tenant=acme campaign={CAMPAIGN}")
    wait(browser, lambda d: queue_state(d) == "active")
    wait(browser, lambda d: f"dashboard {RUN}" not in d.find_element(By.ID, "controls").text)
    [row] = until_found(browser, 1, recipient=f"ui-{RUN}-held@example.com", status=["delivered"])
    assert row["id"] == held

    # the queue operations this ingest has (POST /api/queue/operations) are offered and answer their result
    menu = Select(form.find_element(By.NAME, "operation"))
    offered = [o.text for o in menu.options]
    assert {"rebind", "retry", "cancel", "purge", "set_priority"} <= set(offered), offered
    menu.select_by_visible_text("set_priority")
    form.find_element(By.NAME, "priority").send_keys("9")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    confirm(browser, "priority: 9")
    wait(browser, lambda d: f"set_priority of tenant=acme campaign={CAMPAIGN}: 0 messages" in banner(d))
    assert console_errors(browser) == []


def test_a_tenant_key_sees_only_its_own_messages(ui_stack: Stack, browser: webdriver.Chrome) -> None:
    [mine] = inject(ui_stack, f"ui-{RUN}-acme@example.com")
    ui_stack.wait_status(mine, {"delivered"})
    sign_in(browser, ui_stack, ACME_KEY)
    [row] = until_found(browser, 1, recipient=f"ui-{RUN}-acme@example.com")
    assert row["id"] == mine
    sign_in(browser, ui_stack, GLOBEX_KEY)
    search(browser, recipient=f"ui-{RUN}-acme@example.com")
    wait(browser, lambda d: "no messages match" in d.find_element(By.ID, "messages").text)
    search(browser, tenant_id="acme")  # naming another tenant: refused, as the API refuses it
    assert "403" in banner(browser)
    browser.get_log("browser")  # type: ignore[no-untyped-call]  # the refused 403 is logged as a failed request
