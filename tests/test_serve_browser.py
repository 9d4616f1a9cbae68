"""The results page (tokretrieve/serve/static/index.html) in a real browser: headless Chromium,
driven through selenium, against a real server (uvicorn on 127.0.0.1) over a tiny-model index.

What the page draws is checked against the API's own answer to the same request, so the page
can neither invent nor drop anything: the same hits in the same order, highlights only of tokens
that matched, one bar per matched token in the order of the contributions, the query's key
tokens, each mode's own answer, and the API's error message. The browser is the system's
(Debian's chromium and chromedriver, `make install-browser`): the module skips, saying so, where
either is missing, and never downloads one.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tokretrieve import build_index

CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser"])), None)
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("the results page's browser test needs chromium and chromedriver on PATH "
                f"(found chromium: {CHROMIUM}, chromedriver: {CHROMEDRIVER}); `make "
                "install-browser` installs Debian's", allow_module_level=True)
pytest.importorskip("selenium", reason="selenium (the 'dev' extra) drives the browser")
pytest.importorskip("uvicorn", reason="uvicorn (the 'serve' extra) serves the page")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "tokretrieve" / "serve" / "static" / "index.html"

# Texts made of the words the tiny model's bags hold (nozzle, test, rocket, chord, layer, wing),
# so that matched tokens occur in them; d2 holds markup that must show as text, d3 a second line
# and more than a snippet's worth, which folds away.
DOCS = [("d1", "Nozzle test of a rocket in the wind tunnel"),
        ("d2", "Wing flutter test: the chord and the layer <b>&amp;</b> a WING"),
        ("d3", "rocket nozzle heating\nSecond line: the boundary layer and the test data"
               + " of the flight" * 20),
        ("d4", "shock wave flow over a cone"),
        ("d5", "heat transfer in a laminar boundary layer")]
QUERY = "rocket nozzle"

# The hits as the page drew them, in one round trip (textContent: folded text counts too).
READ_HITS = """
return [...document.querySelectorAll('#hits .hit')].map(hit => ({
  id: hit.dataset.id,
  score: hit.querySelector('.score').title,
  text: (hit.querySelector('.text-head') || {textContent: null}).textContent
        + ((hit.querySelector('.text-rest') || {}).textContent || ''),
  markup: hit.querySelectorAll('.hit-text *:not(mark):not(span):not(button)').length,
  marks: [...hit.querySelectorAll('mark')].map(m => [m.textContent,
                                                       JSON.parse(m.dataset.tokens)]),
  bars: [...hit.querySelectorAll('.bar-row')].map(row => ({
    token: row.dataset.token, label: row.querySelector('.bar-label').textContent,
    width: parseFloat(row.querySelector('.bar').style.width),
    pixels: row.querySelector('.bar').getBoundingClientRect().width})),
}));
"""


def word(token: str) -> str:
    """A token's word, tokenizer markers taken off (what the page highlights)."""
    return re.sub(r"^(##|[\u0120\u2581_]+)(?=.)", "", token)


@pytest.fixture(scope="module")
def index_path(tiny_encoder, tmp_path_factory):
    encoder = tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="shifted")
    path = tmp_path_factory.mktemp("browser") / "idx"
    build_index(DOCS, encoder, path, pc1_strength=0.0, progress=False)
    return path


