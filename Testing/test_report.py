"""The report: complete, self-contained, every figure embedded, numbers equal to metrics.json."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from conftest import run_cli
from IMNRiskLib.outputs.report import FIGURES

VOID = {"meta", "img", "br", "hr", "input", "link"}


class Checker(HTMLParser):
    """Counts images and checks that every opened tag is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def test_report_is_complete_and_matches_metrics(trained_phantom):
    out, metrics, stderr = trained_phantom
    page = (out / "report.html").read_text(encoding="utf-8")
    checker = Checker()
    checker.feed(page)
    assert checker.errors == [] and checker.stack == []
    assert len(checker.images) == len(FIGURES)
    assert all(img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 5000 for img in checker.images)
    assert "http://" not in page and "https://" not in page  # opens offline
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (out / "figures" / f"{name}.svg").exists()
    assert "Research use only; not a medical device." in page and "SYNTHETIC" in page
    for m in ("clinical", "radiomics", "combined"):
        a = metrics["models"][m]["apparent"]
        assert f"{a['auc']:.3f}" in page and f"{a['ci95'][0]:.3f}-{a['ci95'][1]:.3f}" in page
        assert f"{metrics['models'][m]['cv']['auc_mean']:.3f}" in page
        assert f"{metrics['models'][m]['cv_leaky']['auc_mean']:.3f}" in page
    for d in metrics["delong"]:
        assert f"{d['z']:.4f}" in page
    assert metrics["selection"]["radscore"]["formula"].replace("&", "&amp;") in page
    for section in ("1. Cohort", "2. Clinical model", "3. Radiomics", "4. Discrimination", "5. Nomogram",
                    "6. Calibration", "7. Decision curves", "8. Validation", "9. Risk groups", "10. TRIPOD+AI"):
        assert section in page, section
    assert "report: " in stderr


def test_report_command_rerenders_and_refuses_an_incomplete_folder(trained_phantom, tmp_path):
    out, _, _ = trained_phantom
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    assert run_cli("report", copy).returncode == 0 and (copy / "report.html").exists()
    (copy / "lasso_cv.csv").unlink()
    result = run_cli("report", copy, "--force")  # report.html exists again: replaced only with --force
    assert result.returncode == 2 and "missing lasso_cv.csv" in result.stderr


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not chromium(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_without_broken_images(trained_phantom, tmp_path):
    out, _, _ = trained_phantom
    probe = ("<script>window.onerror=function(m){document.body.setAttribute('data-error',m)};"
             "window.addEventListener('load',function(){var bad=[].filter.call(document.images,"
             "function(i){return !(i.complete&&i.naturalWidth>0)}).length;"
             "document.body.setAttribute('data-images',document.images.length+'/'+bad)});</script>")
    page = (out / "report.html").read_text(encoding="utf-8").replace("</body>", probe + "</body>")
    (tmp_path / "probe.html").write_text(page, encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", f"file://{tmp_path / 'probe.html'}"],
                         capture_output=True, encoding="utf-8", errors="replace", timeout=120).stdout
    match = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert match, dom[:500]
    assert int(match.group(1)) == len(FIGURES) and match.group(2) == "0"
    assert not re.search(r"<body[^>]*data-error=", dom)
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *flags, "--window-size=1200,3000", f"--screenshot={shot}",
                    f"file://{out / 'report.html'}"], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000


