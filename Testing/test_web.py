"""The browser face end to end: `imnrisk web` on a free loopback port, driven by Playwright in
Debian's headless Chromium with real mouse and keyboard input, checked against `imnrisk predict`.

Skipped, with the reason printed, when Chromium, Playwright, trame-slicer or Mesa's EGL/OSMesa
are missing (.ci/run installs them). Screenshots go to .cache/web-screenshots/.
"""

from __future__ import annotations

import csv
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ROOT, pyradiomics_data, run_cli
from IMNRiskLib.inputs import imaging

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / ".cache" / "web-screenshots"
READY_TIMEOUT_S = 240  # server start on a loaded 2-core machine (a bound, not a timing assertion)
UI_TIMEOUT_MS = int(os.environ.get("IMNRISK_WEB_TEST_TIMEOUT_MS", "180000"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing_for_web() -> str:
    """Why the browser tests cannot run here ('' when they can)."""
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (.ci/run installs it)"
    for module in ("playwright", "trame_slicer", "slicer"):
        try:
            __import__(module)
        except ImportError:
            return f"python package {module} missing: install the web-test extra (make install does)"
    if not (ctypes.util.find_library("EGL") or ctypes.util.find_library("OSMesa")):
        return "no offscreen OpenGL: Debian's libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 (or libosmesa6) missing"
    return ""


REASON = missing_for_web()
if REASON:
    print(f"\ntest_web: skipped: {REASON}", file=sys.stderr)
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or "ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen) -> None:
    """Poll the page until it answers (the server is up) or the process dies."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"imnrisk web exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)  # poll interval while the server starts
    raise AssertionError("imnrisk web did not start in time")


class WebServer:
    """`imnrisk web` in its own process, with its own TMPDIR (to see that uploads are removed); its
    session processes import this tree's Slicer controller (IMNRisk/ first on PYTHONPATH)."""

    def __init__(self, model: Path, tmp: Path, env_extra=None, args=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmpdir = tmp / "server-tmp"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.log = tmp / "server.log"
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "IMNRisk"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               **(env_extra or {})}
        model_args = ["--model", str(model)] if model else []  # None: the models come from --models DIR
        self.process = subprocess.Popen([sys.executable, "-m", "IMNRiskLib", "web", *model_args,
                                         "--port", str(self.port), *map(str, args)], stdout=self.log.open("w"),
                                        stderr=subprocess.STDOUT, env=env)
        wait_until_serving(self.url, self.process)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def uploads(self) -> list:
        """The session upload folders in the server's TMPDIR."""
        return list(self.tmpdir.glob("imnrisk-web-*"))


@pytest.fixture(scope="module")
def web_model(quick_model) -> Path:
    """The phantom model without CV or bootstrap (seconds to train): the page scores any model alike."""
    return quick_model


@pytest.fixture(scope="module")
def study_file(phantom, tmp_path_factory) -> Path:
    """A phantom patient's 8-phase DCE series (4-D NRRD), under a name that is a patient's."""
    folder = tmp_path_factory.mktemp("patient")
    target = folder / "DOE_JANE_1961.nrrd"
    shutil.copy(phantom / "cases" / "SYN0001" / "dce.nrrd", target)
    return target


@pytest.fixture(scope="module")
def server(web_model, tmp_path_factory):
    # room for this module's pages beside the two contexts at once (a closed tab's session lingers
    # for --grace-seconds)
    srv = WebServer(web_model, tmp_path_factory.mktemp("web"), args=("--max-sessions", "8"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def wait_for_session(page) -> None:
    """Wait until the launcher has moved the page to its session (the notice shows), or fail with the
    launcher's own words when it refused or could not start one (not a bare timeout)."""
    page.wait_for_function("() => document.querySelector('#imn-notice') || /refused|in use|could not start|"
                           "does not answer/.test((document.getElementById('imn-launch') || {}).textContent || '')")
    if page.locator("#imn-notice").count() == 0:
        raise AssertionError(f"no session: {page.inner_text('#imn-launch')}")


def new_page(browser, url: str):
    """A page on the launcher's address: it starts a session process and moves there."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url)
    wait_for_session(page)
    return page


def set_patient_id(page, text: str) -> None:
    """Type the patient identifier (keyboard) and wait until the session has it."""
    page.click("#imn-patient-id")
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Tab")
    page.wait_for_function(f"() => document.querySelector('#imn-patient').dataset.patientId === {json.dumps(text)}")


def open_path(page, path: Path, phase: str = "1") -> None:
    """Open a study by its path on the workstation (keyboard), then wait for its phase."""
    page.fill("#imn-path", str(path))
    page.click("#imn-open")
    page.wait_for_function("() => document.querySelector('#imn-phase') && "
                           f"document.querySelector('#imn-phase').dataset.phase === '{phase}'")


def threshold_and_apply(page) -> int:
    """The threshold effect at its default range, applied (mouse); returns the segment's voxels."""
    effect_button(page, "mdi-auto-fix").click()
    page.wait_for_selector("#imn-threshold-low")
    state_sent(page)
    page.locator("#imn-tumour button:has-text('Apply')").click()
    return wait_voxels(page, "v > 0")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"web-{name}.png"))


def voxels(page) -> int:
    return int(page.get_attribute("#imn-volume", "data-voxels"))


def wait_voxels(page, condition: str) -> int:
    """Poll until the live segment size satisfies `condition` (a JS expression of v)."""
    page.wait_for_function(f"() => {{ const e = document.querySelector('#imn-volume');"
                           f" if (!e) return false; const v = Number(e.dataset.voxels); return {condition}; }}")
    return voxels(page)


def view_box(page, n: int = 0):
    """The n-th slice view's image on screen (0 axial, 1 sagittal, 2 coronal)."""
    return page.locator("img.image-display-area").nth(n).bounding_box()


def drag(page, points) -> None:
    """A real mouse stroke through the given page points, button held."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def state_sent(page) -> None:
    """Wait until the page has sent every state change to the server (trame pushes state when the
    server is not busy, while a click's trigger goes at once)."""
    page.wait_for_function("() => window.trame.state.dirtyKeys.size === 0")


def effect_button(page, icon: str):
    return page.locator(f"#imn-tumour button:has(.{icon})").first


def download(page, button: str, target: Path) -> Path:
    with page.expect_download() as info:
        page.click(button)
    info.value.save_as(str(target))
    return target


def paint_two_slices(page, fx: float, fy: float, half_w: int, half_h: int, steps: int = 1) -> int:
    """A brush stroke at (fx, fy) of the axial view, then the same stroke `steps` slices on (keyboard
    on the view's slider): a 3-D tumour. Returns the painted voxels."""
    effect_button(page, "mdi-brush").click()
    box = view_box(page, 0)
    cx, cy = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
    stroke = [(cx - half_w, cy - half_h), (cx + half_w, cy - half_h), (cx + half_w, cy + half_h),
              (cx - half_w, cy + half_h)]
    drag(page, stroke)
    one_slice = wait_voxels(page, "v > 0")
    axial_slider = page.locator(".layout-grid-item").nth(0).locator("[role=slider]").first
    axial_slider.focus()
    for _ in range(steps):
        axial_slider.press("ArrowRight")
    drag(page, stroke)
    return wait_voxels(page, f"v > {one_slice}")


def fill_form(page, pick: str = "last", number: str = "50", patient_id: str = "TEST-0001") -> dict:
    """Type the patient identifier, choose a level in every select (mouse; the first or last) and
    type every number (keyboard); returns the clinical values."""
    set_patient_id(page, patient_id)
    values = {}
    for field in page.locator("[data-field]").all():
        name = field.get_attribute("data-field")
        if field.locator("input[type=number]").count():
            field.locator("input[type=number]").fill("")
            field.locator("input[type=number]").type(number)
            field.locator("input[type=number]").press("Tab")
        else:
            field.locator(".v-field").click()
            getattr(page.locator(".v-overlay--active .v-list-item"), pick).click()
        page.wait_for_function(f"() => document.querySelector('[data-field=\"{name}\"]').dataset.status === 'valid'")
        values[name] = field.get_attribute("data-value")
    return values


def test_scoring_workflow_in_chromium_matches_the_command_line(server, browser, study_file, web_model, tmp_path):
    page = new_page(browser, server.url)
    assert "Research use only" in page.inner_text("#imn-notice")
    assert page.locator("#imn-predict").is_disabled()

    # 1. upload the study: the second phase is shown, with the phase slider
    page.set_input_files("input[type=file] >> nth=0", str(study_file))
    page.wait_for_function("() => document.querySelector('#imn-phase') && "
                           "document.querySelector('#imn-phase').dataset.phase === '1'")
    assert "Phase 2 of 8" in page.inner_text("#imn-phase")
    assert study_file.name not in page.content() and str(study_file.parent) not in page.content()
    assert wait_voxels(page, "v === 0") == 0

    # 2. paint a stroke on two adjacent axial slices (mouse; the slice moves with the keyboard)
    painted = paint_two_slices(page, 0.70, 0.46, 10, 4, steps=2)  # the phantom's tumour
    shot(page, "paint")

    # the live size is the exported mask's: count the voxels of the NRRD the page saves
    mask = download(page, "#imn-download-mask", tmp_path / "painted.nrrd")
    mask_array = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    assert int(np.count_nonzero(mask_array)) == painted
    spacing = np.prod(sitk.ReadImage(str(mask)).GetSpacing())
    assert float(page.get_attribute("#imn-volume", "data-ml")) == pytest.approx(painted * spacing / 1000, rel=1e-9)
    assert len(np.unique(np.nonzero(mask_array)[0])) >= 2  # a 3-D tumour (sphere brush, two strokes)

    # 3. threshold with the mouse (drag the lower bound up), apply, then undo back to the stroke
    effect_button(page, "mdi-auto-fix").click()
    thumbs = "document.querySelectorAll('#imn-tumour [role=slider]')"
    page.wait_for_function(f"() => {{ const t = {thumbs}; return t.length === 2 && "  # the auto range has arrived
                           "Number(t[1].getAttribute('aria-valuenow')) > 1 && Number(t[0].getAttribute('aria-valuenow')) > 0; }")
    low = page.locator("#imn-tumour [role=slider]").first
    auto_low = float(low.get_attribute("aria-valuenow"))
    low_box = low.bounding_box()
    track = page.locator("#imn-tumour .v-slider-track").first.bounding_box()
    drag(page, [(low_box["x"] + low_box["width"] / 2, low_box["y"] + low_box["height"] / 2),
                (track["x"] + 0.55 * track["width"], low_box["y"] + low_box["height"] / 2)])
    # the default range is the brightest voxels of the phase, not an automatic range over the organ
    phase2 = sitk.GetArrayFromImage(imaging.load_phase(study_file, 1)[0])
    assert auto_low >= np.percentile(phase2, 99) - 1e-3
    page.wait_for_function(f"() => Number({thumbs}[0].getAttribute('aria-valuenow')) !== {auto_low}")
    chosen_low = float(low.get_attribute("aria-valuenow"))
    state_sent(page)  # trame holds state back while the server is busy; Apply must come after it
    page.locator("#imn-tumour button:has-text('Apply')").click()
    thresholded = wait_voxels(page, f"v !== {painted}")
    shot(page, "threshold")
    threshold_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(download(page, "#imn-download-mask",
                                                                        tmp_path / "threshold.nrrd"))))
    assert int(np.count_nonzero(threshold_mask)) == thresholded
    added = (threshold_mask > 0) & (mask_array == 0)
    assert added.any() and phase2[added].min() >= chosen_low - 1e-3  # the range chosen, on the shown phase
    page.locator("#imn-tumour button:has(.mdi-undo)").click()
    assert wait_voxels(page, f"v === {painted}") == painted

    # 4. the clinical form: every field "not entered" and Predict disabled until all are set
    fields = page.locator("[data-field]")
    assert fields.count() >= 1
    assert all(f.get_attribute("data-status") == "not entered" for f in fields.all())
    assert page.locator("#imn-predict").is_disabled()
    clinical = fill_form(page)
    page.wait_for_function("() => !document.querySelector('#imn-predict').disabled")

    # 5. predict: the page's risk equals `imnrisk predict --json` on the saved mask and the same phase
    page.click("#imn-predict")
    page.wait_for_selector("#imn-result")
    page.wait_for_selector("#imn-nomogram")
    page.locator("#imn-result").scroll_into_view_if_needed()
    shot(page, "result")
    shown = json.loads(page.get_attribute("#imn-risk", "data-probability"))
    radscore = json.loads(page.get_attribute("#imn-radscore", "data-radscore"))
    scored_mask = download(page, "#imn-download-mask", tmp_path / "scored.nrrd")
    cli = run_cli("predict", web_model, "--image", study_file, "--mask", scored_mask, "--phase", "1", "--json",
                  "--clinical", *[f"{k}={v}" for k, v in clinical.items()])
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert shown == pytest.approx(expected["probability"], abs=1e-9)
    assert radscore == pytest.approx(expected["radscore"], abs=1e-9)
    # the scoring core's words, verdict first: the page renders them, it judges nothing itself
    assert page.inner_text("#imn-verdict") == expected["verdict"]["headline"]
    assert page.get_attribute("#imn-verdict", "data-state") == expected["verdict"]["state"]
    assert page.inner_text("#imn-group") == "Risk group: " + expected["display"]["group"]
    assert page.inner_text("#imn-banner").startswith("TRAINED ON SYNTHETIC DATA")  # the phantom model's banner
    assert page.locator("#imn-download-dicom").is_disabled()  # a NRRD study: no DICOM to reference
    assert "needs a DICOM study" in page.inner_text("#imn-export-reason")

    # 6. the results table downloads as CSV, one row per prediction
    table = download(page, "#imn-download-csv", tmp_path / "results.csv")
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and float(rows[0]["risk"]) == pytest.approx(expected["probability"], abs=1e-6)
    assert rows[0]["patient_id"] == "TEST-0001"

    # 7. stale results clear: another phase (keyboard on the phase slider) hides the result
    slider = page.locator("#imn-phase-box [role=slider]").first
    slider.focus()
    slider.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#imn-phase').dataset.phase === '2'")
    page.wait_for_selector("#imn-stale")
    assert page.locator("#imn-result").count() == 0
    shot(page, "stale")
    page.close()


def test_a_real_breast_mri_leads_with_not_reliable_and_withholds_the_group(server, browser, web_model, tmp_path):
    """#25: pyradiomics' real breast1 MRI (one phase) with the phantom model: the page leads with the
    verdict "Not reliable: ...", above the number, and withholds the risk group, as the CLI does."""
    page = new_page(browser, server.url)
    page.set_input_files("input[type=file] >> nth=0", str(pyradiomics_data() / "breast1_image.nrrd"))
    page.wait_for_function("() => document.querySelector('#imn-phase') && "
                           "document.querySelector('#imn-phase').dataset.phase === '0'")
    assert "Phase 1 of 1" in page.inner_text("#imn-phase")  # a one-phase study
    paint_two_slices(page, 0.5, 0.5, 12, 5)
    clinical = fill_form(page)
    page.wait_for_function("() => !document.querySelector('#imn-predict').disabled")
    page.click("#imn-predict")
    page.wait_for_selector("#imn-verdict")
    page.locator("#imn-result").scroll_into_view_if_needed()
    shot(page, "not-reliable")
    headline = page.inner_text("#imn-verdict")
    assert headline.startswith("Not reliable: ") and page.get_attribute("#imn-verdict", "data-state") == "not_reliable"
    assert page.inner_text("#imn-group") == "Risk group: withheld (not reliable)"
    order = page.evaluate("() => [...document.querySelectorAll('#imn-result > *')].map(e => e.id)")
    assert order.index("imn-verdict") < order.index("imn-risk")  # the verdict before any number
    scored_mask = download(page, "#imn-download-mask", tmp_path / "breast1-painted.nrrd")
    cli = run_cli("predict", web_model, "--image", pyradiomics_data() / "breast1_image.nrrd", "--mask", scored_mask,
                  "--json", "--clinical", *[f"{k}={v}" for k, v in clinical.items()])
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert headline == expected["verdict"]["headline"] and expected["risk_group"] is None
    page.close()


def test_no_file_name_reaches_the_log_and_uploads_are_removed_at_exit(web_model, study_file, browser, tmp_path):
    srv = WebServer(web_model, tmp_path)
    try:
        page = new_page(browser, srv.url)
        page.set_input_files("input[type=file] >> nth=0", str(study_file))
        page.wait_for_selector("#imn-phase")
        assert any(srv.tmpdir.glob("imnrisk-web-*/upload*/*"))  # the upload is on disk while serving
        set_patient_id(page, "MRN-LOG-7731")
        page.close()
    finally:
        code = srv.stop()
    assert code == 0
    assert not list(srv.tmpdir.glob("imnrisk-web-*"))
    log = srv.output()
    assert "ready at http://127.0.0.1:" in log
    assert study_file.name not in log and str(study_file.parent) not in log and str(web_model) not in log
    assert "MRN-LOG-7731" not in log  # the patient identifier is never logged


def test_a_token_protects_the_websocket(web_model, browser, study_file, tmp_path):
    token = "t0ken-for-the-test-0123456789"
    srv = WebServer(web_model, tmp_path, env_extra={"IMNRISK_WEB_TOKEN": token})
    try:
        assert f"?secret={token}" in srv.output()  # printed at start
        page = new_page(browser, srv.url + f"?secret={token}")
        assert "Research use only" in page.inner_text("#imn-notice")
        # with the token, the whole page works: open a study by its path on the workstation
        page.fill("#imn-path", str(study_file))
        page.click("#imn-open")
        page.wait_for_function("() => document.querySelector('#imn-phase') && "
                               "document.querySelector('#imn-phase').dataset.phase === '1'")
        assert study_file.name not in page.inner_text("body")
        page.close()
        intruder = browser.new_page()
        # the page loads, but the websocket refuses the session (wslink's hello): no trame state arrives
        with intruder.expect_console_message(lambda m: "Connection error" in m.text, timeout=UI_TIMEOUT_MS):
            intruder.goto(srv.url)
        assert intruder.locator("#imn-notice").count() == 0
        intruder.close()
    finally:
        srv.stop()


def test_a_non_loopback_host_without_a_token_is_refused(web_model):
    result = run_cli("web", "--model", web_model, "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "IMNRISK_WEB_TOKEN" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("secret", ["-Ab3_kd9-x", "plain_Token_1234", "--authKey"])
def test_a_session_secret_starting_with_a_dash_reaches_trame_whole(secret):
    """token_urlsafe draws '-' first one time in 64: trame must still read it as the key (a session
    once failed to start on one such secret)."""
    from trame.app import get_server
    from IMNRiskWeb.session import trame_argv
    argv = trame_argv("session.py", 30.0, secret)
    parsed, _ = get_server("argv-check", client_type="vue3").cli.parse_known_args(argv[1:])
    assert parsed.authKey == secret and parsed.timeout == 30 and parsed.server


def console_problems(page) -> list:
    """Collect the page's console errors and failed HTTP answers from now on."""
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.request.method} {r.url}")
            if r.status >= 400 else None)
    return problems


