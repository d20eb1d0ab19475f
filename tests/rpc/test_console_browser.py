"""The web console in a real headless Chromium (Debian's chromium + chromium-driver, ``make browser``).

Against a server with auth on, the console asks for the key once, lists the collection
with its count, dimension and metric, runs a search by id with a filter, and shows the
hits the HTTP API gives for the same search, and the plan. A screenshot of the result is
saved under ``test-artifacts/`` (or ``$SHOAL_TEST_ARTIFACTS``).

Without a browser the test skips, saying so; ``SHOAL_REQUIRE_BROWSER=1`` makes that a failure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import shoal
from tests.rpc.http_support import JsonClient, servers

ROOT = Path(__file__).resolve().parents[2]
KEY = "console-key"


def _browser_paths() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def driver():
    paths = _browser_paths()
    if paths is None:
        message = "no chromium + chromedriver on PATH (make browser installs Debian's, as root)"
        if os.environ.get("SHOAL_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1600"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


def _artifact_dir() -> Path:
    out = Path(os.environ.get("SHOAL_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_console_lists_searches_and_shows_hits_and_plan(driver) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    rng = np.random.default_rng(7)
    db = shoal.Database()
    col = db.create_collection("articles", dim=16, metric="cosine")
    ids = list(range(40)) + ["intro"]
    col.upsert(ids, rng.standard_normal((41, 16)).astype(np.float32),
               [{"lang": "en" if i % 2 else "de", "n": i} for i in range(41)])
    db.create_collection("empty", dim=4, metric="l2")
    # a poll may find a row the page re-renders before it is read: look again (not a failure)
    wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))
    with servers(db, api_key=KEY) as s:
        driver.get(s.base + "/console/")
        dialog = wait.until(ec.visibility_of_element_located((By.ID, "key-dialog")))  # auth is on: asked once
        dialog.find_element(By.ID, "key-input").send_keys(KEY)
        dialog.find_element(By.ID, "key-submit").click()

        row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#collections tr[data-name="articles"]')))
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[:6] == ["articles", "41", "16", "cosine", "flat", "1"], cells
        assert "idle" in cells[7] or "running" in cells[7], cells
        assert driver.find_element(By.CSS_SELECTOR, '#collections tr[data-name="empty"]')
        wait.until(lambda d: '"articles"' in d.find_element(By.ID, "stats").text)

        row.click()  # selects it in the search form
        assert Select(driver.find_element(By.ID, "search-collection")).first_selected_option.text == "articles"
        driver.find_element(By.ID, "search-id").send_keys("intro")
        k = driver.find_element(By.ID, "search-k")
        k.clear()
        k.send_keys("5")
        driver.find_element(By.ID, "search-filter").send_keys('{"lang": "en"}')
        driver.find_element(By.ID, "search-run").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits tbody tr")) == 5)

        shown = [tr.get_attribute("data-id") for tr in driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr")]
        query = col.get(["intro"]).vectors[0]
        want = JsonClient(s.base, api_key=KEY).ok("POST", "/v1/collections/articles/search",
                                                  {"vector": query.tolist(), "k": 5, "filter": {"lang": "en"}})
        assert shown == [str(i) for i in want["results"][0]["ids"]]
        assert shown == [str(i) for i in col.search(query, k=5, filter={"lang": "en"}).ids]
        first = driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr")[0].find_elements(By.TAG_NAME, "td")
        assert '"lang": "en"' in first[4].text
        assert '"path": "exact"' in driver.find_element(By.ID, "plan").text
        assert driver.find_element(By.ID, "message").get_attribute("hidden") is not None  # no error shown

        # records by id (until the server has Points.Scroll)
        Select(driver.find_element(By.ID, "records-collection")).select_by_visible_text("articles")
        if driver.find_element(By.ID, "records-get").is_displayed():
            driver.find_element(By.ID, "records-ids").send_keys("3, intro")
            driver.find_element(By.CSS_SELECTOR, "#records-form button[type=submit]").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#records tbody tr")) == 2)
            assert '"n": 3' in driver.find_element(By.CSS_SELECTOR, "#records tbody tr").text

        # a bad filter is shown as the server's message, not swallowed
        driver.find_element(By.ID, "search-filter").clear()
        driver.find_element(By.ID, "search-filter").send_keys('{"lang": {"$near": 1}}')
        driver.find_element(By.ID, "search-run").click()
        wait.until(ec.visibility_of_element_located((By.ID, "message")))
        assert "FilterError" in driver.find_element(By.ID, "message").text
        driver.find_element(By.ID, "search-filter").clear()
        driver.find_element(By.ID, "search-run").click()
        wait.until(ec.invisibility_of_element_located((By.ID, "message")))
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#hits tbody tr").get_attribute("data-id") == "intro")
        assert driver.save_screenshot(str(_artifact_dir() / "console-search.png"))
