"""`imnrisk tables`: Table 1 and Table 2 of a cohort as CSV and HTML fragments, all four or none."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Optional

import pandas as pd

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import safe_outputs, write_text
from IMNRiskLib.inputs.cohort import read_cohort
from IMNRiskLib.inputs.schema import load_schema
from IMNRiskLib.modelling.clinical import ENTRY_P, KEEP_P, table1, table2
from IMNRiskLib.modelling.collinearity import COLLINEAR
from IMNRiskLib.stats.evaluation import check_outcome

SELECTED = {"lrt": "backward elimination, likelihood-ratio", "wald": "one multivariable model, Wald"}


def _html(frame: pd.DataFrame, caption: str) -> str:
    """An HTML fragment of a table (for the report)."""
    html = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}", border=0,
                         classes="imnrisk-table")
    return html.replace("<thead>", f"<caption>{escape(caption)}</caption>\n  <thead>", 1) + "\n"


def write_tables(cohort_path, out_dir, schema_path=None, entry_p: float = ENTRY_P, keep_p: float = KEEP_P,
                 force: bool = False, test: str = "lrt", collinear: Optional[float] = COLLINEAR):
    """`imnrisk tables`: table1.csv, table2.csv and their HTML fragments in out_dir. `test` and `collinear`
    are the protocol's multivariable step (`table2`): the default's, or the paper's (Wald, no screen)."""
    out = Path(out_dir)
    names = ["table1.csv", "table2.csv", "table1.html", "table2.html"]
    outputs = safe_outputs([out / n for n in names], [cohort_path, schema_path], force, folder=out)
    schema = load_schema(schema_path)
    cohort = read_cohort(cohort_path, schema, need_clinical=True, need_outcome=True, need_imaging=False)
    frame, y = cohort.clinical_frame(), cohort.outcome()
    labelled = y.notna()
    frame, y = frame[labelled], y[labelled]
    try:
        check_outcome(y, schema.outcome)
    except InputError as exc:
        raise exc.located(file=str(cohort_path)) from None
    t1 = table1(frame, y, schema)
    t2 = table2(frame, y, schema, entry_p, keep_p, test=test, collinear=collinear)
    with outputs.writing() as stage:  # the four tables or none
        for name, table in (("table1.csv", t1), ("table2.csv", t2.table)):
            table.to_csv(stage / name, index=False)
        write_text(stage / "table1.html", _html(t1, f"Table 1. Characteristics by {schema.outcome} status "
                                                    f"(n = {len(y)}, events = {int(y.sum())})"))
        notes = "".join(f"<li>{n}</li>" for n in t2.notes)
        write_text(stage / "table2.html", _html(t2.table, "Table 2. Univariate and multivariable logistic regression")
                   + (f"<ul class='notes'>{notes}</ul>\n" if notes else "")
                   + f"<p>Entered (univariate p &lt; {entry_p:g}): {', '.join(t2.entered) or 'none'}; "
                   f"selected ({SELECTED[test]} p &lt; {keep_p:g}): "
                   f"{', '.join(t2.selected) or 'none'}.</p>\n")
    return [out / n for n in names]
