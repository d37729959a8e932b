"""pyradiomics' feature values as plain floats, for the extractor and the IBSI variants alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from IMNRiskLib.core.errors import InputError


def real_value(name: str, value: Any) -> float:
    """A feature value as a float; complex only when its imaginary part is exactly zero.

    numpy >= 2.5's eigvals returns complex128, so five shape features arrive as complex numbers.
    """
    if np.iscomplexobj(value):
        number = complex(value)
        if number.imag != 0:
            raise InputError(f"pyradiomics returned the complex value {number!r}; "
                             "only a zero imaginary part can be taken as real", field=name)
        return float(number.real)
    return float(value)
