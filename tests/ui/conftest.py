"""Fixtures of the dashboard's tests: a real ``asyncrun server`` with tokens, and Chromium.

Chromium comes from Debian (``apt-get install chromium``; or ASYNCRUN_CHROMIUM names a binary)
and Playwright drives it without downloading a browser of its own. These tests are run on
purpose (``nox -s ui``), so a missing browser fails them with what to install instead of
skipping them: a silent skip would pass while nothing was tested.

Each test signs in in a fresh browser context (its own session storage) and writes a
screenshot of what it checked to tests/ui/screenshots/ (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, create_token

SCREENSHOTS = Path(__file__).parent / "screenshots"
JOBS_DIR = str(Path(__file__).parent)
TIMEOUT_MS = 30_000


def _chromium() -> str:
    path = os.environ.get("ASYNCRUN_CHROMIUM") or shutil.which("chromium")
    if not path or not Path(path).exists():
        pytest.fail(
            "the dashboard's tests need Chromium: apt-get install -y chromium "
            "(or set ASYNCRUN_CHROMIUM to a Chromium binary)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the dashboard's tests need Playwright: run them with `nox -s ui`", False)
    executable = _chromium()
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


class UiServer(ServerProcess):
    """A server with tokens: ``run`` and ``read`` on every project."""

    def __init__(self, db: Path) -> None:
        super().__init__(db, auth=True)
        self.run_token = create_token(db, "*", role="run")
        self.read_token = create_token(db, "*", role="read")

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token or self.run_token}"},
            timeout=60,
        )


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    server = UiServer(tmp_path_factory.mktemp("ui") / "runs.sqlite3")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser tab; its console errors fail the test; a screenshot is kept at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield tab
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, errors


@pytest.fixture
def sign_in(ui_server: UiServer) -> Callable[..., None]:
    """Open the dashboard at ``hash`` and sign in with ``token`` (the run token by default)."""

    def open_signed_in(page: Any, hash: str = "", token: str | None = None) -> None:
        page.goto(f"{ui_server.url}/{hash}")
        page.fill("#token", token or ui_server.run_token)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#role")

    return open_signed_in


def job(handler: str, **parameters: Any) -> dict[str, Any]:
    """A python+job spec calling ``tests/ui/_ui_jobs.py:<handler>``."""
    return {"handler": f"_ui_jobs:{handler}", "parameters": parameters, "cwd": JOBS_DIR}


def record(project: str, id: str, kind: str = "note", **fields: Any) -> dict[str, Any]:
    """A run record as the API takes it."""
    labels = fields.pop("labels", [])
    return {
        "kind": kind,
        "id": id,
        "project": project,
        "metadata": {"project": project, "labels": labels},
        **fields,
    }
