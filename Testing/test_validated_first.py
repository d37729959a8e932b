"""Validated first, everywhere a model is summarised (issue 25, item 5): the demo's closing line,
the model summary (predict, Slicer, web), and the report lead with nested-CV and bootstrap-corrected
AUCs and label the apparent ones; the report's tables carry human labels and hold what they name."""

from __future__ import annotations

import copy
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List


from IMNRiskLib.outputs import figures, report
from IMNRiskLib.modelling import protocols
from IMNRiskLib.app.summaries import demo_closing_line
from IMNRiskLib.scoring.modelfile import ScoringModel

MODELS = ("clinical", "radiomics", "combined")
SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")  # a CSV column name such as uni_ci_low


class Tables(HTMLParser):
    """Every <table> of a page: its caption, header cells and body rows (cell texts)."""

    def __init__(self):
        super().__init__()
        self.tables: List[Dict] = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"caption": "", "header": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td", "caption"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "caption":
            self.tables[-1]["caption"] = self._cell.strip()
        elif tag == "th":
            self.tables[-1]["header"].append(self._cell.strip())
        elif tag == "td":
            self.tables[-1]["rows"][-1].append(self._cell.strip())
        if tag in ("th", "td", "caption"):
            self._cell = None


def tables_of(page: str) -> List[Dict]:
    """The page's tables, empty rows (the header's <tr>) dropped."""
    parser = Tables()
    parser.feed(page)
    for t in parser.tables:
        t["rows"] = [r for r in t["rows"] if r]
    return parser.tables


def table_with(tables: List[Dict], caption_start: str) -> Dict:
    found = [t for t in tables if t["caption"].startswith(caption_start)]
    assert len(found) == 1, [t["caption"] for t in tables]
    return found[0]


# --------------------------------------------------------------------------- the demo's closing line

def test_demo_closing_line_leads_with_validated_aucs(trained_phantom):
    _, metrics, _ = trained_phantom
    line = demo_closing_line(metrics, 12.3, Path("out/model/report.html"))
    assert line.startswith("imnrisk demo: done in 12 s. Nested-CV AUC ")
    cv = {m: metrics["models"][m]["cv"] for m in MODELS}
    boot = {m: metrics["models"][m]["bootstrap"] for m in MODELS}
    app = {m: metrics["models"][m]["apparent"] for m in MODELS}
    nested = ", ".join(f"{m} {cv[m]['auc_mean']:.3f} +- {cv[m]['auc_sd']:.3f}" for m in MODELS)
    corrected = ", ".join(f"{m} {boot[m]['auc_corrected']:.3f}" for m in MODELS)
    apparent = ", ".join(f"{m} {app[m]['auc']:.3f}" for m in MODELS)
    assert f"Nested-CV AUC {nested}; bootstrap-corrected AUC {corrected}; apparent AUC" in line
    assert line.index(corrected) < line.index("apparent AUC") < line.index(apparent) < line.index("DeLong p (apparent)")
    assert ". AUC clinical" not in line  # the unlabelled apparent AUC of before
    assert "out/model/report.html" in line and "synthetic data" in line


def test_demo_closing_line_says_which_validated_numbers_exist(trained_phantom):
    _, metrics, _ = trained_phantom
    no_boot = copy.deepcopy(metrics)
    for m in MODELS:
        del no_boot["models"][m]["bootstrap"]
    line = demo_closing_line(no_boot, 5, Path("r.html"))
    assert "Nested-CV AUC clinical" in line and "bootstrap-corrected" not in line
    assert line.index("no bootstrap in this run") < line.index("apparent AUC")
    neither = copy.deepcopy(no_boot)
    for m in MODELS:
        del neither["models"][m]["cv"]
    line = demo_closing_line(neither, 5, Path("r.html"))
    assert "done in 5 s. No nested CV and no bootstrap in this run; apparent AUC (training data, optimistic) " \
           f"clinical {metrics['models']['clinical']['apparent']['auc']:.3f}" in line
    no_cv = copy.deepcopy(metrics)
    for m in MODELS:
        del no_cv["models"][m]["cv"]
    line = demo_closing_line(no_cv, 5, Path("r.html"))
    assert line.index("Bootstrap-corrected AUC") < line.index("no nested CV in this run") < line.index("apparent AUC")


# --------------------------------------------------------------------------- the model summary

def test_model_summary_leads_with_validated_aucs(trained_phantom):
    out, metrics, _ = trained_phantom
    text = ScoringModel.load(out / "model.json").summary()
    lines = text.splitlines()
    assert "SYNTHETIC phantom data" in lines[0]
    cv = metrics["models"]["combined"]["cv"]
    nested = ", ".join(f"{m} {metrics['models'][m]['cv']['auc_mean']:.3f} ± {metrics['models'][m]['cv']['auc_sd']:.3f}"
                       for m in MODELS)
    corrected = ", ".join(f"{m} {metrics['models'][m]['bootstrap']['auc_corrected']:.3f}" for m in MODELS)
    apparent = ", ".join(f"{m} {metrics['models'][m]['apparent']['auc']:.3f}" for m in MODELS)
    assert lines[1] == (f"Validated nested-CV AUC ({cv['folds']}-fold x {cv['repeats']}) {nested}; "
                        f"bootstrap-corrected AUC (B = {metrics['models']['combined']['bootstrap']['b']}) {corrected}.")
    assert lines[2] == f"apparent AUC (on the training patients, optimistic) {apparent}."
    assert text.index("Validated") < text.index("apparent")