@pytest.fixture(scope="module")
def server(index_path):
    """The app under uvicorn in a thread, on a socket bound to a free port of 127.0.0.1 (bound
    before the server starts: no other process can take the port in between)."""
    import uvicorn

    from tokretrieve.serve import create_app

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    running = uvicorn.Server(uvicorn.Config(create_app(index_path, texts=dict(DOCS)),
                                            log_level="warning"))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not running.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/"
    finally:
        running.should_exit = True
        thread.join(timeout=10)
        listening.close()
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1200,1400"):
        options.add_argument(argument)
    # The driver's path given: selenium never runs Selenium Manager, which would download one.
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def api(base: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """The API's own answer (status, JSON), for the page to be compared with."""
    request = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def open_page(driver, server):
    driver.get(server)
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true")


def drawn(driver, action) -> str:
    """Do `action` and wait until the page has drawn its answer; the page's state after."""
    before = int(driver.execute_script("return document.body.dataset.renders"))
    action()
    WebDriverWait(driver, 20).until(
        lambda d: int(d.execute_script("return document.body.dataset.renders")) > before)
    return driver.execute_script("return document.body.dataset.state")


def search(driver, query: str) -> str:
    box = driver.find_element(By.ID, "query")
    box.clear()
    return drawn(driver, lambda: box.send_keys(query + Keys.ENTER))


def key_tokens(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll("
                                 "'#key-tokens .key-token')].map(t => t.dataset.token)")


def check_hits(drawn_hits: list[dict], expected: list[dict]) -> None:
    """The page's hits are the API's: ids in order, exact scores, the texts as text, marks
    only of matched tokens (every matched word the text holds marked), and one bar per
    matched token, widths in the contributions' order and proportion."""
    assert [h["id"] for h in drawn_hits] == [h["id"] for h in expected]
    for page_hit, hit in zip(drawn_hits, expected, strict=True):
        assert float(page_hit["score"]) == hit["score"]
        assert page_hit["text"] == hit["text"] and page_hit["markup"] == 0
        matched = [m["token"] for m in hit["matched"]]
        for text, tokens in page_hit["marks"]:
            assert set(tokens) <= set(matched), (hit["id"], text, tokens)
            assert all(text.lower().startswith(word(t).lower()) for t in tokens)
        marked = {t for _, tokens in page_hit["marks"] for t in tokens}
        for token in matched:
            if re.search(rf"(?<!\w){re.escape(word(token))}(?!\w)", hit["text"], re.I):
                assert token in marked, (hit["id"], token)
        bars = page_hit["bars"]
        assert [b["token"] for b in bars] == matched
        assert [b["label"] for b in bars] == [word(t) for t in matched]
        contributions = [m["contribution"] for m in hit["matched"]]
        if bars:
            assert bars[0]["width"] == pytest.approx(100)
            assert [b["width"] for b in bars] == pytest.approx(
                [100 * c / contributions[0] for c in contributions], abs=1e-3)  # CSS rounds
            pixels = [b["pixels"] for b in bars]
            assert pixels == sorted(pixels, reverse=True) and pixels[0] > 0


def test_the_page_draws_the_apis_answer_in_every_mode(driver, server, tmp_path):
    driver.get_log("browser")  # what other tests left: this one's own are checked at its end
    open_page(driver, server)
    assert [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "mode")).options
            ] == api(server, "info")[1]["modes"]
    assert search(driver, QUERY) == "done"

    _, answer = api(server, "search", {"query": QUERY, "k": 10, "mode": "model"})
    model_hits = answer["results"][0]["hits"]
    check_hits(driver.execute_script(READ_HITS), model_hits)
    marks = driver.find_elements(By.CSS_SELECTOR, ".hit mark")
    assert {m.text.lower() for m in marks if m.text} >= {"nozzle", "rocket", "test", "wing"}
    assert len(driver.find_elements(By.CSS_SELECTOR, ".hit .bar")) == sum(
        len(h["matched"]) for h in model_hits)
    d2 = driver.find_element(By.CSS_SELECTOR, '.hit[data-id="d2"] .hit-text')
    assert "<b>&amp;</b>" in d2.text and not d2.find_elements(By.TAG_NAME, "b")
    _, explained = api(server, "explain", {"text": QUERY, "k": 10, "query": True})
    assert key_tokens(driver) == [t["token"] for t in explained["tokens"]]
    assert driver.find_element(By.ID, "key-tokens").is_displayed()
    assert not driver.find_element(By.ID, "error").is_displayed()
    status = driver.find_element(By.ID, "status").text
    assert status.startswith(f"{len(model_hits)} hits in model mode")

    # The long text folds after its first line and unfolds on its button.
    d3 = driver.find_element(By.CSS_SELECTOR, '.hit[data-id="d3"]')
    rest, more = d3.find_element(By.CLASS_NAME, "text-rest"), d3.find_element(By.CLASS_NAME, "more")
    assert d3.find_element(By.CLASS_NAME, "text-head").text == "rocket nozzle heating"
    assert not rest.is_displayed() and more.get_attribute("aria-expanded") == "false"
    more.click()
    assert rest.is_displayed() and more.get_attribute("aria-expanded") == "true"

    driver.save_screenshot(str(tmp_path / "results.png"))

    mode = Select(driver.find_element(By.ID, "mode"))
    seen = {"model": [h["id"] for h in model_hits]}
    for name in ("tokens", "dense"):
        assert drawn(driver, lambda name=name: mode.select_by_value(name)) == "done"
        _, answer = api(server, "search", {"query": QUERY, "k": 10, "mode": name})
        result = answer["results"][0]
        check_hits(driver.execute_script(READ_HITS), result["hits"])
        seen[name] = [h["id"] for h in result["hits"]]
        if name == "tokens":  # the query's own tokens, as the search scored them
            assert key_tokens(driver) == [t["token"] for t in result["query_tokens"]]
            assert set(key_tokens(driver)) == {"rocket", "nozzle"}
        else:  # no token explanation in dense mode: no bars, the model's key tokens
            assert not driver.find_elements(By.CSS_SELECTOR, ".hit .bar")
            assert key_tokens(driver) == [t["token"] for t in explained["tokens"]]
    assert seen["model"] != seen["tokens"] != seen["dense"] != seen["model"]
    # the address holds the search: it can be bookmarked, and opens on its results
    assert driver.execute_script("return location.search") == "?q=rocket+nozzle&mode=dense&k=10"

    # no script error, no failed request (a favicon included) in all of it
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    png = (tmp_path / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_the_apis_errors_are_shown(driver, server):
    open_page(driver, server)
    assert search(driver, QUERY) == "done"
    assert search(driver, "   ") == "error"
    status, answer = api(server, "search", {"query": "   ", "k": 10, "mode": "model"})
    assert status == 400
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed() and error.text == answer["error"] == "query '   ' is empty"
    assert not driver.find_elements(By.CSS_SELECTOR, ".hit")  # no hits of another query
    box = driver.find_element(By.ID, "k")
    box.clear()
    box.send_keys("5000")
    assert search(driver, QUERY) == "error"
    assert error.text == api(server, "search", {"query": QUERY, "k": 5000})[1]["error"]
    box.clear()
    box.send_keys("2")
    assert search(driver, QUERY) == "done"
    assert not error.is_displayed() and len(driver.find_elements(By.CSS_SELECTOR, ".hit")) == 2


def test_scores_read_well_and_the_page_stands_alone(driver, server, tmp_path):
    """Small scores in scientific notation with 3 significant digits; labelled controls;
    nothing fetched from anywhere but the server; no HTML made of strings; a narrow screen
    without sideways scrolling."""
    open_page(driver, server)
    formatted = driver.execute_script(
        "return [1.234567e-6, 7.275021553039551, 0.998279, 0, 123456.7, -0.0004]"
        ".map(window.tokretrieve.formatScore)")
    assert formatted == ["1.23e-6", "7.28", "0.998", "0", "1.23e5", "-4.00e-4"]
    # Tokenizer markers off, case ignored; word-start tokens at a word's start (as a prefix
    # from 3 characters on), "##" pieces inside a word, bare ones at a start or else inside.
    found = driver.execute_script(
        "const text = 'Wings of a flying WING; swing, heat: Heat-flux, a cat';"
        "return Object.fromEntries(arguments[0].map(t => [t, "
        "window.tokretrieve.occurrences(t, text).map(o => text.slice(o.start, o.end) + "
        "'@' + o.start)]))",
        ["\u0120wing", "\u2581heat", "_heat", "##ing", "WING", "\u0120a", "at", "ying", ":"])
    assert found == {"\u0120wing": ["Wing@0", "WING@18"], "\u2581heat": ["heat@31", "Heat@37"],
                     "_heat": ["heat@31", "Heat@37"],
                     "##ing": ["ing@1", "ing@14", "ING@19", "ing@26"],
                     "WING": ["Wing@0", "WING@18"], "\u0120a": ["a@9", "a@48"], "at": [],
                     "ying": ["ying@13"], ":": []}
    for control in ("query", "mode", "k"):
        assert driver.execute_script(
            f"return document.getElementById('{control}').labels.length") == 1
    assert driver.find_element(By.CSS_SELECTOR, "button[type=submit]").text == "Search"

    driver.set_window_size(390, 900)
    try:
        assert search(driver, QUERY) == "done"
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        driver.save_screenshot(str(tmp_path / "narrow.png"))
    finally:
        driver.set_window_size(1200, 1400)
    assert (tmp_path / "narrow.png").read_bytes().startswith(b"\x89PNG")
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name)")
    assert resources and all(r.startswith(server) for r in resources)
    source = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", source)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", source)
