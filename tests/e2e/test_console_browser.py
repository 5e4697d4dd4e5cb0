"""The web console in a real browser (Debian's Chromium through chromedriver, with Selenium):
sign in, see the agency's cases, walk the demo's handover, and check what each agency sees.

Selenium blocks, and the console and the services run on the test's event loop, so each
browser walk runs in a thread while the loop keeps serving. Screenshots of the main pages go to
`$CASEBRIDGE_SCREENSHOTS` when set (`make screenshots` keeps them in docs/console/), else to
the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from services.audit.api import create_api
from services.audit.config import SCOPE_METADATA, Auditor, AuditorRegistry, token_hash
from services.bootstrap import build_app
from services.console.app import create_console, default_parts
from services.console.auditing import AuditClient
from services.console.config import ConsoleSettings
from services.demo.run import demo_audit_settings
from tests.support.console import (
    RECEIVER,
    REQUESTER,
    Accounts,
    make_accounts,
    referral_awaiting_handover,
    serving,
)
from tests.support.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SCOPES_METADATA = frozenset({SCOPE_METADATA})
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@dataclass
class Site:
    url: str
    accounts: Accounts
    case_id: str
    shots: Path


@pytest.fixture(scope="module")
async def site(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """Every service (the audit one signing heads), the auditors' API with a metadata token for
    the console, and the console."""
    ns = f"w{uuid.uuid4().hex[:10]}."
    # A database of its own: its signer's key signs heads no other test's signer must trust.
    database = await stack.create_database()
    settings = stack.deployment(database=database, topic_prefix=ns, group_prefix=ns + "cb")
    shots = Path(os.environ.get("CASEBRIDGE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    audit, _ = demo_audit_settings(tmp_path_factory.mktemp("audit"))
    services = build_app("intake", "router", "cases", "audit", settings=settings, audit=audit)
    await services.start()
    try:
        accounts = await make_accounts(settings)
        case_id = await referral_awaiting_handover(settings)
        token = secrets.token_urlsafe(32)
        auditors = AuditorRegistry({token_hash(token): Auditor("console", SCOPES_METADATA)})
        audit_api = create_api(settings, audit, auditors=auditors)
        console = ConsoleSettings(action_wait_s=15)
        parts = default_parts(settings, console)
        async with serving(audit_api) as audit_url:
            parts.audit_client = AuditClient(audit_url, token, audit.public_key())
            async with serving(create_console(settings, console, parts=parts)) as url:
                yield Site(url, accounts, case_id, shots)
    finally:
        await services.stop()
        await stack.drop_database(database)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(
    browser: WebDriver, site: Site, who: tuple[str, str], *, lands_on: str = "/cases"
) -> None:
    browser.delete_all_cookies()
    browser.get(site.url + "/")
    assert browser.current_url.endswith("/sign-in")
    find(browser, By.ID, "username").send_keys(who[0])
    password = find(browser, By.ID, "password")
    password.send_keys(who[1])
    password.send_keys(Keys.ENTER)  # the keyboard alone signs in
    WebDriverWait(browser, 30).until(expected_conditions.url_contains(lands_on))


def find(browser: WebDriver, by: str, value: str) -> WebElement:
    """The element once the page shows it (a click's page may still be loading)."""
    found: WebElement = WebDriverWait(browser, 30).until(
        expected_conditions.presence_of_element_located((by, value))
    )
    return found


def listed_cases(browser: WebDriver) -> set[str]:
    find(browser, By.ID, "summary")  # the list page has loaded (it may be empty)
    rows = browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
    return {row.get_attribute("data-case-id") or "" for row in rows}


def unlabelled_inputs(browser: WebDriver) -> list[str]:
    """Visible form controls no label names (by `for`, or by wrapping them)."""
    script = """
      return Array.from(document.querySelectorAll('input, select, textarea'))
        .filter(e => e.type !== 'hidden')
        .filter(e => !(e.labels && e.labels.length))
        .map(e => e.id || e.name);
    """
    found: list[str] = browser.execute_script(script)
    return found


def _a_wrong_password_is_refused_in_the_page(browser: WebDriver, site: Site) -> None:
    browser.get(site.url + "/sign-in")
    assert unlabelled_inputs(browser) == []
    browser.save_screenshot(str(site.shots / "sign-in.png"))
    find(browser, By.ID, "username").send_keys(site.accounts.receiver[0])
    find(browser, By.ID, "password").send_keys("not the password")
    find(browser, By.CSS_SELECTOR, "button[type=submit]").click()
    alert = find(browser, By.ID, "sign-in-error")
    assert "wrong username or password" in alert.text
    assert alert.get_attribute("role") == "alert"
    sign_in(browser, site, site.accounts.receiver)  # positive control
    assert site.case_id in listed_cases(browser)


def _an_agency_without_standing_sees_nothing_of_the_case(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, site.accounts.requester)  # positive control
    assert site.case_id in listed_cases(browser)
    sign_in(browser, site, site.accounts.outsider)
    assert site.case_id not in listed_cases(browser)
    browser.get(f"{site.url}/cases/{site.case_id}")
    assert find(browser, By.TAG_NAME, "h1").text == "Not found"
    assert site.case_id not in find(browser, By.ID, "error").text


def _the_receiver_accepts_the_handover_and_the_requester_sees_it(
    browser: WebDriver, site: Site
) -> None:
    sign_in(browser, site, site.accounts.receiver)
    browser.save_screenshot(str(site.shots / "cases.png"))
    find(browser, By.LINK_TEXT, site.case_id).click()
    assert find(browser, By.ID, "case-version").text == "5"
    assert unlabelled_inputs(browser) == []
    assert browser.find_elements(By.ID, "action-handover_declined")
    browser.save_screenshot(str(site.shots / "case-handover-requested.png"))

    # Declining needs a reason: the browser's own check stops an empty one.
    decline = find(browser, By.ID, "action-handover_declined")
    decline.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert find(browser, By.ID, "case-version").text == "5"

    accept = find(browser, By.ID, "action-handover_accepted")
    accept.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    notice = WebDriverWait(browser, 30).until(
        expected_conditions.visibility_of_element_located((By.ID, "notice"))
    )
    assert notice.text == "Recorded: handover accepted."
    assert find(browser, By.ID, "case-version").text == "6"
    last = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")[-1]
    assert RECEIVER in last.text
    # Answered: the answer is not offered again.
    assert not browser.find_elements(By.ID, "action-handover_accepted")
    browser.save_screenshot(str(site.shots / "case-handover-accepted.png"))

    sign_in(browser, site, site.accounts.requester)
    browser.get(f"{site.url}/cases/{site.case_id}")
    assert find(browser, By.ID, "case-version").text == "6"
    assert not browser.find_elements(By.ID, "action-handover_accepted")
    assert browser.find_elements(By.ID, "action-handover_requested")
    assert REQUESTER in find(browser, By.TAG_NAME, "header").text


def _a_stale_form_is_refused_with_the_reason(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, site.accounts.requester)
    browser.get(f"{site.url}/cases/{site.case_id}")
    version = find(browser, By.ID, "case-version").text
    form = find(browser, By.ID, "action-handover_requested")
    # Another caseworker moved the case since this page was drawn: simulated by an old version.
    browser.execute_script("arguments[0].querySelector('input[name=version]').value = '1'", form)
    form.find_element(By.NAME, "to_agency").send_keys("ph-dswd")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = find(browser, By.ID, "error")
    assert "the case has changed" in error.text
    assert find(browser, By.ID, "case-version").text == version


def _auditors_search_the_log_and_check_a_proof(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, site.accounts.requester)  # a caseworker: no audit pages
    browser.get(site.url + "/audit")
    assert find(browser, By.TAG_NAME, "h1").text == "Forbidden"

    sign_in(browser, site, site.accounts.auditor, lands_on="/audit")
    assert "valid" in find(browser, By.ID, "head-signature").text

    def covers_records(b: WebDriver) -> bool:
        # The signer's first head may be of the empty tree, signed before any record was
        # audited: the page shows the latest head, so look again until one covers records.
        if int(find(b, By.ID, "head-size").text) > 0:
            return True
        b.refresh()
        return False

    WebDriverWait(browser, 30, poll_frequency=1).until(covers_records)
    assert "valid" in find(browser, By.ID, "head-signature").text
    assert unlabelled_inputs(browser) == []
    find(browser, By.ID, "filter-case_id").send_keys(site.case_id + Keys.ENTER)
    rows = WebDriverWait(browser, 30).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#audit-results tbody tr")
    )
    assert all(site.case_id in row.text for row in rows)
    browser.save_screenshot(str(site.shots / "audit-search.png"))
    rows[0].find_element(By.TAG_NAME, "a").click()
    proof = find(browser, By.ID, "proof")
    assert proof.text.startswith("Inclusion proof checked in the console: seq "), proof.text
    assert "is in the signed tree of size" in proof.text
    browser.save_screenshot(str(site.shots / "audit-record.png"))

    browser.get(site.url + "/cases")  # an auditor works no cases
    assert find(browser, By.TAG_NAME, "h1").text == "Forbidden"


async def test_auditors_search_the_log_and_check_a_proof(browser: WebDriver, site: Site) -> None:
    await asyncio.to_thread(_auditors_search_the_log_and_check_a_proof, browser, site)


async def test_a_wrong_password_is_refused_in_the_page(browser: WebDriver, site: Site) -> None:
    await asyncio.to_thread(_a_wrong_password_is_refused_in_the_page, browser, site)


async def test_an_agency_without_standing_sees_nothing_of_the_case(
    browser: WebDriver, site: Site
) -> None:
    await asyncio.to_thread(_an_agency_without_standing_sees_nothing_of_the_case, browser, site)


async def test_the_receiver_accepts_the_handover_and_the_requester_sees_it(
    browser: WebDriver, site: Site
) -> None:
    await asyncio.to_thread(
        _the_receiver_accepts_the_handover_and_the_requester_sees_it, browser, site
    )


async def test_a_stale_form_is_refused_with_the_reason(browser: WebDriver, site: Site) -> None:
    await asyncio.to_thread(_a_stale_form_is_refused_with_the_reason, browser, site)
