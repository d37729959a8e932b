"""Benchmark of the browser face (`imnrisk web`) in headless Chromium, as the tests drive it:

- server ready: process start to the first HTTP answer, and to the first slice frame in the page;
- mouse move to new frame: the paint brush's outline follows the mouse in the axial view; the
  time from a mouse move to the next frame the page receives (median, p90 of N moves);
- Predict click to result shown (verdict, risk, group: the model's features only, computed in the
  server), and to the nomogram shown (drawn just after the result is sent);
- the 1-minute load average before and after (the machine may be shared).

    .venv/bin/python bench/bench_web.py [--model model.json] [--moves 40]

Without --model it trains a quick model on a 60-patient phantom first (not timed). Results go to
bench/results/web.json. Needs what the web tests need (make install, .ci/run's Debian packages).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))
from test_web import CHROMIUM, CHROMIUM_ARGS, WebServer, drag, effect_button, fill_form, view_box  # noqa: E402

FRAME_WATCH = """() => { window.__frames = []; const img = document.querySelector('img.image-display-area');
  new MutationObserver(() => window.__frames.push(performance.now())).observe(img, {attributes: true,
  attributeFilter: ['src']}); }"""


def cli(*args) -> None:
    subprocess.run([sys.executable, "-m", "IMNRiskLib", *map(str, args)], check=True, capture_output=True)


def quick_model(tmp: Path) -> tuple:
    cli("synth", tmp / "phantom", "--patients", "60", "--quiet")
    cli("extract", tmp / "phantom" / "cohort.csv", "--out", tmp / "features.csv", "--quiet", "--params",
        HERE.parent / "Testing" / "data" / "original_only.yaml")
    cli("train", tmp / "phantom" / "cohort.csv", "--features", tmp / "features.csv", "--out", tmp / "model",
        "--cv-repeats", "0", "--bootstrap", "0", "--quiet")
    return tmp / "model" / "model.json", tmp / "phantom" / "cases" / "SYN0001" / "dce.nrrd"


def frame_latency(page, x: float, y: float) -> float:
    """Milliseconds from one mouse move to the next frame the page shows."""
    before = page.evaluate("() => [window.__frames.length, performance.now()]")
    page.mouse.move(x, y)
    page.wait_for_function(f"() => window.__frames.length > {before[0]}", polling="raf")
    return page.evaluate(f"() => window.__frames[{before[0]}]") - before[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--study", help="a 4-D DCE file (default: the quick phantom's first patient)")
    parser.add_argument("--moves", type=int, default=40)
    args = parser.parse_args()
    if bool(args.model) != bool(args.study):
        parser.error("--model and --study go together (without both, a quick phantom model is trained)")
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, study = (Path(args.model), Path(args.study)) if args.model else quick_model(tmp)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        server = WebServer(model, tmp)
        ready_http = time.perf_counter() - t0
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(180_000)
                t1 = time.perf_counter()
                page.goto(server.url)
                page.wait_for_selector("img.image-display-area")
                first_frame = time.perf_counter() - t1
                page.set_input_files("input[type=file] >> nth=0", str(study))
                page.wait_for_selector("#imn-phase")
                effect_button(page, "mdi-brush").click()
                page.evaluate(FRAME_WATCH)
                box = view_box(page, 0)
                cx, cy = box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"]
                page.mouse.move(cx, cy)
                latencies = [frame_latency(page, cx + 30 * ((i % 2) * 2 - 1), cy + (i % 7)) for i in range(args.moves)]
                bx, by = box["x"] + 0.70 * box["width"], box["y"] + 0.46 * box["height"]
                drag(page, [(bx - 10, by - 4), (bx + 10, by - 4), (bx + 10, by + 4), (bx - 10, by + 4)])
                page.wait_for_function("() => Number(document.querySelector('#imn-volume').dataset.voxels) > 0")
                fill_form(page)
                page.wait_for_function("() => !document.querySelector('#imn-predict').disabled")
                t2 = time.perf_counter()
                page.click("#imn-predict")
                page.wait_for_selector("#imn-result")
                predict_s = time.perf_counter() - t2
                page.wait_for_selector("#imn-nomogram")
                nomogram_s = time.perf_counter() - t2
                browser.close()
        finally:
            server.stop()
    latencies.sort()
    result = {"server_ready_s": round(ready_http, 2), "page_first_frame_s": round(first_frame, 2),
              "mouse_move_to_frame_ms": {"median": round(statistics.median(latencies), 1),
                                         "p90": round(latencies[int(0.9 * (len(latencies) - 1))], 1),
                                         "n": len(latencies), "views": 3},
              "predict_click_to_result_s": round(predict_s, 2),
              "predict_click_to_nomogram_s": round(nomogram_s, 2), "load_before": load_before,
              "load_after": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "web.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
