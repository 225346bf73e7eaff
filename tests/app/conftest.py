"""Fixtures for the app tests: a tiny generator that follows strokes, apps and a live server."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from app_helpers import (
    CHROMEDRIVER,
    CHROMIUM,
    REQUIRE_BROWSER,
    TINY,
    WORK_SIZE,
    train_stroke_model,
    write_run_dir,
)

from manga_pix2pix.models import build_models


@pytest.fixture(scope="session")
def stroke_run(tmp_path_factory):
    """A run directory with a tiny generator trained to carry stroke colours (see
    `train_stroke_model`); served at work size `WORK_SIZE`."""
    generator, _ = train_stroke_model()
    return write_run_dir(tmp_path_factory.mktemp("stroke_run"), generator)


@pytest.fixture(scope="session")
def cue_free_model(tmp_path_factory):
    """A .keras generator trained without cues (`uses_cues=False`), untrained."""
    generator, _ = build_models(TINY, uses_cues=False)
    path = tmp_path_factory.mktemp("cue_free") / "cue_free.keras"
    generator.save(path)
    return path


@pytest.fixture(scope="session")
def stroke_colorizer(stroke_run):
    """A `Colorizer` of the stroke model at the work size the tests serve it at."""
    from manga_pix2pix.inference.colorize import Colorizer
    from manga_pix2pix.inference.loading import load_model

    return Colorizer(load_model(stroke_run), work_size=WORK_SIZE)


class LiveServer:
    """An app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        from manga_pix2pix.app.server import bind_socket, url_of

        self.sock = bind_socket("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture
def live_server():
    """Starts `LiveServer(app)`s; stops them after the test."""
    servers = []

    def start(app):
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return (f"{' and '.join(missing)} not found; install them with "
                "`sudo apt-get install chromium chromium-driver` (Debian/Ubuntu)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed; pip install -e '.[dev]'"
    return None


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through Selenium, downloading into `tmp_path / "downloads"`."""
    reason = browser_missing()
    if reason is not None:
        if os.environ.get(REQUIRE_BROWSER):
            pytest.fail(f"browser tests are required here ({REQUIRE_BROWSER} is set): {reason}")
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager would look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(downloads, ignore_errors=True)
