"""One recursive comparison for the equality tests (fast code against the reference code)."""

from __future__ import annotations

import math

import pytest

TOL = 1e-8


def assert_same(a, b, path: str = "", ordered_keys: bool = False, tol: float = TOL) -> None:
    """Recursive equality of two JSON-like values, floats to `tol` (relative or absolute); dict
    keys compared as sets, or in order with `ordered_keys`."""
    if isinstance(a, dict):
        same_keys = list(a) == list(b) if ordered_keys else set(a) == set(b)
        assert isinstance(b, dict) and same_keys, f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}", ordered_keys, tol)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, z) in enumerate(zip(a, b)):
            assert_same(x, z, f"{path}[{i}]", ordered_keys, tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a} vs {b}"
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{path}: {a} vs {b}"
        else:
            assert a == pytest.approx(b, rel=tol, abs=tol), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
