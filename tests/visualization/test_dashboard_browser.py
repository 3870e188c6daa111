"""End to end: optuna-dashboard on a small FMD study, rendered by headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them where apt is
usable) and selenium (the ``dev`` extra); skipped otherwise. The screenshots go to ``tmp_path``;
``OPTUNA_FMD_UPDATE_SCREENSHOTS=1`` also copies them to ``docs/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

import optuna_fmd as fmd
from optuna_fmd.visualization import DashboardCallback

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
STUDY = "digits-dashboard"

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium or ChromeDriver not found (apt-get install chromium chromium-driver)",
    ),
    pytest.mark.timeout(180),
]


@pytest.fixture
def fmd_study(tmp_path: Path) -> tuple[str, optuna.Study, Path]:
    """A 3-trial FMD study on Digits in SQLite, with its schedule artifacts."""
    url = f"sqlite:///{tmp_path / 'fmd.db'}"
    artifacts = tmp_path / "artifacts"
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=2, low=1e-3, high=1.0, log=True, init=0.05),
            "momentum": fmd.Schedule(windows=2, low=0.0, high=0.99, init=0.9),
        }
    )
    task = fmd.tasks.Digits(model="mlp", steps=30, batch_size=32)
    study = optuna.create_study(
        storage=url, study_name=STUDY, sampler=fmd.FMDSampler(space, seed=0)
    )
    dashboard = DashboardCallback(artifacts)
    objective = fmd.HypergradientObjective(task, space, progress=False)
    study.optimize(dashboard.wrap(objective), n_trials=3, callbacks=[dashboard])
    return url, study, artifacts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard_command() -> list[str]:
    script = Path(sys.executable).with_name("optuna-dashboard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]


@pytest.fixture
def server(fmd_study: tuple[str, optuna.Study, Path], tmp_path: Path) -> Iterator[str]:
    """optuna-dashboard on 127.0.0.1 (a free port); stopped at teardown whatever happened."""
    pytest.importorskip("optuna_dashboard")
    url, _, artifacts = fmd_study
    port = _free_port()
    log = (tmp_path / "dashboard.log").open("wb")
    cmd = [*_dashboard_command(), url, "--artifact-dir", str(artifacts)]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited: {(tmp_path / 'dashboard.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("optuna-dashboard did not answer within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def start_chromium(profile: Path) -> Any:
    """Headless Debian Chromium through ChromeDriver (quit it when done)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian Chromium through ChromeDriver; quit at teardown whatever happened."""
    driver = start_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, what: str, timeout: float = 30) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:2000]
        pytest.fail(f"the dashboard did not show {what} within {timeout} s; page text:\n{body}")


def _save(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("OPTUNA_FMD_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / name)
    return path


def test_dashboard_renders_study_schedule_figure_and_artifact(
    fmd_study: tuple[str, optuna.Study, Path], server: str, browser: Any, tmp_path: Path
) -> None:
    _, study, _ = fmd_study
    sid = study._study_id
    figure_id = "user-defined-plot:fmd-schedules"

    # The study page: its name, and the schedule figure drawn by plotly with a line per trial.
    browser.get(f"{server}/dashboard/studies/{sid}")
    _wait(browser, lambda d: STUDY in d.find_element("tag name", "body").text, "the study name")
    lines = (
        f"var e = document.getElementById({figure_id!r});"
        "return e ? e.querySelectorAll('g.trace path.js-line').length : 0;"
    )
    _wait(browser, lambda d: d.execute_script(lines) >= 6, "the schedule figure's lines")
    figure = browser.find_element("id", figure_id)
    assert "Schedules per trial" in figure.text and "trial 2 (latest)" in figure.text
    assert "Hypergradients per param" in browser.find_element("tag name", "body").text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
    time.sleep(0.5)
    _save(browser, tmp_path, "dashboard.png")

    # The study's note: the best iterate, from the sampler (the Best Trial card is Optuna's
    # single best trial)
    point = study.sampler.best_iterate(study)
    assert point is not None
    browser.get(f"{server}/dashboard/studies/{sid}/note")
    _wait(
        browser,
        lambda d: "Best iterate (optuna-fmd)" in d.find_element("tag name", "body").text,
        "the best iterate in the study's note",
    )
    body = browser.find_element("tag name", "body").text
    assert f"{point.value:.4f}" in body and "window values" in body
    _save(browser, tmp_path, "dashboard-note.png")

    # The trials page: lr_0 ... parameters and trial 2's schedule image from the artifact store.
    browser.get(f"{server}/dashboard/studies/{sid}/trials?numbers=2")
    _wait(browser, lambda d: "lr_0" in d.find_element("tag name", "body").text, "lr_0")
    text = browser.find_element("tag name", "body").text
    assert all(f"{h}_{k}" in text for h in ("lr", "momentum") for k in (0, 1))
    assert "Artifacts" in text and "schedule-trial-2.png" in text
    img = _wait(
        browser,
        lambda d: next(
            (
                e
                for e in d.find_elements("css selector", 'img[alt="schedule-trial-2.png"]')
                if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", e)
            ),
            False,
        ),
        "trial 2's schedule artifact",
    )
    assert "/artifacts/" in img.get_attribute("src")
    assert browser.execute_script("return arguments[0].naturalWidth", img) == 720
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
    time.sleep(0.3)
    _save(browser, tmp_path, "dashboard-trial.png")
