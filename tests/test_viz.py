"""kedro-viz in a real browser: `kedro viz run` and the static `kedro viz build` site, each
opened in headless Chromium (driven by Playwright) after a tiny run, so that datasets have
something to preview. Screenshots land in the test's temporary folder, and in
$SYNTHTUNE_SCREENSHOTS when that is set."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from synthtune.pipeline_registry import STAGES, register_pipelines

from .conftest import new_project, scripts_env

# seconds in one process on a 2-core AVX2 CPU: the suite starts this file first (tests/conftest.py)
pytestmark = pytest.mark.duration(seconds=135)

CHROMIUM = os.environ.get("SYNTHTUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Debian's Chromium headless, offline and without a sandbox (we run as root in CI); Playwright
# cannot download its own browser builds here.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PIPELINES = {*STAGES, "full", "export", "__default__"}


@pytest.fixture(scope="module")
def ran_project(tmp_path_factory) -> Path:
    """A copy of the project after `kedro run --env smoke --pipelines full`."""
    project = new_project(tmp_path_factory.mktemp("viz"))
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env", "smoke", "--pipelines", "full"],
        cwd=project,
        env=scripts_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return project


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: scripts/test.sh installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    """A free loopback port below 49152 (kedro-viz refuses the ephemeral range)."""
    for port in range(4141 + os.getpid() % 20000, 49152):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 49152")


@contextmanager
def serving(command: list[str], cwd: Path, probe: str, timeout: float = 300) -> Iterator[None]:
    """Run a server until the block ends; enter once ``probe`` answers 200."""
    server = subprocess.Popen(
        command,
        cwd=cwd,
        env=scripts_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                pytest.fail(f"{' '.join(command)} exited with {server.returncode}:\n{server.stdout.read()[-3000:]}")
            try:
                with urllib.request.urlopen(probe, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{probe} did not answer within {timeout:.0f} s")
            time.sleep(1)
        yield
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def open_flowchart(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(url)
    page.wait_for_selector(".pipeline-node", timeout=120_000)
    if page.locator("text=Dismiss").count():  # the release banner
        page.locator("text=Dismiss").first.click()
    dismiss_tour(page, wait_s=10)
    return page


def dismiss_tour(page: Page, wait_s: float = 0) -> None:
    """Close kedro-viz's feature tour, which fades in some seconds after the flowchart (later
    on a busy machine) and covers the sidebar's search box."""
    tour = page.locator(".feature-hints__close")
    try:
        tour.first.wait_for(state="visible", timeout=max(wait_s * 1000, 1))
    except PlaywrightTimeoutError:
        return  # no tour (yet)
    tour.first.click()
    expect(tour).to_have_count(0)


def select(page: Page, dataset: str):
    """Select a dataset from the sidebar (it may sit inside a collapsed stage); its metadata panel.

    The sidebar re-renders as the search narrows, so a click can land on a row being
    replaced: try a few times, starting from no selection each time.
    """
    panel = page.locator(".pipeline-metadata--visible")
    title = panel.locator(".pipeline-metadata__title")
    for _ in range(3):
        dismiss_tour(page)
        close = panel.locator('[aria-label="Close Metadata Panel"]')
        if close.count():  # a row clicked while another node is selected only clears that selection
            close.click()
            expect(close).to_have_count(0)
        search = page.get_by_placeholder("Search")
        search.fill(dataset)
        page.locator(f'form[data-test="node-list-tree-item--row"][title="{dataset}"] button').first.click()
        try:
            expect(title).to_have_text(dataset, timeout=5_000)
            break
        except AssertionError:
            continue
        finally:
            search.fill("")
    expect(title).to_have_text(dataset)
    return panel


def screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a drawn page, not a blank one
    if os.environ.get("SYNTHTUNE_SCREENSHOTS"):
        keep = Path(os.environ["SYNTHTUNE_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, keep / path.name)


def check_flowchart(page: Page, shots: Path, name: str) -> None:
    """Every pipeline listed; ``full`` drawn as the five stages, each opening onto its nodes
    under their readable names; tables, figures and metrics previewed."""
    options = page.locator('[data-test="kedro-pipeline-selector"] .menu-option').all_text_contents()
    assert set(options) == PIPELINES

    stages = page.locator('.pipeline-node[data-node-type="modularPipeline"]')
    expect(stages).to_have_count(len(STAGES))
    assert {s.locator(".pipeline-node__text").text_content() for s in stages.all()} == set(STAGES)
    screenshot(page, shots / f"{name}-stages.png")

    for stage in STAGES:  # open every stage: the flowchart then draws every node
        page.locator(f'.pipeline-node[data-node-fullname="{stage}"]').click()
        expect(page.locator(f'.pipeline-node[data-node-fullname="{stage}"]')).to_have_count(0)
    labels = page.locator('.pipeline-node[data-node-type="task"] .pipeline-node__text').all_text_contents()
    nodes = register_pipelines()["full"].nodes
    assert sorted(labels) == sorted(node.name.split(".", 1)[1] for node in nodes)

    table = select(page, "test_set")
    expect(table.locator("table")).to_be_visible()
    assert {"row_id", "text", "prompt", "answer"} <= set(table.locator("th").all_text_contents())
    for figure in ("distribution_figure", "evaluation_models_figure"):
        expect(select(page, figure).locator("img[src^='data:image/png;base64,']")).to_have_count(1)
    metrics = select(page, "metrics")
    expect(metrics).to_contain_text("strict")
    screenshot(page, shots / f"{name}-expanded.png")


def test_kedro_viz_run_in_a_browser(ran_project, browser, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "kedro", "viz", "run", "--no-browser", "--host", "127.0.0.1"]
    with serving([*command, "--port", str(port), "--env", "smoke"], ran_project, f"http://127.0.0.1:{port}/api/main"):
        api = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/main").read())
        assert {p["id"] for p in api["pipelines"]} == PIPELINES
        page = open_flowchart(browser, f"http://127.0.0.1:{port}/")
        check_flowchart(page, tmp_path, "kedro-viz-run")


def test_kedro_viz_build_site_over_http_in_a_browser(ran_project, browser, tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build", "--include-previews"],
        cwd=ran_project,
        env=scripts_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "circular" not in built.stdout + built.stderr
    site = ran_project / "build"
    assert (site / "index.html").is_file() and (site / "api/main").is_file()
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    with serving(server, ran_project, f"http://127.0.0.1:{port}/api/main"):
        page = open_flowchart(browser, f"http://127.0.0.1:{port}/")
        check_flowchart(page, tmp_path, "kedro-viz-build")


def test_the_evaluation_report_opens_in_a_browser(ran_project, browser, tmp_path):
    """The one-page report as a user opens it (file://): the headline has a row per set part
    with both models, the embedded figures decode, and each failing part shows failures with
    the model's own completion."""
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto((ran_project / "data/08_reporting/evaluation_report.html").resolve().as_uri())
    metrics = json.loads((ran_project / "data/08_reporting/metrics.json").read_text())
    headline = page.locator("#headline tr")
    expect(headline).to_have_count(1 + len(metrics["tuned"]))
    for part in metrics["tuned"]:
        row = page.locator("#headline tr", has=page.locator(f"td:text-is('{part}')"))
        expect(row).to_have_count(1)
        expect(row.locator("td.num").nth(0)).to_contain_text(f"/{metrics['tuned'][part]['strict']['n']} = ")
    widths = page.locator("img").evaluate_all("images => images.map(i => i.naturalWidth)")
    assert len(widths) == 2 and min(widths) > 100  # both figures decoded
    failures = page.locator("table.failures tr td pre")
    assert failures.count() > 0 and all(text.strip() for text in failures.all_text_contents()[:4])
    screenshot(page, tmp_path / "evaluation-report.png")
