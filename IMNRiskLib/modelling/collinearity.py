"""Collinearity of candidate clinical factors (Table 2's screen): Cramer's V between discrete
factors, Spearman between ordered ones, on the factors encoded once for every resample."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from IMNRiskLib.inputs.schema import ClinicalSchema, Variable
from IMNRiskLib.stats.logistic import term_variable, with_intercept
from IMNRiskLib.stats.ranks import average_ranks


COLLINEAR = 0.7  # |Cramer's V| or |Spearman| above which two candidate factors are one too many


def cramers_v(table: np.ndarray) -> float:
    """Cramer's V of a contingency table (no continuity correction); 0 when a margin has one level."""
    table = np.asarray(table, float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    k = min(table.shape) - 1
    if k < 1:
        return 0.0
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())  # Pearson's, as stats.chi2_contingency
    return float(math.sqrt(chi2 / (n * k)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson's r of the average ranks, as stats.spearmanr) of two varying arrays."""
    return _rank_correlation(average_ranks(a), average_ranks(b))


def _rank_correlation(ra: np.ndarray, rb: np.ndarray) -> float:
    """Pearson's r of two rank vectors."""
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float(ra @ rb / math.sqrt((ra @ ra) * (rb @ rb)))


DISCRETE = ("binary", "categorical", "ordinal")   # Cramer's V between two of these


ORDERED = ("binary", "ordinal", "continuous")     # Spearman between two of these


@dataclass
class EncodedFrame:
    """Clinical variables as arrays, encoded once per table: for each variable the rows where it
    is known, its design columns (all rows; NaN where missing), its terms, its known values and,
    when discrete, a group code per row (its distinct values as text, as pd.crosstab groups them;
    -1 where missing)."""

    present: Dict[str, np.ndarray]
    design: Dict[str, np.ndarray]
    terms: Dict[str, List[str]]
    values: Dict[str, np.ndarray]
    groups: Dict[str, Tuple[np.ndarray, int]]
    types: Dict[str, str]
    ranks: Dict[str, np.ndarray] = field(default_factory=dict)  # average ranks over all rows, when asked
    rows: Dict[str, np.ndarray] = field(default_factory=dict)   # every row's value (object), for `take`

    def take(self, idx: np.ndarray) -> "EncodedFrame":
        """The encoding of the rows idx (repeats allowed), as `encode_frame` of those rows gives it:
        the group codes stay the whole table's, which is the same crosstab once `cramers_v` drops
        the levels these rows lack (the codes follow the texts' sorted order either way)."""
        present = {n: p[idx] for n, p in self.present.items()}
        values = {n: v[idx][present[n]] for n, v in self.rows.items()}
        return EncodedFrame(present, {n: d[idx] for n, d in self.design.items()}, self.terms, values,
                            {n: (code[idx], count) for n, (code, count) in self.groups.items()}, self.types,
                            rows={n: v[idx] for n, v in self.rows.items()})


def encode_frame(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str]) -> EncodedFrame:
    """`EncodedFrame` of the named variables of a clinical table (each distinct value encoded once,
    by `Variable.encode` as `design` does)."""
    enc = EncodedFrame({}, {}, {}, {}, {}, {})
    for name in names:
        var = schema[name]
        column = frame[name].to_numpy(dtype=object)
        known = ~pd.isna(column)
        values = column[known]
        index: Dict[Tuple[type, object], int] = {}
        inverse = np.fromiter((index.setdefault((type(v), v), len(index)) for v in values), np.int64, len(values))
        width = len(var.terms())
        rows = np.array([var.encode(v) for _, v in index], dtype=float).reshape(len(index), width)
        full = np.full((len(frame), width), np.nan)
        full[known] = rows[inverse]
        enc.present[name], enc.design[name], enc.terms[name] = known, full, var.terms()
        enc.values[name], enc.types[name], enc.rows[name] = values, var.type, column
        if var.type in DISCRETE:
            texts = [str(v) for _, v in index]
            order = {t: i for i, t in enumerate(sorted(set(texts)))}
            code = np.full(len(frame), -1, dtype=np.int64)
            code[known] = np.array([order[t] for t in texts], dtype=np.int64).reshape(-1)[inverse]
            enc.groups[name] = (code, len(order))
    return enc


def factor_association(a: pd.Series, b: pd.Series, var_a: Variable, var_b: Variable) -> Tuple[str, float]:
    """How strongly two clinical variables go together (pairwise complete cases): the larger of
    Cramer's V (both discrete) and |Spearman| on the coded values (both ordered: binary, ordinal,
    continuous); ("none", 0) for a categorical against a continuous variable."""
    frame = pd.DataFrame({"a": a.to_numpy(), "b": b.to_numpy()})
    schema = ClinicalSchema(variables=(replace(var_a, name="a"), replace(var_b, name="b")))
    return encoded_association(encode_frame(frame, schema, ["a", "b"]), "a", "b")


def encoded_association(enc: EncodedFrame, a: str, b: str) -> Tuple[str, float]:
    """`factor_association` of two variables of an `EncodedFrame`."""
    known = enc.present[a] & enc.present[b]
    found: List[Tuple[str, float]] = [("none", 0.0)]
    if enc.types[a] in DISCRETE and enc.types[b] in DISCRETE:
        (ca, na), (cb, nb) = enc.groups[a], enc.groups[b]
        cells = np.bincount(ca[known] * nb + cb[known], minlength=na * nb).reshape(na, nb)
        found.append(("Cramer's V", cramers_v(cells)))
    if enc.types[a] in ORDERED and enc.types[b] in ORDERED:
        xa, xb = enc.design[a][known, 0], enc.design[b][known, 0]
        if len(xa) and np.ptp(xa) > 0 and np.ptp(xb) > 0:
            found.append(("|Spearman|", abs(_rank_correlation(_ranks(enc, a, known), _ranks(enc, b, known)))))
    return max(found, key=lambda t: t[1])


def _ranks(enc: EncodedFrame, name: str, rows: np.ndarray) -> np.ndarray:
    """Average ranks of a variable's coded values in `rows`; those of all rows computed once."""
    if not rows.all():
        return average_ranks(enc.design[name][rows, 0])
    if name not in enc.ranks:
        enc.ranks[name] = average_ranks(enc.design[name][:, 0])
    return enc.ranks[name]


def pair_associations(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str]
                      ) -> List[Dict[str, object]]:
    """`factor_association` of every pair of the named variables (what the collinearity screen saw)."""
    return encoded_pairs(encode_frame(frame, schema, names), names)


