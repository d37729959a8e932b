"""One gray-level discretisation per image type, shared by the feature classes that use it.

pyradiomics bins the image anew in each class it computes on an image type (first order, GLCM,
GLRLM, GLSZM, GLDM, NGTDM: six times the same histogram and digitize over the same ROI), a tenth
of a phantom case's extraction. Inside `shared_binning()`, the first class bins with pyradiomics'
own `_applyBinning`; the others get a copy of its result. Only IMNRisk's extractors use these
classes (`features._compute_with_fast_classes`); pyradiomics' registry stays its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Dict, Iterator, Optional

import numpy as np

_BINNED: contextvars.ContextVar[Optional[Dict[tuple, tuple]]] = contextvars.ContextVar("imnrisk_binned", default=None)
_BINNING_SETTINGS = ("binWidth", "binCount", "binEdges")


@contextlib.contextmanager
def shared_binning() -> Iterator[None]:
    """Within this block, classes made by `sharing_binning` bin each (image, mask) once."""
    token = _BINNED.set({})
    try:
        yield
    finally:
        _BINNED.reset(token)


class _SharedBinning:
    """Mixin: pyradiomics' `_applyBinning`, looked up in the block's cache first; and the class's
    feature names found once (pyradiomics inspects the class's members at every instance)."""

    @classmethod
    def getFeatureNames(cls) -> Dict[str, bool]:
        return dict(_feature_names(cls))

    def _applyBinning(self, matrix):
        cache = _BINNED.get()
        if cache is None or self.voxelBased:
            return super()._applyBinning(matrix)
        key = (id(self.inputImage), id(self.inputMask), self.label,
               tuple(repr(self.settings.get(k)) for k in _BINNING_SETTINGS))
        if key not in cache:
            binned = super()._applyBinning(matrix)
            cache[key] = (binned, self.coefficients["grayLevels"], self.coefficients["Ng"])
        binned, gray_levels, ng = cache[key]
        self.coefficients["grayLevels"], self.coefficients["Ng"] = gray_levels.copy(), ng
        return np.array(binned, copy=True)  # each class owns its matrix, as with pyradiomics


@functools.lru_cache(maxsize=None)
def _feature_names(cls: type) -> Dict[str, bool]:
    """pyradiomics' getFeatureNames of a class made by `sharing_binning`: {name: deprecated}."""
    return super(_SharedBinning, cls).getFeatureNames()


@functools.lru_cache(maxsize=None)
def sharing_binning(cls: type) -> type:
    """`cls` (a pyradiomics feature class) with the shared binning."""
    return type(cls.__name__, (_SharedBinning, cls), {"__module__": cls.__module__})
