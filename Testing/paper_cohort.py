"""A 124-patient table that reproduces the paper's Table 1 counts exactly (by IMN status).

Only each variable's 2 x k table is known, not the joint distribution across variables, so each
column is filled independently: patients 1-21 are IMN-positive, and within each outcome group the
levels are laid out in Table 1 order. Univariate statistics depend only on those 2 x k tables.
"""

from __future__ import annotations

import pandas as pd

from IMNRiskLib.app.synth import table1_counts

N_POSITIVE, N_NEGATIVE = 21, 103


def build() -> pd.DataFrame:
    table = table1_counts()
    frame = pd.DataFrame({"ID": [f"T1-{i + 1:03d}" for i in range(N_POSITIVE + N_NEGATIVE)],
                          "IMN": [1] * N_POSITIVE + [0] * N_NEGATIVE})
    for variable, rows in table.groupby("variable", sort=False):
        levels = [str(l).split(" ")[0] for l in rows["level"]]
        if variable == "age":
            levels = ["45", "60"]  # stand-ins for the groups <50 / >50 (ages are not published)
        column = []
        for count_col in ("imn_positive", "imn_negative"):
            for level, count in zip(levels, rows[count_col]):
                column += [level] * int(count)
        frame[variable] = column
    return frame


if __name__ == "__main__":
    import sys
    build().to_csv(sys.argv[1] if len(sys.argv) > 1 else sys.stdout, index=False)
