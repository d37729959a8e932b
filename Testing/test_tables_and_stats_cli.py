"""`imnrisk tables` reproduces the paper's Table 2 from its Table 1; `imnrisk stats` keeps its JSON contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import ROOT, run_cli
from test_statistics import REF, TOL

PAPER_SCHEMA = ROOT / "IMNRiskLib" / "schemas" / "paper_table2.yaml"
# The paper's Table 2, univariate: OR, 95% CI (upper bounds partly illegible: None) and p.
PAPER_UNIVARIATE = {
    "tumor_location": (0.44, 0.17, None, 0.096), "vascular_invasion": (2.91, 0.88, None, 0.081),
    "menstrual_status": (0.64, 0.24, None, 0.383), "er": (3.90, 0.86, None, 0.079),
    "pr": (7.67, 1.70, None, 0.008), "her2": (0.69, 0.23, None, 0.509), "ki67": (0.50, 0.19, None, 0.157),
    "aln_metastases": (4.37, 2.37, None, 0.0005),
    "molecular_subtype[luminal_B]": (0.68, 0.17, 2.77, 0.589),
    "molecular_subtype[her2_enriched]": (0.48, 0.15, 1.50, 0.208),
    "molecular_subtype[triple_negative]": (0.18, 0.02, 1.46, 0.107),
}


@pytest.fixture(scope="module")
def paper_tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper")
    cohort = pd.read_csv(ROOT / "Testing" / "R" / "data" / "table1_cohort.csv", dtype=str)
    cohort.to_csv(folder / "cohort.csv", index=False)
    result = run_cli("tables", folder / "cohort.csv", "--out", folder / "out", "--schema", PAPER_SCHEMA)
    assert result.returncode == 0, result.stderr
    return folder / "out"


def test_tables_reproduce_the_papers_univariate_table2(paper_tables):
    t2 = pd.read_csv(paper_tables / "table2.csv")
    rows = {}
    for _, r in t2.iterrows():
        key = r["variable"] if r["variable"] != "molecular_subtype" else f"molecular_subtype[{r['level']}]"
        rows[key] = r
    for key, (or_, lo, hi, p) in PAPER_UNIVARIATE.items():
        r = rows[key]
        assert round(r["uni_or"], 2) == pytest.approx(or_, abs=0.0051), key
        assert round(r["uni_ci_low"], 2) == pytest.approx(lo, abs=0.0051), key
        if hi is not None:
            assert round(r["uni_ci_high"], 2) == pytest.approx(hi, abs=0.0051), key
        if key == "aln_metastases":
            assert r["uni_p"] < 0.001  # printed "< 0.001"
        else:
            assert round(r["uni_p"], 3) == pytest.approx(p, abs=0.00051), key
    # and to 1e-6 against R's glm on the same table
    for ref in REF["table2"]:
        r = rows[ref["term"]]
        for ours, theirs in (("uni_or", "or"), ("uni_ci_low", "ci_low"), ("uni_ci_high", "ci_high"), ("uni_p", "p")):
            assert r[ours] == pytest.approx(ref[theirs], **TOL), (ref["term"], ours)
    # "0.00~Infinite" in the paper: separation flagged, no ML odds ratio, Firth's offered
    for variable in ("pathological_type", "histological_grade", "t_stage"):
        sep = t2[t2["variable"] == variable]
        assert sep["separation"].all() and sep["uni_or"].isna().all() and sep["firth_or"].notna().all(), variable


def _by_variable(folder):
    """table2.csv's first row of each variable (its variable-level p-values and decisions)."""
    return pd.read_csv(folder / "table2.csv").groupby("variable").first()


def test_tables_paper_protocol_enters_every_candidate_in_one_wald_model(paper_tables, tmp_path):
    """`--protocol paper` makes the paper's multivariable step: every variable with univariate p < 0.10
    in one model together (no collinear pair left out, no elimination), kept at Wald p < 0.05. The
    default (collinearity screen, likelihood-ratio elimination) fits a different set: the deviation."""
    cohort = tmp_path / "cohort.csv"
    pd.read_csv(ROOT / "Testing" / "R" / "data" / "table1_cohort.csv", dtype=str).to_csv(cohort, index=False)
    result = run_cli("tables", cohort, "--out", tmp_path / "out", "--schema", PAPER_SCHEMA, "--protocol", "paper")
    assert result.returncode == 0, result.stderr
    paper, default = _by_variable(tmp_path / "out"), _by_variable(paper_tables)
    entered = set(paper.index[paper["uni_variable_p"] < 0.10])
    assert len(entered) == 5  # the paper's five candidates (Table 2's univariate p < 0.1)
    assert set(paper.index[paper["multi_variable_p"].notna()]) == entered
    assert paper["removed"].isna().all()
    assert set(paper.index[paper["selected"]]) == set(paper.index[paper["multi_variable_p"] < 0.05])
    assert set(default.index[default["multi_variable_p"].notna()]) < entered  # one of a collinear pair left out
    html = (tmp_path / "out" / "table2.html").read_text(encoding="utf-8")
    assert "one multivariable model, Wald p" in html


