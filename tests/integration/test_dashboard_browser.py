"""The dashboard in a real headless Chromium against a real uvicorn server on loopback.

Submits requests, lets a worker complete some, then opens ``/dashboard``, types an API key
and checks that the queue table, the recent requests, the models and the retrain-latency
chart render the server's real data. Needs Debian's ``chromium`` and ``chromium-driver``
(``scripts/install-chromium.sh``); skipped with that reason when they are missing.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.service import ServiceSettings, Worker, create_app
from obliviate.testing import make_blobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CONFIG = SISAConfig(
    shards=2,
    slices=2,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05),
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Any]]:
    """A uvicorn server (in a thread) over a trained workspace: base URL, admin key, app."""
    import uvicorn

    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        ws.register(make_blobs(n=40, subjects=4), dataset="d")
        ws.train(name="m", dataset="d", config=CONFIG)
    settings = ServiceSettings(workspace=root, batch_window_seconds=0.0, metrics_cache_seconds=0)
    app = create_app(settings)
    secret = app.state.obliviate.keys.create(name="browser", scopes=["admin"]).secret
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", secret, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed; run scripts/install-chromium.sh")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _submit(base: str, secret: str, *ids: str) -> str:
    response = httpx.post(
        f"{base}/v1/unlearn",
        json={"sample_ids": list(ids), "reason": "gdpr-art17-1a"},
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _rows(driver: Any, table: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    body = driver.find_element(By.CSS_SELECTOR, f"#{table} tbody")
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in body.find_elements(By.TAG_NAME, "tr")
    ]


def test_dashboard_renders_queue_requests_models_and_latency_chart(
    served: tuple[str, str, Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, secret, app = served
    done = [_submit(base, secret, "s1"), _submit(base, secret, "s2", "s3")]
    state = app.state.obliviate
    Worker(state.workspace, state.queue).drain(timeout=120)
    waiting = _submit(base, secret, "s4")  # stays queued: no worker runs now

    browser.get(f"{base}/dashboard")
    assert browser.find_element(By.ID, "main").get_attribute("hidden") is not None
    browser.find_element(By.ID, "key-input").send_keys(secret)
    browser.find_element(By.ID, "key-submit").click()
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
    wait.until(lambda d: _rows(d, "models-table"))

    assert _rows(browser, "queue-table") == [["m", "1", "0", "2", "0", "0"]]
    assert browser.find_element(By.ID, "card-queued").text == "1"
    assert browser.find_element(By.ID, "card-completed").text == "2"
    requests = _rows(browser, "requests-table")
    assert len(requests) == 3
    assert requests[0][0] == waiting[:12] and requests[0][2] == "queued"  # newest first
    assert {r[0] for r in requests[1:]} == {d[:12] for d in done}
    assert all(r[2] == "completed" and r[7] == "yes" for r in requests[1:])
    [model] = _rows(browser, "models-table")
    assert model[:3] == ["m", "sisa", "d"] and int(model[3]) >= 2 and "retrained" in model[5]
    chart = browser.find_element(By.ID, "retrain-chart")
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert len(bars) == 1  # the two completed requests shared one retrain (or one each)
    assert float(bars[0].get_attribute("data-value")) > 0
    assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
    stored = browser.execute_script("return sessionStorage.getItem('obliviate.apiKey')")
    assert (
        stored == secret and browser.find_element(By.ID, "key-input").get_attribute("value") == ""
    )


def test_a_bad_key_shows_the_error_and_no_data(served: tuple[str, str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _, _ = served
    browser.get(f"{base}/dashboard#key=obl_nope_nope")  # a key in the fragment is read too
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 60).until(lambda d: "401" in status.text)
    assert "error" in status.get_attribute("class")
    assert browser.find_element(By.ID, "main").get_attribute("hidden") is not None
    assert "key=" not in browser.current_url  # the fragment was scrubbed
