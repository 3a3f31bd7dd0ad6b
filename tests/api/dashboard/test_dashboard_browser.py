"""The dashboard in a real headless Chromium against a real node process.

An SDK agent posts; the page shows the message without a reload. The operator
unlocks actions with the admin token, closes the thread and sees it closed.
Screenshots (laptop and phone widths) go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from tests.support.requirements import missing_requirement

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


def _find(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by chromedriver; skipped, loudly, only when absent (CI fails)."""
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_requirement(
            "SELENIUM IS NOT INSTALLED: pip install selenium to run the browser test"
        )
    if chromium is None or driver_path is None:
        missing_requirement(
            "CHROMIUM OR CHROMEDRIVER IS MISSING: apt-get install chromium chromium-driver "
            "to run the dashboard browser test"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def _agents_talk(base: str) -> tuple[str, list[CoralClient]]:
    alice = CoralClient(base, Identity.generate())
    bob = CoralClient(base, Identity.generate())
    await alice.register(AgentManifest(name="alice", capabilities=("chat",)))
    await bob.register(AgentManifest(name="bob", capabilities=("chat", "review")))
    thread = await alice.create_thread("browser-demo", [bob.did])
    await alice.send(thread.id, "hello from the SDK", mentions=[bob.did])
    return str(thread.id), [alice, bob]


async def _close_all(clients: list[CoralClient]) -> None:
    for client in clients:
        await client.close()


def test_live_message_and_operator_close_in_a_real_browser(node_factory, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    node = node_factory("node")
    wait = WebDriverWait(browser, 20)
    browser.get(node.http + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "node-id"), node.node_id))
    assert "Live" in browser.find_element(By.ID, "live-status").text

    # The page is already open: the thread and its message arrive over SSE.
    thread_id, clients = asyncio.run(_agents_talk(node.http))
    try:
        selector = f'details[data-thread-id="{thread_id}"]'
        summary = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"{selector} > summary")))
        assert "browser-demo" in summary.text and "open" in summary.text
        summary.click()
        wait.until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, selector), "hello from the SDK")
        )
        assert "alice" in browser.find_element(By.CSS_SELECTOR, selector).text

        # Unlock operator actions with the admin token, then close the thread.
        token = (node.data_dir / "keys" / "admin.token").read_text().strip()
        browser.find_element(By.ID, "token-input").send_keys(token)
        browser.find_element(By.ID, "token-save").click()
        summary_box = wait.until(
            ec.visibility_of_element_located((By.ID, f"close-summary-{thread_id}"))
        )
        summary_box.send_keys("finished from the dashboard")
        browser.find_element(By.CSS_SELECTOR, f'[data-key="close-{thread_id}"]').click()
        wait.until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"{selector} > summary"), "closed")
        )
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, selector),
                "[closed by the node operator] finished from the dashboard",
            )
        )
        assert "Thread closed" in browser.find_element(By.ID, "notices").text
        assert browser.execute_script("return sessionStorage.getItem('coral-admin-token')") == token

        # Issue development funds to bob through the ledger's admin route.
        bob_did = clients[1].did
        browser.find_element(By.ID, "funds-account").send_keys(bob_did)
        browser.find_element(By.ID, "funds-amount").send_keys("75")
        browser.find_element(By.CSS_SELECTOR, "#funds-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "notices"), "Issued 75"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "ledger"), "75 coral"))
        # Create an MCP agent through the interop subsystem's admin route.
        browser.find_element(By.ID, "mcp-name").send_keys("helper")
        browser.find_element(By.ID, "mcp-capabilities").send_keys("search, notes")
        browser.find_element(By.CSS_SELECTOR, "#mcp-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "mcp-result"), "Created helper"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "agents"), "helper"))

        ARTIFACTS.mkdir(exist_ok=True)
        browser.set_window_size(1280, 1700)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(ARTIFACTS / "dashboard-laptop.png"))
        # Phone width: one column, nothing wider than the screen.
        browser.set_window_size(390, 844)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        browser.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
        assert overflow <= 1
        assert (ARTIFACTS / "dashboard-laptop.png").stat().st_size > 10_000
    finally:
        asyncio.run(_close_all(clients))
