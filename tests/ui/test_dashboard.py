"""The dashboard in a real browser (Chromium) against a real ``asyncrun server``.

Every wait is on something the page shows (a row's state, a log line, a chart's data), bounded
by Playwright's timeout; none is a sleep.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_for
from playwright.sync_api import expect

import asyncrun

from .conftest import SCREENSHOTS, UiServer, job, record

NO_RELOAD = "window.__stillTheSamePage"


@pytest.fixture
def client(ui_server: UiServer) -> Iterator[asyncrun.Client]:
    with asyncrun.Client(ui_server.url, ui_server.run_token) as c:
        yield c


def _mark_page(page: Any) -> None:
    page.evaluate(f"{NO_RELOAD} = true")


def _not_reloaded(page: Any) -> None:
    assert page.evaluate(NO_RELOAD) is True, "the page was reloaded"


def test_table_fills_and_a_state_changes_without_reload(
    page: Any,
    sign_in: Callable[..., None],
    client: asyncrun.Client,
    project: str,
    tmp_path: Path,
) -> None:
    for i in range(5):
        client.new_run(project, "note", name=f"note-{i}", labels=["ui", f"g{i % 2}"])
    gate = tmp_path / "gate"
    held = client.new_run(project, "python+job", name="held", spec=job("hold", gate=str(gate)))
    held.run()

    sign_in(page, f"#/p/{project}")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(6)
    state = page.locator(f'#runs tr[data-id="{held.id}"] .state')
    expect(state).to_have_text("RUNNING")
    expect(page.locator("#live.on")).to_be_visible()
    _mark_page(page)

    gate.touch()  # the job ends: the watch brings the new state
    expect(state).to_have_text("COMPLETED")
    _not_reloaded(page)

    # A run created now shows up too (the newest first), still without a reload.
    client.new_run(project, "note", name="late")
    expect(rows).to_have_count(7)
    expect(rows.first.locator(".col-name a")).to_have_text("late")
    _not_reloaded(page)

    # The filters of `asyncrun ls`: by label, then by state.
    page.fill("#filters input[name=label]", "g1")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(2)
    page.click("#filters >> text=Clear")
    page.check("#filters input[value=COMPLETED]")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", held.id)


def test_logs_appear_while_a_job_prints(
    page: Any,
    sign_in: Callable[..., None],
    client: asyncrun.Client,
    project: str,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    talker = client.new_run(project, "python+job", spec=job("talk", gate=str(gate)))
    talker.run()

    sign_in(page, f"#/p/{project}/r/{talker.id}")
    log = page.locator("#log")
    expect(log.locator(".log-line.stdout", has_text="tick 3")).to_be_visible()
    expect(page.locator("#run-state .state")).to_have_text("RUNNING")
    # It keeps following: later lines arrive while the job still prints.
    expect(log.locator(".log-line.stdout", has_text="tick 8")).to_be_visible()
    expect(page.locator("#run-state .state")).to_have_text("RUNNING")
    # stderr is told apart, and the execution is marked.
    expect(log.locator(".log-line.stderr", has_text="warn 3")).to_be_visible()
    expect(log.locator(".log-line.stderr .log-stream").first).to_have_text("err")
    expect(log.locator(".log-execution")).to_have_count(1)
    expect(log.locator(".log-execution")).to_contain_text("execution 1")

    gate.touch()
    expect(log.locator(".log-line", has_text="done")).to_be_visible()
    expect(page.locator("#run-state .state")).to_have_text("COMPLETED")
    expect(page.locator("#log-status")).to_contain_text("ended")


def _chart_values(page: Any, key: str, series: int = 1) -> list[float | None]:
    return page.evaluate(  # type: ignore[no-any-return]
        "([key, series]) => Array.from("
        "document.querySelector(`.chart[data-metric='${key}'] .plot`)._uplot.data[series])",
        [key, series],
    )


def test_a_metric_chart_draws_the_logged_values(
    page: Any, sign_in: Callable[..., None], client: asyncrun.Client, project: str
) -> None:
    run = client.new_run(project, "note", name="trained")
    losses = [round(math.exp(-i / 10), 6) for i in range(50)]
    run.log_metric("loss", losses)
    run.log_metric("lr", [0.1] * 50)
    run.log_metric("accuracy", 0.93, single_value=True)
    run.flush()

    sign_in(page, f"#/p/{project}/r/{run.id}")
    plot = page.locator(".chart[data-metric=loss] .plot")
    expect(plot).to_have_attribute("data-points", "50")
    assert _chart_values(page, "loss") == losses
    assert _chart_values(page, "loss", 0)[:3] == [0, 1, 2]  # x: the values' positions
    expect(page.locator(".chart[data-metric=lr] .plot")).to_have_attribute("data-points", "50")
    expect(page.locator(".figure[data-metric=accuracy] .figure-value")).to_have_text("0.93")
    # The canvas was drawn on: some pixel is not blank.
    drawn = page.evaluate(
        "() => { const c = document.querySelector('.chart[data-metric=loss] canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " return d.some((v, i) => i % 4 === 3 && v > 0); }"
    )
    assert drawn

    # Values logged now arrive through the watch and are read as a tail.
    _mark_page(page)
    run.log_metric("loss", [0.001] * 10)
    run.flush()
    expect(plot).to_have_attribute("data-points", "60")
    assert _chart_values(page, "loss")[-10:] == [0.001] * 10
    _not_reloaded(page)


def test_runs_side_by_side(
    page: Any, sign_in: Callable[..., None], client: asyncrun.Client, project: str
) -> None:
    ids = []
    for n, scale in (("a", 1.0), ("b", 2.0)):
        run = client.new_run(project, "note", name=f"run-{n}")
        run.log_metric("loss", [scale * i for i in range(20)])
        run.log_metric("final", scale, single_value=True)
        run.flush()
        ids.append(run.id)

    sign_in(page, f"#/p/{project}")
    for id_ in ids:
        page.check(f'#runs tr[data-id="{id_}"] input[type=checkbox]')
    page.click("#compare")
    plot = page.locator(".chart[data-metric=loss] .plot")
    expect(plot).to_have_attribute("data-points", "20")
    by_name = {
        page.evaluate(
            "(i) => document.querySelector('.chart[data-metric=loss] .plot')"
            "._uplot.series[i].label",
            i,
        ): _chart_values(page, "loss", i)
        for i in (1, 2)
    }
    assert by_name == {
        "run-a": [float(i) for i in range(20)],
        "run-b": [2.0 * i for i in range(20)],
    }
    expect(page.locator("#compare-table")).to_contain_text("final")


def test_a_million_values_are_read_in_bounded_pages(
    page: Any, sign_in: Callable[..., None], client: asyncrun.Client, project: str
) -> None:
    run = client.new_run(project, "note", name="long")
    for start in range(0, 1_000_000, 100_000):
        run.log_metric("loss", [1 / (1 + i) for i in range(start, start + 100_000)])
        run.flush()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/metrics?" in r.url else None)

    began = time.monotonic()
    sign_in(page, f"#/p/{project}/r/{run.id}")
    plot = page.locator(".chart[data-metric=loss] .plot")
    expect(page.locator(".chart[data-metric=loss]")).to_contain_text("1,000,000 values")
    expect(plot).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    drawn_in = time.monotonic() - began
    points = int(plot.get_attribute("data-points") or 0)
    assert points <= 200, points  # one point per sampled window
    assert len(asked) <= 70, len(asked)  # a bounded number of small pages
    assert all(int(re.search(r"limit=(\d+)", u).group(1)) <= 20_000 for u in asked)  # type: ignore[union-attr]
    assert drawn_in < 20, drawn_in
    values = [v for v in _chart_values(page, "loss") if v is not None]
    assert values[0] > values[-1]  # the curve falls, as logged

    # Zooming into a stretch reads it whole once it is small enough.
    with page.expect_request(lambda r: "offset=1000&" in r.url and "/metrics?" in r.url):
        page.evaluate(
            "() => document.querySelector('.chart[data-metric=loss] .plot')._uplot"
            ".setScale('x', {min: 1000, max: 3000})"
        )
    expect(plot).to_have_attribute("data-points", re.compile(r"^\d{4,}$"))


def test_a_read_token_sees_no_stop_button_and_a_run_token_stops(
    page: Any,
    browser: Any,
    sign_in: Callable[..., None],
    ui_server: UiServer,
    client: asyncrun.Client,
    project: str,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    talker = client.new_run(project, "python+job", spec=job("talk", gate=str(gate)))
    talker.run()
    try:
        sign_in(page, f"#/p/{project}/r/{talker.id}", token=ui_server.read_token)
        expect(page.locator("#role")).to_have_text("read")
        expect(page.locator("#run-state .state")).to_have_text("RUNNING")
        expect(page.locator("#log .log-line").first).to_be_visible()
        expect(page.locator("#action-stop")).to_have_count(0)
        page.screenshot(path=str(_shot("read_token_run_page")), full_page=True)

        writer = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            tab = writer.new_page()
            sign_in(tab, f"#/p/{project}/r/{talker.id}")
            tab.click("#action-stop")
            expect(tab.locator("#run-state .state")).to_have_text("STOPPED", timeout=60_000)
            tab.click("#action-resume")
            expect(tab.locator("#run-state .state")).to_have_text("RUNNING")
            # The second execution's lines come under a mark of their own.
            expect(tab.locator("#log .log-execution")).to_have_count(2)
            tab.screenshot(path=str(_shot("run_token_resumed")), full_page=True)
        finally:
            writer.close()
        # The read token's page saw all that live, and still offers no button.
        expect(page.locator("#run-state .state")).to_have_text("RUNNING")
        expect(page.locator("#action-resume")).to_have_count(0)
        expect(page.locator("#action-stop")).to_have_count(0)
    finally:
        gate.touch()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _shot(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


def test_a_wrong_token_is_refused_and_a_token_never_reaches_a_url(
    page: Any, ui_server: UiServer, project: str
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{ui_server.url}/#/p/{project}")
    wrong = "art_0123456789abcdef_" + "x" * 43
    page.fill("#token", wrong)
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("refused")
    expect(page.locator("#role")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('asyncrun.token')") is None
    page.fill("#token", "not even a token")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("refused")

    page.fill("#token", ui_server.run_token)
    page.click("#login button[type=submit]")
    expect(page.locator("#role")).to_have_text("run")
    assert page.evaluate("sessionStorage.getItem('asyncrun.token')") == ui_server.run_token
    assert page.evaluate(
        "localStorage.length === 0 || !JSON.stringify(localStorage)"
        f".includes({ui_server.run_token!r})"
    )
    for url in [*requests, page.url]:
        assert ui_server.run_token not in url
        assert wrong not in url
    server_log = ui_server.log.read_text()
    assert ui_server.run_token not in server_log

    # Signing out forgets it.
    page.click("#sign-out")
    expect(page.locator("#token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('asyncrun.token')") is None


def test_the_api_keeps_its_routes_and_json_404s(ui_server: UiServer) -> None:
    index = httpx.get(f"{ui_server.url}/")
    assert index.status_code == 200
    assert "text/html" in index.headers["content-type"]
    policy = index.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "form-action 'none'" in policy
    script = httpx.get(f"{ui_server.url}/ui/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")
    again = httpx.get(
        f"{ui_server.url}/ui/js/main.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
    for path in ("/ui/nope.js", "/nope", "/ui/", "/ui/../runs.sqlite3", "/ui/%2e%2e/runs.sqlite3"):
        missing = httpx.get(f"{ui_server.url}{path}")
        assert missing.status_code == 404, path
        assert missing.json()["code"] == "not_found"
    with ui_server.http() as http:
        assert http.get("/whoami").json()["role"] == "run"
        assert http.get("/projects/p/runs").status_code == 200
    with ui_server.http(ui_server.read_token) as http:
        assert http.get("/whoami").json() == {
            "role": "read",
            "projects": ["*"],
            "token_id": ui_server.read_token.split("_")[1],
        }
    assert httpx.get(f"{ui_server.url}/api/v1/whoami").status_code == 401


def test_ten_thousand_runs_page_by_page(
    page: Any, sign_in: Callable[..., None], ui_server: UiServer, project: str
) -> None:
    with ui_server.http() as http:
        for start in range(0, 10_000, 1000):
            body = {
                "runs": [
                    record(project, f"r{i:05d}", labels=[f"l{i % 10}"])
                    for i in range(start, start + 1000)
                ]
            }
            answer = http.post(f"/projects/{project}/runs:batchCreate", json=body)
            assert answer.status_code == 200
            assert not any("error" in r for r in answer.json()["results"])
    began = time.monotonic()
    sign_in(page, f"#/p/{project}")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(100)
    expect(page.locator("#live.on")).to_be_visible()
    assert time.monotonic() - began < 10
    first = rows.first.get_attribute("data-id")
    page.click("#next-page")
    expect(rows.first).not_to_have_attribute("data-id", first or "")
    expect(rows).to_have_count(100)
    page.fill("#filters input[name=label]", "l7")
    page.select_option("#filters select[name=limit]", "500")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(500)
    labels = page.locator("#runs tbody tr .col-labels").all_inner_texts()
    assert set(labels) == {"l7"}


def test_asyncrun_ui_serves_the_embedded_backend_behind_its_own_token(
    page: Any, tmp_path: Path, project: str
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ASYNCRUN_HOME": str(home)}
    with asyncrun.Client(home=home) as embedded:
        embedded.new_run(project, "note", name="made-locally")
    port = free_port()
    out = tmp_path / "ui.out"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncrun", "ui", "--no-browser", "--port", str(port)],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
    try:
        token = wait_for(
            lambda: next((w for w in out.read_text().split() if w.startswith("art_")), None),
            "asyncrun ui to print its token",
            30,
        )
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/healthz"), "asyncrun ui to listen", 30)
        page.goto(f"http://127.0.0.1:{port}/#/p/{project}")
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        expect(page.locator("#runs tbody tr .col-name a")).to_have_text("made-locally")
        expect(page.locator("#role")).to_have_text("run")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"127.0.0.1" in err
    assert token.encode() not in err
