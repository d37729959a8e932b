"""pyradiomics' first-order class with its repeated statistics computed once, to the same bits.

`radiomics.firstorder.RadiomicsFirstOrder` computes each feature on its own: the 10th and 90th
percentiles twice (their features and the robust mean absolute deviation), four percentiles and
the median with four `nanpercentile` calls and a `nanmedian` (each through numpy's per-row
`apply_along_axis`), the mean and second moment in several features. On a tumour's voxels (no NaN:
IMNRisk refuses images with NaN/Inf) numpy's plain functions add and interpolate as its nan-functions
do: `FastFirstOrder` takes the percentiles in one `np.percentile` call and each shared statistic
once. Every value is pyradiomics' to the last bit (`Testing/test_fastfirstorder.py`); with NaN among
the voxels, or voxel-based, the class is pyradiomics' own.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from radiomics.firstorder import RadiomicsFirstOrder

_PERCENTILES = (10, 25, 75, 90)


class FastFirstOrder(RadiomicsFirstOrder):
    """RadiomicsFirstOrder with percentiles, median, mean, moments and energy each computed once."""

    __module__ = "radiomics.firstorder"  # pyradiomics names its class loggers by module

    def _initCalculation(self, voxelCoordinates=None) -> None:
        super()._initCalculation(voxelCoordinates)
        voxels = self.targetVoxelArray
        self._plain = voxelCoordinates is None and voxels.size > 0 and not np.isnan(voxels).any()
        self._memo: Dict[object, np.ndarray] = {}

    def _once(self, key, compute) -> np.ndarray:
        """A statistic computed on first use, a copy on each (pyradiomics edits some in place)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key].copy()

    def _percentile(self, q: int) -> np.ndarray:
        """nanpercentile(voxels, q, axis=1): the four percentiles from one partition of the voxels."""
        rows = self._once("percentiles", lambda: np.percentile(self.targetVoxelArray, _PERCENTILES, axis=1))
        return rows[_PERCENTILES.index(q)]

    def _mean(self) -> np.ndarray:
        return self._once("mean", lambda: np.mean(self.targetVoxelArray, 1, keepdims=True))

    def _central_moment(self, moment: int) -> np.ndarray:
        """pyradiomics' _moment(voxels, moment) for 2, 3, 4."""
        return self._once(("moment", moment),
                          lambda: np.mean(np.power(self.targetVoxelArray - self._mean(), moment), 1))

    def get10PercentileFeatureValue(self):
        return self._percentile(10) if self._plain else super().get10PercentileFeatureValue()

    def get90PercentileFeatureValue(self):
        return self._percentile(90) if self._plain else super().get90PercentileFeatureValue()

    def getInterquartileRangeFeatureValue(self):
        if not self._plain:
            return super().getInterquartileRangeFeatureValue()
        return self._percentile(75) - self._percentile(25)

    def getMedianFeatureValue(self):
        return np.median(self.targetVoxelArray, 1) if self._plain else super().getMedianFeatureValue()

    def getMeanFeatureValue(self):
        return self._mean()[:, 0] if self._plain else super().getMeanFeatureValue()

    def getEnergyFeatureValue(self):
        if not self._plain:
            return super().getEnergyFeatureValue()
        return self._once("energy", lambda: np.sum((self.targetVoxelArray + self.voxelArrayShift) ** 2, 1))

    def getRootMeanSquaredFeatureValue(self):
        if not self._plain:
            return super().getRootMeanSquaredFeatureValue()
        return np.sqrt(self.getEnergyFeatureValue() / float(self.targetVoxelArray.shape[1]))

    def getMinimumFeatureValue(self):
        return np.min(self.targetVoxelArray, 1) if self._plain else super().getMinimumFeatureValue()

    def getMaximumFeatureValue(self):
        return np.max(self.targetVoxelArray, 1) if self._plain else super().getMaximumFeatureValue()

    def getRangeFeatureValue(self):
        if not self._plain:
            return super().getRangeFeatureValue()
        return np.max(self.targetVoxelArray, 1) - np.min(self.targetVoxelArray, 1)

    def getMeanAbsoluteDeviationFeatureValue(self):
        if not self._plain:
            return super().getMeanAbsoluteDeviationFeatureValue()
        return np.mean(np.absolute(self.targetVoxelArray - self._mean()), 1)

    def getRobustMeanAbsoluteDeviationFeatureValue(self):
        """pyradiomics' formula: the voxels outside [P10, P90] set to 0 and left out of the count, as
        nanmean does with the NaN pyradiomics puts there (the same sums, in the same order)."""
        if not self._plain:
            return super().getRobustMeanAbsoluteDeviationFeatureValue()
        voxels = self.targetVoxelArray
        outside = ((voxels - self._percentile(10)[:, None]) < 0) | ((voxels - self._percentile(90)[:, None]) > 0)
        count = np.sum(~outside, 1, dtype=np.intp)
        kept = np.where(outside, 0.0, voxels)
        mean = np.true_divide(np.sum(kept, 1, keepdims=True), count[:, None])
        return np.true_divide(np.sum(np.where(outside, 0.0, np.absolute(voxels - mean)), 1), count)

    def getSkewnessFeatureValue(self):
        if not self._plain:
            return super().getSkewnessFeatureValue()
        m2, m3 = self._central_moment(2), self._central_moment(3)
        m2[m2 == 0] = 1  # pyradiomics' flat region guard, as it is
        m3[m2 == 0] = 0
        return m3 / m2 ** 1.5

    def getKurtosisFeatureValue(self):
        if not self._plain:
            return super().getKurtosisFeatureValue()
        m2, m4 = self._central_moment(2), self._central_moment(4)
        m2[m2 == 0] = 1
        m4[m2 == 0] = 0
        return m4 / m2 ** 2.0

    def getVarianceFeatureValue(self):
        return np.std(self.targetVoxelArray, 1) ** 2 if self._plain else super().getVarianceFeatureValue()