def encoded_pairs(enc: EncodedFrame, names: Sequence[str]) -> List[Dict[str, object]]:
    """`pair_associations` on an `EncodedFrame`."""
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            measure, value = encoded_association(enc, a, b)
            out.append({"a": a, "b": b, "measure": measure, "value": value})
    return out


def screen_collinear(frame: pd.DataFrame, schema: ClinicalSchema, names: Sequence[str],
                     univariate_p: Dict[str, float], threshold: Optional[float] = COLLINEAR
                     ) -> Tuple[List[Dict[str, object]], List[str]]:
    """Collinear candidates before the multivariable step: visiting variables strongest first
    (univariate p), one associated above `threshold` with a kept one is left out, and so is one
    that makes the design rank-deficient. Returns the pairs (kept, dropped, measure, value,
    their univariate p) and the kept variables in their original order."""
    return encoded_screen(encode_frame(frame, schema, names), names, univariate_p, threshold)


def encoded_screen(enc: EncodedFrame, names: Sequence[str], univariate_p: Dict[str, float],
                    threshold: Optional[float]) -> Tuple[List[Dict[str, object]], List[str]]:
    """`screen_collinear` on an `EncodedFrame`."""
    # strongest first; p equal to 9 digits (e.g. two variables with the same counts) are a tie, broken
    # by the variables' order rather than by rounding noise
    order = sorted(names, key=lambda n: (float(f"{univariate_p[n]:.9g}"), list(names).index(n)))
    kept: List[str] = []
    pairs: List[Dict[str, object]] = []
    for name in order:
        hit = None
        if threshold is not None:
            for other in kept:
                measure, value = encoded_association(enc, name, other)
                if value > threshold:
                    hit = {"kept": other, "dropped": name, "measure": measure, "value": value}
                    break
        if hit is None and kept:
            hit = _encoded_rank_deficient(enc, kept, name)
        if hit is None:
            kept.append(name)
        else:
            pairs.append({**hit, "p_kept": univariate_p.get(hit["kept"]), "p_dropped": univariate_p[name]})
    return pairs, [n for n in names if n in kept]


def _encoded_rank_deficient(enc: EncodedFrame, kept: Sequence[str], name: str) -> Optional[Dict[str, object]]:
    """A pair record when adding `name` to the kept variables leaves the design rank-deficient."""
    X, terms = complete_design(enc, list(kept) + [name])[1:]
    Xi = with_intercept(X)
    if np.linalg.matrix_rank(Xi) == Xi.shape[1] and any(term_variable(t) == name for t in terms):
        return None
    return {"kept": ", ".join(kept), "dropped": name, "measure": "rank-deficient design", "value": None}


def complete_design(enc: EncodedFrame, names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Complete cases of the named variables: (their row mask, `varying` design, its terms), as
    `varying(design(frame.loc[known], schema, names))`."""
    known = np.logical_and.reduce([enc.present[n] for n in names])
    X, terms = varying_array(np.column_stack([enc.design[n][known] for n in names]),
                              [t for n in names for t in enc.terms[n]])
    return known, X, terms


def pair_note(pair: Dict[str, object]) -> str:
    """One line for the notes: which of a collinear pair was left out and why."""
    value = f" {pair['value']:.2f}" if pair["value"] is not None else ""
    kept_p = f" (univariate p {pair['p_kept']:.3g})" if pair["p_kept"] is not None else ""
    return (f"{pair['dropped']} and {pair['kept']} collinear ({pair['measure']}{value}): {pair['kept']} kept"
            f"{kept_p}, {pair['dropped']} (p {pair['p_dropped']:.3g}) left out before the multivariable step")


def varying_array(X: np.ndarray, terms: List[str]) -> Tuple[np.ndarray, List[str]]:
    """`varying` on an array with its column names."""
    if not len(X):
        keep = np.zeros(X.shape[1], bool)
    elif not np.isnan(X).any():  # the same answer without nanmax's warnings machinery (~10x faster)
        keep = X.max(axis=0) > X.min(axis=0)
    else:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            keep = np.nanmax(X, axis=0) > np.nanmin(X, axis=0)
    return X[:, keep], [t for t, k in zip(terms, keep) if k]