def test_table1_counts_equal_the_papers(paper_tables):
    t1 = pd.read_csv(paper_tables / "table1.csv")
    paper = pd.read_csv(ROOT / "IMNRiskLib" / "data" / "paper_table1.csv")
    checked = 0
    for _, row in paper.iterrows():
        if row["variable"] in ("age", "tumor_location"):
            continue  # age is continuous here; location is dichotomised in this schema
        level = str(row["level"]).split(" ")[0]
        ours = t1[(t1["variable"] == row["variable"]) & (t1["level"] == level)].iloc[0]
        assert (int(ours["imn_positive"]), int(ours["imn_negative"])) == (row["imn_positive"], row["imn_negative"])
        checked += 1
    assert checked == 31
    assert (t1.loc[t1["p"].notna(), "test"].isin(["chi-square", "Fisher", "t-test", "Mann-Whitney U"])).all()
    assert (paper_tables / "table1.html").read_text(encoding="utf-8").startswith("<table")


def test_stats_json_contract(tmp_path):
    result = run_cli("stats", ROOT / "Testing" / "R" / "data" / "eval_ties.csv", "--outcome", "y", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["n"] == 150 and set(doc["scores"]) == {"a", "b", "p", "disc"}
    p = doc["scores"]["p"]
    for key in ("auc", "variance", "ci95", "youden", "brier", "calibration", "hosmer_lemeshow", "net_benefit"):
        assert key in p, key
    assert set(p["calibration"]) >= {"intercept", "slope", "citl"}
    assert set(p["hosmer_lemeshow"]) >= {"chi2", "df", "p", "groups"}
    assert len(p["net_benefit"]["thresholds"]) == 99 and len(p["net_benefit"]["treat_all"]) == 99
    assert "calibration" not in doc["scores"]["a"]  # not a probability
    assert len(doc["pairs"]) == 6 and {"a", "b", "z", "p"} <= set(doc["pairs"][0])
    ref = REF["evaluation"]["ties"]["scores"]["b"]
    assert doc["scores"]["b"]["auc"] == pytest.approx(ref["auc"], **TOL)

    def numbers_or_null(x):
        if isinstance(x, dict):
            return all(numbers_or_null(v) for v in x.values())
        if isinstance(x, list):
            return all(numbers_or_null(v) for v in x)
        return x is None or isinstance(x, (int, float, bool))
    assert numbers_or_null({k: v for k, v in doc.items() if k != "pairs"})


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.assign(a=d["a"].where(d.index != 3)), "ID P4: a: 1 missing or infinite value"),
    (lambda d: d.assign(y=d["y"].replace(1, 2)), "y: must be 0 or 1"),
    (lambda d: d.assign(y=0), "y: has one class only"),
    (lambda d: d.assign(y=[1] + [0] * (len(d) - 1)), "fewer than 2 patients in one outcome class"),
    (lambda d: d.assign(b=["x"] + list(d["b"][1:])), "ID P1: b: non-numeric value 'x'"),
])
def test_stats_bad_input_exit_2(tmp_path, mutate, message):
    d = pd.read_csv(ROOT / "Testing" / "R" / "data" / "eval_small.csv")[["y", "a", "b"]]
    d.insert(0, "ID", [f"P{i + 1}" for i in range(len(d))])
    path = tmp_path / "pred.csv"
    mutate(d).to_csv(path, index=False)
    result = run_cli("stats", path, "--outcome", "y")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr


def test_tables_refuse_to_overwrite(paper_tables):
    cohort = paper_tables.parent / "cohort.csv"
    result = run_cli("tables", cohort, "--out", paper_tables, "--schema", PAPER_SCHEMA)
    assert result.returncode == 2 and "exists; pass --force" in result.stderr