def test_model_summary_says_when_no_validated_number_exists(quick_model, trained_phantom):
    text = ScoringModel.load(quick_model).summary()  # trained with --cv-repeats 0 --bootstrap 0
    assert text.index("Validated AUC: none (trained without cross-validation or bootstrap)") < text.index("apparent AUC")
    out, _, _ = trained_phantom
    doc = json.loads((out / "model.json").read_text(encoding="utf-8"))
    doc["training"]["bootstrap"] = {m: {} for m in MODELS}  # as a run with --bootstrap 0 writes it
    text = ScoringModel(doc).summary()
    assert "(no bootstrap)" in text and "bootstrap-corrected" not in text
    assert text.index("nested-CV AUC") < text.index("(no bootstrap)") < text.index("apparent AUC")


# --------------------------------------------------------------------------- the report

def test_validation_chart_axis_starts_at_zero(trained_phantom):
    _, metrics, _ = trained_phantom
    fig = figures.cv_protocols(metrics)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("CV, nested") and labels[2].startswith("Apparent")  # validated first
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_report_tables_carry_human_labels(trained_phantom):
    out, _, _ = trained_phantom
    page = (out / "report.html").read_text(encoding="utf-8")
    tables = tables_of(page)
    assert len(tables) > 10
    raw = [(t["caption"], h) for t in tables for h in t["header"] if SNAKE.match(h)]
    assert raw == []
    flags = [(t["caption"], c) for t in tables for r in t["rows"] for c in r if c in ("True", "False")]
    assert flags == []
    t2 = table_with(tables, "Table 2.")
    for label in ("Univariable OR 95% CI lower", "Multivariable p", "Firth OR", "selected"):
        assert label in t2["header"], t2["header"]
    selected = [r[t2["header"].index("selected")] for r in t2["rows"]]
    assert set(selected) <= {"yes", "no"} and "yes" in selected
    t1 = table_with(tables, "Table 1.")
    assert "IMN positive" in t1["header"] and "IMN negative %" in t1["header"]


def test_report_leads_with_validated_and_labels_apparent(trained_phantom):
    out, metrics, _ = trained_phantom
    page = (out / "report.html").read_text(encoding="utf-8")
    tables = tables_of(page)
    validation = table_with(tables, "Internal validation")
    head = validation["header"]
    assert head.index("nested CV AUC") < head.index("bootstrap-corrected AUC / slope") < head.index("apparent AUC (training data)")
    assert head[-1] == "apparent AUC (training data)"
    disc = table_with(tables, "Apparent AUC with DeLong 95% CI")
    assert disc["header"][1] == "apparent AUC"
    assert disc["rows"][2][1] == f"{metrics['models']['combined']['apparent']['auc']:.3f}"
    accuracy = table_with(tables, "Accuracy beside the no-information rate")
    assert [r[1] for r in accuracy["rows"][:3]] == ["nested CV", "leaky CV", "apparent (training data)"]
    section = page[page.index("7. Decision curves"):page.index("8. Validation")]
    assert re.search(r"<p>On the training data \(apparent, optimistic\), the combined model (never has|has) "
                     r"the highest net benefit", section)


def test_protocols_table_columns_hold_what_they_name(trained_phantom, tmp_path):
    out, metrics, _ = trained_phantom
    folder = tmp_path / "run"
    shutil.copytree(out, folder)
    ours, paper = protocols.comparison_summary(metrics), protocols.comparison_summary(metrics)
    paper["protocol"], paper["features"] = "paper", paper["features"][:1]
    (folder / "protocols.json").write_text(json.dumps({"protocols": [ours, paper]}), encoding="utf-8")
    page = report.render(folder).read_text(encoding="utf-8")
    table = table_with(tables_of(page), "The two protocols on the same cohort")
    head = table["header"]
    features, factors = head.index("Rad-Score features"), head.index("clinical factors")
    assert len(table["rows"]) == 4
    for row, (c, model) in zip(table["rows"], [(c, m) for c in (ours, paper) for m in ("radiomics", "combined")]):
        assert row[0] == c["protocol"] and row[1] == figures.MODEL_LABELS[model]
        assert row[features] == ", ".join(c["features"])  # never the clinical factors
        assert not set(c["clinical_factors"]) & set(row[features].split(", "))
        assert row[factors] == (", ".join(c["clinical_factors"]) if model == "combined" else "(not in this model)")
