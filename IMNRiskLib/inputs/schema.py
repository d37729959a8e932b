"""Clinical schema: which clinical variables exist, their type, levels and coding.

The schema drives manifest validation, Table 1/Table 2, the model's design matrix, the Slicer
form and `predict --clinical`. A default for the paper's variables ships in `schemas/paper.yaml`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from IMNRiskLib.core.errors import InputError, InputErrors
from IMNRiskLib.core.files import read_yaml

DEFAULT_SCHEMA = Path(__file__).parents[1] / "schemas" / "paper.yaml"
VARIABLE_TYPES = ("binary", "categorical", "ordinal", "continuous")
# The keys a schema document may hold (a typo such as `levles:` is refused, not silently ignored).
SCHEMA_KEYS = ("outcome", "variables")
OUTCOME_KEYS = ("name", "label", "levels")
VARIABLE_KEYS = ("name", "type", "levels", "reference", "label", "unit", "min", "max", "aliases")


@dataclass(frozen=True)
class Variable:
    """One clinical variable and how it enters a logistic model."""

    name: str
    type: str
    levels: tuple = ()
    reference: Optional[str] = None
    label: Optional[str] = None
    unit: Optional[str] = None
    min: Optional[float] = None
    max: Optional[float] = None
    aliases: tuple = ()  # (raw value, level) pairs: several manifest values coded as one level

    @property
    def title(self) -> str:
        """Human-readable name (label, else name)."""
        return self.label or self.name

    def terms(self) -> List[str]:
        """Names of the design-matrix columns this variable becomes."""
        if self.type == "categorical":
            return [f"{self.name}[{lev}]" for lev in self.levels if lev != self.reference]
        return [self.name]

    def parse(self, raw: Any) -> Any:
        """Turn a raw manifest/CLI value into a level (str) or a float; None when missing.

        Raises ValueError with the allowed values when the value is not valid.
        """
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None
        text = str(raw).strip()
        if text == "" or text.upper() in ("NA", "NAN"):
            return None
        if self.type == "continuous":
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"'{text}' is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"'{text}' is not a finite number")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                lo, hi = ("-inf" if self.min is None else f"{self.min:g}"), ("inf" if self.max is None else f"{self.max:g}")
                raise ValueError(f"{value:g} is outside the plausible range [{lo}, {hi}]"
                                 + (f" {self.unit}" if self.unit else ""))
            return value
        for level in self.levels:
            if text == level or text.lower() == str(level).lower():
                return level
        for raw_value, level in self.aliases:
            if text.lower() == raw_value.lower():
                return level
        # ordinal/binary variables may also be given by their code 0..k-1
        if self.type in ("ordinal", "binary") and text.isdigit() and int(text) < len(self.levels):
            return self.levels[int(text)]
        allowed = list(map(str, self.levels)) + [raw for raw, _ in self.aliases]
        raise ValueError(f"unknown value '{text}'; allowed: {', '.join(allowed)}")

    def encode(self, level: Any) -> List[float]:
        """Design-matrix values of one parsed value (NaN when missing)."""
        if level is None:
            return [math.nan] * len(self.terms())
        if self.type == "continuous":
            return [float(level)]
        if self.type == "categorical":
            return [1.0 if level == lev else 0.0 for lev in self.levels if lev != self.reference]
        return [float(self.levels.index(level))]


@dataclass(frozen=True)
class ClinicalSchema:
    """The outcome and the clinical variables of a cohort."""

    outcome: str = "IMN"
    variables: tuple = field(default_factory=tuple)
    source: Optional[str] = None

    def __getitem__(self, name: str) -> Variable:
        for var in self.variables:
            if var.name == name:
                return var
        raise KeyError(name)

    @property
    def names(self) -> List[str]:
        """Variable names in schema order."""
        return [v.name for v in self.variables]

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (the YAML/JSON form), e.g. for the model file."""
        out = []
        for v in self.variables:
            d = {"name": v.name, "type": v.type}
            for key in ("levels", "reference", "label", "unit", "min", "max"):
                value = getattr(v, key)
                if value not in (None, ()):
                    d[key] = list(value) if key == "levels" else value
            if v.aliases:
                d["aliases"] = dict(v.aliases)
            out.append(d)
        return {"outcome": {"name": self.outcome}, "variables": out}

    def subset(self, names: Sequence[str]) -> "ClinicalSchema":
        """The schema restricted to `names` (in schema order)."""
        return ClinicalSchema(self.outcome, tuple(v for v in self.variables if v.name in names), self.source)