def context_page(browser, url: str):
    """A page in a browser context of its own (its own cookies and storage: another user)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems = console_problems(page)
    page.goto(url)
    wait_for_session(page)
    return page, problems


def form_values(page) -> dict:
    return {f.get_attribute("data-field"): f.get_attribute("data-value") for f in page.locator("[data-field]").all()}


def test_two_browser_contexts_keep_their_own_patient_form_and_result(server, browser, study_file, tmp_path):
    """#26 item 1-3: two users at once, each in a session process of their own: different patient
    identifiers and clinical values, each keeps its form and result; a new study clears both; the
    identifier is in the CSV row, never in the server log; no console error; no "valid" hints."""
    a, problems_a = context_page(browser, server.url)
    b, problems_b = context_page(browser, server.url)
    assert a.url.split("/")[2] != b.url.split("/")[2]  # two session processes (two ports)
    assert not problems_a and not problems_b, problems_a + problems_b  # e.g. no 405 on load
    assert [e.get_attribute("data-view") for e in a.locator(".imn-view-name").all()] == ["Axial", "Sagittal", "Coronal"]
    assert [e.get_attribute("data-marker") for e in a.locator(".imn-view-name").all()] == ["cube"] * 3  # R/L, A/P, S/I
    state = a.evaluate("() => JSON.stringify(window.trame.state.state)")
    assert str(ROOT) not in state and sys.prefix not in state  # no server install path in the page state

    for page in (a, b):
        open_path(page, study_file)
        threshold_and_apply(page)
    assert a.locator("#imn-predict").is_disabled()
    values_a = fill_form(a, pick="first", number="40", patient_id="PAT-A-0001")
    values_b = fill_form(b, pick="last", number="60", patient_id="PAT-B-0002")
    assert values_a != values_b
    hints = [t.strip() for t in a.locator("[data-field] .v-messages").all_inner_texts()]
    assert "valid" not in hints, hints  # a hint only for a field not entered or invalid

    a.click("#imn-predict")
    a.wait_for_selector("#imn-result")
    assert b.locator("#imn-result").count() == 0 and form_values(b) == values_b  # b sees nothing of a
    b.click("#imn-predict")
    b.wait_for_selector("#imn-result")
    risk_a = json.loads(a.get_attribute("#imn-risk", "data-probability"))
    risk_b = json.loads(b.get_attribute("#imn-risk", "data-probability"))
    assert risk_a != risk_b and form_values(a) == values_a  # a kept its own form and result

    # the nomogram opens full size in a dialog (a click)
    a.wait_for_selector("#imn-nomogram")
    a.click("#imn-nomogram")
    a.wait_for_selector("#imn-nomogram-full")
    assert a.locator("#imn-nomogram-full").bounding_box()["width"] > 900
    a.click("#imn-nomogram-close")

    for page, patient in ((a, "PAT-A-0001"), (b, "PAT-B-0002")):
        with page.expect_download() as info:
            page.click("#imn-download-csv")
        info.value.save_as(str(tmp_path / f"{patient}.csv"))
        with (tmp_path / f"{patient}.csv").open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["patient_id"] for r in rows] == [patient]  # one row, this session's patient only

    # a new study is a new patient: identifier, form and result cleared
    open_path(a, study_file)
    a.wait_for_function("() => document.querySelector('#imn-patient').dataset.patientId === ''")
    assert all(f.get_attribute("data-status") == "not entered" for f in a.locator("[data-field]").all())
    assert a.locator("#imn-result").count() == 0 and a.locator("#imn-predict").is_disabled()

    log = server.output()
    assert "PAT-A-0001" not in log and "PAT-B-0002" not in log
    assert not [line for line in log.splitlines() if "INFO" in line]  # pyradiomics (and all) quiet
    assert not problems_a and not problems_b, problems_a + problems_b
    for page in (a, b):
        page.context.close()


def test_a_session_ends_when_its_tab_closes_and_sighup_removes_uploads(web_model, browser, study_file, tmp_path):
    """#26 items 1 and 5: a closed tab's session process ends after --grace-seconds and removes its
    uploads; an upload over --max-upload-mb is refused on the page; SIGHUP ends every session cleanly."""
    small = pyradiomics_data() / "breast1_image.nrrd"  # 79 kB; the phantom study is 16 MB
    srv = WebServer(web_model, tmp_path, args=["--grace-seconds", "2", "--max-upload-mb", "10"])
    try:
        page = new_page(browser, srv.url)
        page.set_input_files("#imn-upload", str(study_file))
        page.wait_for_selector("#imn-load-error")
        assert "Refused: the upload is 17 MB" in page.inner_text("#imn-load-error")
        assert "at most 10 MB" in page.inner_text("#imn-load-error")
        page.set_input_files("#imn-upload", str(small))
        page.wait_for_selector("#imn-phase")
        assert len(srv.uploads()) == 1 and any(srv.uploads()[0].glob("upload*/*"))
        page.close()
        deadline = time.monotonic() + 120
        while srv.uploads() and time.monotonic() < deadline:
            time.sleep(0.5)  # the session ends 2 s after its tab closed
        assert not srv.uploads()

        page = new_page(browser, srv.url)
        page.set_input_files("#imn-upload", str(small))
        page.wait_for_selector("#imn-phase")
        assert len(srv.uploads()) == 1
        srv.process.send_signal(signal.SIGHUP)  # the terminal was closed
        assert srv.process.wait(timeout=120) == 0
        assert not srv.uploads()
        page.close()
    finally:
        srv.stop()


def test_models_of_a_folder_are_listed_and_a_trusted_key_keeps_only_its_signed_ones(web_model, tmp_path):
    """#26 item 6 (the listing behind `imnrisk web --models DIR [--trusted-key KEY.pub]`)."""
    from IMNRiskWeb.app import list_models
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(web_model, folder / "unsigned.json")
    (folder / "notes.json").write_text('{"not": "a model"}', encoding="utf-8")
    assert run_cli("keygen", tmp_path / "site").returncode == 0
    signed = run_cli("sign", web_model, "--key", tmp_path / "site.key", "--out", folder / "signed.json")
    assert signed.returncode == 0, signed.stderr
    assert list(list_models(str(folder))) == ["signed.json", "unsigned.json"]
    assert list(list_models(str(folder), str(tmp_path / "site.pub"))) == ["signed.json"]
    refused = run_cli("web", "--models", tmp_path / "absent", "--port", "0")
    assert refused.returncode == 2 and "models folder not found" in refused.stderr
