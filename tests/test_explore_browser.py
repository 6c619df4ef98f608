"""The temperature slider in a real JupyterLab (the project's own, from .venv), driven in
Debian's headless Chromium by Playwright: moving the slider redraws the second chart and
leaves the first (T = 1) as it was.

JupyterLab's server and a kernel are started by the test and stopped afterwards. Where no
Chromium can be found the test skips and says so (``make test`` installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from postgres_server import free_port
from test_feedback_browser import CHROMIUM

SETUP = """from lmlogits import explore_temperature, load_model_and_tokenizer
model, tokenizer = load_model_and_tokenizer()"""
EXPLORE = 'explore_temperature("This weekend I plan to", model, tokenizer)'
# the notebook's kernel status in JupyterLab 4 (data-status: idle, busy, ...)
INDICATOR = ".jp-Notebook-ExecutionIndicator"


@pytest.fixture()
def jupyterlab(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (make browser installs Debian's chromium)")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(EXPLORE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, tmp_path / "explore.ipynb")
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               IPYTHONDIR=str(tmp_path / "ipython"))  # the kernel's history stays here
    env.pop("LMLOGITS_GRADING", None)  # as a student runs it, not the grader
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--allow-root",
         f"--port={port}", "--ip=127.0.0.1", "--IdentityProvider.token=",
         "--ServerApp.password=", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        yield f"{url}/lab/tree/explore.ipynb"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# a cell that has started shows [*] or its execution count in its prompt
STARTED = ("() => [...document.querySelectorAll('.jp-InputPrompt')]"
           ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))")


def _run_all_cells(page) -> None:
    """Run > Run All Cells, again if no cell started (on a loaded machine the first
    click can reach the menu before the notebook is the active panel)."""
    from playwright.sync_api import TimeoutError as NothingStarted

    for _ in range(3):
        page.locator(".jp-Notebook .jp-Cell").first.click()  # the notebook is active
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            page.wait_for_function(STARTED, timeout=15_000)
            return
        except NothingStarted:  # try the menu again
            continue
    raise AssertionError("Run All Cells started no cell, three times")


def test_the_slider_redraws_the_chart_in_jupyterlab(jupyterlab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(jupyterlab)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Run All before the kernel is up runs nothing (a loaded machine takes seconds)
            page.wait_for_selector(f"{INDICATOR}[data-status='idle']", timeout=90_000)
            _run_all_cells(page)
            slider = page.locator(".widget-slider").last
            try:
                slider.wait_for(timeout=120_000)
            except Exception as error:  # say what the notebook showed instead
                shown = page.locator(".jp-Notebook").inner_text()[-3000:]
                status = page.locator(INDICATOR).first.get_attribute("data-status")
                raise AssertionError(f"no slider appeared; the kernel is {status!r} and the "
                                     f"notebook shows:\n{shown}") from error
            cell = slider.locator("xpath=ancestor::div[contains(@class,'jp-CodeCell')][1]")
            images = cell.locator("img")
            images.nth(1).wait_for(timeout=30_000)  # T = 1 above, the slider's chart below
            before = images.evaluate_all("els => els.map(e => e.src)")
            assert len(before) == 2
            assert "temperature" in slider.inner_text()
            slider.locator(".noUi-handle, .ui-slider-handle").first.focus()
            for _ in range(10):  # 10 steps of 0.05: T = 0.5
                page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                "([cell, old]) => { const s = [...cell.querySelectorAll('img')]"
                ".map(e => e.src); return s.length === 2 && s[1] !== old; }",
                arg=[cell.element_handle(), before[1]], timeout=30_000,
            )
            after = images.evaluate_all("els => els.map(e => e.src)")
            assert after[0] == before[0]  # the model's own distribution stays
            assert after[1] != before[1]  # the tempered one was redrawn
            assert "0.50" in slider.inner_text()
        finally:
            browser.close()