def schema_from_dict(data: Dict[str, Any], source: str = "<schema>") -> ClinicalSchema:
    """Build and check a schema from its YAML/JSON form; every problem is reported at once."""
    errors: List[InputError] = []
    if not isinstance(data, dict) or "variables" not in data:
        raise InputError("a clinical schema needs 'outcome:' and 'variables:'", file=source)
    _check_keys(data, SCHEMA_KEYS, source, "")
    outcome = data.get("outcome") or {}
    if isinstance(outcome, dict):
        _check_keys(outcome, OUTCOME_KEYS, source, "outcome: ")
    outcome_name = outcome.get("name", "IMN") if isinstance(outcome, dict) else outcome
    if not isinstance(outcome_name, str) or not outcome_name.strip():
        raise InputError("outcome name must be a non-empty text", file=source, field="outcome")
    if not isinstance(data["variables"] or [], list):
        raise InputError("'variables:' must be a list", file=source, field="variables")
    variables = []
    seen = set()
    for i, item in enumerate(data["variables"] or []):
        where = f"variables[{i}]"
        if not isinstance(item, dict) or "name" not in item or "type" not in item:
            errors.append(InputError("each variable needs 'name' and 'type'", file=source, field=where))
            continue
        name, vtype = str(item["name"]), str(item["type"])
        where = f"variable {name}" if isinstance(item["name"], (str, int)) and not isinstance(item["name"], bool) \
            else f"variables[{i}]"
        key, problem = _field_problem(item)
        if not problem and not name.strip():
            key, problem = "name", "empty name"
        if problem:
            errors.append(InputError(problem, file=source, field=f"{where}: {key}"))
            continue
        if name in seen:
            errors.append(InputError("defined twice", file=source, field=where))
        seen.add(name)
        if vtype not in VARIABLE_TYPES:
            errors.append(InputError(f"type '{vtype}' is not one of {', '.join(VARIABLE_TYPES)}",
                                     file=source, field=where))
            continue
        levels = tuple(str(x) for x in item.get("levels") or ())
        reference = item.get("reference")
        if vtype != "continuous":
            if len(levels) < 2:
                errors.append(InputError("needs at least two levels", file=source, field=where))
            if vtype == "binary" and len(levels) != 2:
                errors.append(InputError("a binary variable has exactly two levels", file=source, field=where))
            if len(set(levels)) != len(levels):
                errors.append(InputError("levels repeat", file=source, field=where))
        if vtype == "categorical":
            reference = str(reference) if reference is not None else (levels[0] if levels else None)
            if reference not in levels:
                errors.append(InputError(f"reference '{reference}' is not one of its levels",
                                         file=source, field=where))
        else:
            reference = None
        aliases = tuple((str(k), str(v)) for k, v in (item.get("aliases") or {}).items())
        for raw, level in aliases:
            if level not in levels:
                errors.append(InputError(f"alias '{raw}' points to '{level}', which is not a level",
                                         file=source, field=where))
        variables.append(Variable(name=name, type=vtype, levels=levels, reference=reference,
                                  label=None if item.get("label") is None else str(item["label"]),
                                  unit=None if item.get("unit") is None else str(item["unit"]),
                                  min=item.get("min"), max=item.get("max"), aliases=aliases))
    if errors:
        raise InputErrors(errors)
    return ClinicalSchema(outcome=outcome_name, variables=tuple(variables), source=source)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not (isinstance(value, float) and not math.isfinite(value))


def _check_keys(mapping: Dict[Any, Any], known: Sequence[str], source: str, prefix: str) -> None:
    """Every key a text and a known one; else an InputError naming the key."""
    for key in mapping:
        if not isinstance(key, str):
            raise InputError(f"key {key!r} is not a name (keys are texts)", file=source, field=f"{prefix}{key}")
        if key not in known:
            raise InputError(f"unknown key (known: {', '.join(known)})", file=source, field=prefix + key)


def _field_problem(item: Dict[str, Any]) -> Tuple[str, str]:
    """(key, what is wrong with its type) for a variable's fields; ('', '') when nothing."""
    for key in item:
        if not isinstance(key, str):
            return str(key), "is not a name (keys are texts)"
        if key not in VARIABLE_KEYS:
            return key, f"unknown key (known: {', '.join(VARIABLE_KEYS)})"
    if not isinstance(item["name"], (str, int)) or isinstance(item["name"], bool):
        return "name", "must be a text"
    if not isinstance(item["type"], str):
        return "type", f"must be one of {', '.join(VARIABLE_TYPES)}"
    levels = item.get("levels")
    if levels is not None and (not isinstance(levels, list) or not all(_is_scalar(x) for x in levels)):
        return "levels", "must be a list of values"
    if item.get("reference") is not None and not _is_scalar(item["reference"]):
        return "reference", "must be one value"
    aliases = item.get("aliases")
    if aliases is not None and (not isinstance(aliases, dict)
                                or not all(_is_scalar(k) and _is_scalar(v) for k, v in aliases.items())):
        return "aliases", "must map values to levels"
    for key in ("min", "max"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            return key, "must be a finite number"
    if item.get("min") is not None and item.get("max") is not None and item["min"] > item["max"]:
        return "min", "is larger than 'max'"
    for key in ("label", "unit"):
        if item.get(key) is not None and not _is_scalar(item[key]):
            return key, "must be a text"
    return "", ""


def load_schema(path: Optional[str] = None) -> ClinicalSchema:
    """Read a schema YAML (the paper's default when `path` is None)."""
    path = Path(path) if path else DEFAULT_SCHEMA
    return schema_from_dict(read_yaml(path, "schema file"), source=str(path))