def test_demo_end_to_end_on_a_small_phantom(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--patients", "40", "--cv-repeats", "2", "--bootstrap", "10", "--quiet")
    assert result.returncode == 0, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("imnrisk demo: done in") and "DeLong p" in last
    # validated first, the apparent AUCs after them and labelled (#25.5)
    assert last.index("Nested-CV AUC clinical") < last.index("bootstrap-corrected AUC clinical") \
        < last.index("apparent AUC")
    assert str(out / "model" / "report.html") in last
    for name in ("phantom/cohort.csv", "phantom/truth.json", "features.csv", "tables/table1.csv",
                 "tables/table2.csv", "model/model.json", "model/metrics.json", "model/report.html",
                 "model-paper/report.html"):  # the paper's report, drawn while the default trained
        assert (out / name).exists(), name
    # both protocols trained on the same phantom, side by side in the default's report (#12.9)
    import json
    compared = json.loads((out / "model" / "protocols.json").read_text(encoding="utf-8"))["protocols"]
    assert [c["protocol"] for c in compared] == ["imnrisk", "paper"]
    assert json.loads((out / "model-paper" / "metrics.json").read_text(encoding="utf-8"))["protocol"]["name"] == "paper"
    assert "The two protocols on the same cohort" in (out / "model" / "report.html").read_text(encoding="utf-8")
    assert "protocols side by side" in result.stderr
    # an output folder holding someone else's files is refused, and nothing of theirs is touched
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    for args in (("demo", "--out", mine, "--patients", "10", "--quiet"),
                 ("train", out / "phantom" / "cohort.csv", "--features", out / "features.csv", "--out", mine)):
        refused = run_cli(*args)
        assert refused.returncode == 2 and "pass --force" in refused.stderr
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me" and len(list(mine.iterdir())) == 1


def test_report_shows_the_ibsi_conformance_table_and_the_clear_ibsi_items(trained_phantom):
    import html
    import json

    from IMNRiskLib.radiomics import ibsi
    out, _, _ = trained_phantom
    page = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    model = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert "11. IBSI conformance of the features" in page
    table = ibsi.load_table()
    c = ibsi.counts(table)
    cell = r"\s*<td>{}</td>"
    for row in ibsi.class_summary(table).itertuples(index=False):  # every class: mapped, matching, deviations
        assert re.search("<tr>" + "".join(cell.format(re.escape(str(v))) for v in row), page), row[0]
    assert re.search(r"<tr>\s*<td>all</td>\s*<td></td>" + cell.format(c["mapped"]) + cell.format(c["match"]), page)
    for reason in set(ibsi.CONVENTIONS.values()):
        assert reason in page
    assert ibsi.WAVELET_NOTE in page
    setting = model["extraction"]["pyradiomics"]["setting"]
    for topic, text in (("Feature extraction software and version", f"pyradiomics {model['software']['pyradiomics']}"),
                        ("IBSI conformance", f"{c['match']}/{c['mapped']} mapped features match"),
                        ("Discretisation", f"fixed bin number (FBN): {setting['binCount']} bins"),
                        ("Interpolation and resampling", "none: native voxel spacing"),
                        ("Filters (image types)", "Original (unfiltered)"),
                        ("Smoothing and normalisation",
                         f"Gaussian smoothing sigma {model['extraction']['imnrisk']['smoothing_sigma_mm']:g} mm")):
        assert re.search(rf"<td>{re.escape(topic)}</td>\s*<td>[^<]*{re.escape(text)}", page), topic


@pytest.mark.parametrize("name", ["funnel", "icc"])
def test_a_saved_figure_has_the_pixels_of_matplotlibs_own_png(name, tmp_path):
    """figures.save lays a figure out once and writes an RGB PNG: the pixels are those of savefig's
    RGBA PNG (laid out by savefig itself) without its alpha channel, which is all opaque; the SVG
    is written too."""
    import xml.etree.ElementTree as ElementTree
    import numpy as np
    from PIL import Image
    from IMNRiskLib.outputs import figures

    def drawn():
        if name == "funnel":
            return figures.funnel([{"step": "all", "n": 851}, {"step": "corr", "n": 212}, {"step": "lasso", "n": 9}])
        return figures.icc_distribution(np.random.default_rng(0).uniform(0.2, 1.0, 300), 0.75)

    paths = figures.save(drawn(), tmp_path, name)
    plt = figures._plt()
    reference = drawn()
    with plt.rc_context(figures.STYLE):
        reference.set_size_inches(*figures.FIGSIZE)
        reference.set_layout_engine("constrained")
        reference.savefig(tmp_path / "reference.png", dpi=figures.DPI)
    plt.close(reference)
    ours, theirs = Image.open(paths["png"]), Image.open(tmp_path / "reference.png")
    assert ours.mode == "RGB" and theirs.mode == "RGBA" and ours.size == theirs.size
    rgba = np.asarray(theirs)
    assert (rgba[..., 3] == 255).all()
    assert np.array_equal(np.asarray(ours), rgba[..., :3])
    assert ours.info["Software"] == theirs.info["Software"] and ours.info["dpi"] == theirs.info["dpi"]
    assert ElementTree.parse(paths["svg"]).getroot().tag.endswith("svg")


def test_figures_drawn_by_two_processes_are_the_ones_one_process_draws(trained_phantom, tmp_path):
    """render(folder, jobs=2) hands every other figure to a worker process: the same PNG bytes
    (SVG holds a date and random ids) and a report that shows every figure."""
    from IMNRiskLib.outputs.report import render
    copies = {}
    for jobs in (1, 2):
        copies[jobs] = tmp_path / f"jobs{jobs}"
        shutil.copytree(trained_phantom[0], copies[jobs])
        shutil.rmtree(copies[jobs] / "figures", ignore_errors=True)
        render(copies[jobs], jobs)
    pngs = sorted(p.name for p in (copies[1] / "figures").glob("*.png"))
    assert len(pngs) >= 10 and pngs == sorted(p.name for p in (copies[2] / "figures").glob("*.png"))
    for name in pngs:
        assert (copies[1] / "figures" / name).read_bytes() == (copies[2] / "figures" / name).read_bytes(), name
    page = (copies[2] / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') >= len(pngs)
