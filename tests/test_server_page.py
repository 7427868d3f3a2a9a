"""The chat page at / in a real browser (headless Chromium through selenium): it loads, sends a question with a
LazyLLM preset and the API key typed in, shows the reply as it streams, the reply's TTFT and tokens/s, and draws
the per-layer token usage chart."""

import os
import shutil

import pytest

from conftest import require_server_deps, start_server, stop_server

KEY = "page-key"


def chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver missing in CI")
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    require_server_deps("selenium")
    binary, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1250,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(default_model_path):
    require_server_deps("selenium")
    proc, base = start_server(default_model_path, "--parallel", "1", "-c", "1024", "--api-key", KEY)
    yield base
    stop_server(proc)


# Records the lengths the reply's text had, as the page changed it (a reply written at once has one).
WATCH_REPLY = """
window.replyLengths = [];
new MutationObserver(() => {
  const reply = document.querySelector('.assistant');
  if (reply && !reply.querySelector('.figures').textContent)
    window.replyLengths.push(reply.firstChild ? reply.firstChild.data.length : 0);
}).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
"""

# Pixels of the chart in the colour of the bars at the first token.
DARK_BAR_PIXELS = """
const c = document.getElementById('chart'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) if (d[i] === 47 && d[i + 1] === 111 && d[i + 2] === 219) n++;
return n;
"""


def test_page_streams_a_reply_and_draws_the_chart(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server + "/")
    assert browser.title == "lazyllm_edge chat"
    assert browser.execute_script(DARK_BAR_PIXELS) == 0  # no chart before a reply
    browser.find_element(By.ID, "api-key").send_keys(KEY)
    Select(browser.find_element(By.ID, "lazy")).select_by_value("balanced")
    max_tokens = browser.find_element(By.ID, "max-tokens")
    max_tokens.clear()
    max_tokens.send_keys("40")
    browser.execute_script(WATCH_REPLY)
    question = ("Here is a note: the meeting moved to room 42 on Tuesday at 3pm; bring the budget report and the "
                "slides. Where is the meeting?")
    browser.find_element(By.ID, "question").send_keys(question)
    browser.find_element(By.ID, "send").click()
    figures = WebDriverWait(browser, 120).until(
        lambda b: b.find_element(By.CSS_SELECTOR, ".assistant .figures").text or None)
    reply = browser.find_element(By.CSS_SELECTOR, ".assistant").text
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")
    assert "TTFT" in figures and "tokens/s" in figures and "lazy balanced" in figures
    assert len(reply) > len(figures)  # the answer's text is there too
    lengths = [n for n in browser.execute_script("return window.replyLengths") if n]
    assert len(set(lengths)) > 1, lengths  # the text grew piece by piece
    assert browser.execute_script(DARK_BAR_PIXELS) > 100
    caption = browser.find_element(By.ID, "chart-caption").text
    assert "balanced" in caption and "prompt tokens" in caption
    assert browser.find_element(By.CSS_SELECTOR, ".user").text == question


def test_page_shows_a_refused_request(server, browser):
    """A wrong key: the page shows the server's error instead of a reply."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    browser.find_element(By.ID, "api-key").send_keys("wrong")
    browser.find_element(By.ID, "question").send_keys("Hello?")
    browser.find_element(By.ID, "send").click()
    error = WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".error"))
    assert "401" in error[0].text and "API key" in error[0].text
