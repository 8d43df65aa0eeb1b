"""The leaderboard in a real browser: `streamlit run` on loopback, driven by headless Chromium.

Uses Debian's chromium (/usr/bin/chromium, installed by .ci/run) through Playwright's Python API;
no browser download.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.record_factory import grid_records, make_record, write_store

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f}s")


def wait_for_text(locator, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = locator.text_content() or ""
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; last text: {text[:300]!r}")


EVIL = "![x](http://127.0.0.1:9/p.png)"


def browser_store() -> list[dict]:
    """The factory grid plus two runs whose adapter name and error message are Markdown/HTML."""
    # without the dirty fourth lora seed every row has two seeds: complete rows, so a Pareto of the average
    records = [r for r in grid_records() if r["key"]["seed"] != 4]
    records.append(make_record(adapter=EVIL, seed=1, score=0.6))
    failed = make_record(adapter=EVIL, seed=2, status="failed")
    failed["error"]["message"] = f"boom {EVIL} <img src='http://127.0.0.1:9/q.png'>"
    records.append(failed)
    return records


@pytest.fixture
def served_app(tmp_path):
    store = tmp_path / "store"
    write_store(store, browser_store())
    port = free_port()
    env = {**os.environ, "HARNESS_RESULTS_DIR": str(store), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115 (closed in the finaliser below)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app" / "leaderboard.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_leaderboard_and_pareto_plot_in_headless_chromium(served_app, tmp_path):
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(served_app, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("heading", name="PEFT leaderboard").wait_for(timeout=60_000)
            page.get_by_text("Suite: glue").first.wait_for(timeout=60_000)
            tables = page.locator('[data-testid="stDataFrame"]')
            # the ranked wide table comes first (Streamlit streams elements in: wait for it)
            tables.first.wait_for(state="visible", timeout=60_000)
            # the grid draws on a canvas; its accessible <table role="grid"> carries the cells as text
            grid = tables.first.locator('[role="grid"]')
            grid.wait_for(state="attached", timeout=60_000)
            text = wait_for_text(grid, "lora r8")
            assert "rte accuracy (%)" in text and "head" in text and "full" in text
            # the ranking key and the costs come right after the method, before the task columns
            # (the method column is pinned at the left edge, so the grid lists it first)
            assert text.startswith("method")
            order = [text.index(h) for h in ("rank", "average (points)", "adapter params", "train s",
                                             "rte accuracy (%)")]
            assert order == sorted(order), text[:400]
            # the Markdown adapter name is a row label of that table, as its characters
            assert EVIL.split("(")[0] in text
            page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)

            page.get_by_role("tab", name="Pareto").click()
            page.get_by_text("x axis").first.wait_for(timeout=30_000)
            chart = page.locator('[data-testid="stVegaLiteChart"]:visible').first
            chart.locator("canvas, svg").first.wait_for(state="visible", timeout=60_000)
            page.screenshot(path=str(tmp_path / "pareto.png"), full_page=True)
            page.get_by_role("tab", name="Run detail").click()
            page.get_by_text("Overlay the curves of several runs").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "detail.png"), full_page=True)

            # a laptop-sized screen: 1600 x 1000, the ranking key and the costs are on screen
            wide_page = browser.new_page(viewport={"width": 1600, "height": 1000})
            wide_page.goto(served_app, wait_until="domcontentloaded", timeout=60_000)
            wide_page.get_by_text("Suite: glue").first.wait_for(timeout=60_000)
            first = wide_page.locator('[data-testid="stDataFrame"]').first
            first.wait_for(state="visible", timeout=60_000)
            box = first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + min(box["width"], 700) <= 1600
            wide_page.screenshot(path=str(tmp_path / "leaderboard-1600.png"))
            wide_page.get_by_role("tab", name="Pareto").click()
            wide_page.get_by_text("y axis").first.wait_for(timeout=30_000)
            wide_page.locator('[data-testid="stVegaLiteChart"]:visible').first.locator("canvas, svg").first.wait_for(
                state="visible", timeout=60_000)
            wide_page.screenshot(path=str(tmp_path / "pareto-1600.png"))
        finally:
            browser.close()
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert (tmp_path / "leaderboard-1600.png").stat().st_size > 10_000
    assert (tmp_path / "pareto-1600.png").stat().st_size > 10_000
    shots = os.environ.get("HARNESS_SCREENSHOTS")  # keep them for a look: HARNESS_SCREENSHOTS=DIR
    if shots:
        import shutil

        for name in ("leaderboard-1600.png", "pareto-1600.png", "detail.png"):
            shutil.copy(tmp_path / name, Path(shots) / name)
    # nothing in a record made the browser fetch anything from the address it names
    assert not [u for u in requested if "127.0.0.1:9/" in u], requested
