"""The one JSON cleaner: any result (numpy scalars, NaN, tuples, paths) as the plain values a JSON
file holds, numbers or null, for every file IMNRisk writes."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_clean(obj: Any) -> Any:
    """Plain JSON values: numpy scalars -> Python numbers, NaN/inf -> None, tuples -> lists, keys ->
    strings (as json.dumps writes them), any other object -> its `item()` or its text."""
    if isinstance(obj, dict):
        return {_key(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if hasattr(obj, "item"):
        return json_clean(obj.item())
    return str(obj)


def _key(key: Any) -> str:
    """A dict key as json.dumps writes it (1 -> "1", True -> "true", None -> "null")."""
    return key if isinstance(key, str) else next(iter(json.loads(json.dumps({key: 0}))))
