"""pyradiomics' GLCM class with four of its steps computed faster, by the same formulas.

A quarter of an 851-feature extraction went into three spots of `radiomics.glcm.RadiomicsGLCM`:
the sum and difference distributions p_{x+y}, p_{x-y} (a boolean mask over the whole matrix for each
of 2 Ng values), the Q matrix of the Maximal Correlation Coefficient (a Python loop over Ng
four-dimensional products) and Cluster Shade / Prominence (4-D powers of (i + j - ux - uy)).
`FastGLCM` computes them with weighted bincounts, matrix products and the sum distribution instead, and MCC's
eigenvalues from a symmetric matrix; every other step and feature is pyradiomics' own. The values differ from pyradiomics' only by the order of
floating-point additions (`Testing/test_fastglcm.py` compares every feature on the real breast
MRI and phantom cases). pyradiomics itself is left untouched: only extractors made by
`features.make_extractor` use this class.
"""

from __future__ import annotations

import functools
from typing import Dict, Tuple

import numpy as np
from radiomics.glcm import RadiomicsGLCM

from IMNRiskLib.radiomics.fastfirstorder import FastFirstOrder


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController  # start-up time: threadpoolctl loads only when used
    return ThreadpoolController()  # ~1 ms to find the BLAS libraries: once per process


def one_blas_thread():
    """A context in which BLAS runs on one thread: these products are small, and OpenBLAS' threads
    spin after each one (in-process extraction took twice the CPU with them, 24.8 s against 12.4 s
    for 40 phantom cases, and longer in wall time too)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _sums_by_value(cells: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """sum over the GLCM's cells c with values[c] == k, for k in 0..count - 1: cells (Nv, Ng'^2, angles)
    -> (Nv, count, angles). One weighted bincount (pyradiomics: a boolean mask over the matrix for each k;
    a 0/1 matrix product took ten times as long): each sum adds its cells in the matrix's order."""
    nv, n_cells, angles = cells.shape
    bins = (np.arange(nv)[:, None, None] * count + values[None, :, None]) * angles + np.arange(angles)
    return np.bincount(bins.ravel(), weights=cells.ravel(), minlength=nv * count * angles).reshape(nv, count, angles)


class FastGLCM(RadiomicsGLCM):
    """RadiomicsGLCM with p_{x+y}, p_{x-y}, MCC's Q and Cluster Shade / Prominence by matrix algebra."""

    __module__ = "radiomics.glcm"  # pyradiomics names its class loggers by module: logs as pyradiomics' GLCM

    def _calculateCoefficients(self) -> None:
        """pyradiomics' coefficients; p_{x+y} and p_{x-y} as one weighted bincount each
        (pyradiomics: a boolean-masked sum over the matrix per value of k)."""
        ng = self.coefficients["Ng"]
        eps = np.spacing(1)
        gray = self.coefficients["grayLevels"].astype("float")
        i, j = np.meshgrid(gray, gray, indexing="ij", sparse=True)
        p = self.P_glcm  # (Nv, Ng', Ng', angles)
        px = p.sum(2, keepdims=True)
        py = p.sum(1, keepdims=True)
        ux = np.sum(i[None, :, :, None] * p, (1, 2), keepdims=True)
        uy = np.sum(j[None, :, :, None] * p, (1, 2), keepdims=True)
        cells = p.reshape(p.shape[0], -1, p.shape[3])  # (Nv, Ng'^2, angles)
        k_sum = (i + j).astype(np.int64).ravel() - 2  # i + j, 2..2 Ng, as 0..2 Ng - 2
        k_diff = np.abs(i - j).astype(np.int64).ravel()  # |i - j|, 0..Ng - 1
        self.coefficients.update({
            "eps": eps, "i": i, "j": j,
            "kValuesSum": np.arange(2, (ng * 2) + 1, dtype="float"),
            "kValuesDiff": np.arange(0, ng, dtype="float"),
            "px": px, "py": py, "ux": ux, "uy": uy,
            "pxAddy": _sums_by_value(cells, k_sum, 2 * ng - 1),  # (Nv, 2 Ng - 1, angles)
            "pxSuby": _sums_by_value(cells, k_diff, ng),  # (Nv, Ng, angles)
            "HXY": (-1) * np.sum(p * np.log2(p + eps), (1, 2)),
        })

    def _centred_sum_moment(self, power: int) -> np.ndarray:
        """sum_ij (i + j - ux - uy)^power p(i, j), as sum_k (k - ux - uy)^power p_{x+y}(k)."""
        c = self.coefficients
        centred = c["kValuesSum"][None, :, None] - c["ux"][:, 0] - c["uy"][:, 0]  # (Nv, 2 Ng - 1, angles)
        return np.nanmean(np.sum(c["pxAddy"] * centred ** power, 1), 1)

    def getClusterProminenceFeatureValue(self) -> np.ndarray:
        return self._centred_sum_moment(4)

    def getClusterShadeFeatureValue(self) -> np.ndarray:
        return self._centred_sum_moment(3)

    def getClusterTendencyFeatureValue(self) -> np.ndarray:
        return self._centred_sum_moment(2)

    def getContrastFeatureValue(self) -> np.ndarray:
        """sum_ij |i - j|^2 p(i, j), as sum_k k^2 p_{x-y}(k)."""
        c = self.coefficients
        return np.nanmean(np.sum(c["pxSuby"] * c["kValuesDiff"][None, :, None] ** 2, 1), 1)

    def _once(self, key: str, compute) -> np.ndarray:
        """An intermediate two features share (pyradiomics computes it in each), computed once."""
        if key not in self.coefficients:
            self.coefficients[key] = compute()
        return self.coefficients[key]

    def _spread_x(self) -> np.ndarray:
        """sum_ij p (i - ux)^2 (Nv, 1, 1, angles): Sum of Squares, and Correlation's sigma_x^2."""
        c = self.coefficients
        return self._once("spread_x", lambda: np.sum(self.P_glcm * ((c["i"][None, :, :, None] - c["ux"]) ** 2),
                                                     (1, 2), keepdims=True))

    def _log_pxpy(self) -> np.ndarray:
        """log2(px py + eps), in both Imc1 and Imc2."""
        c = self.coefficients
        return self._once("log_pxpy", lambda: np.log2(c["px"] * c["py"] + c["eps"]))

    def getSumSquaresFeatureValue(self) -> np.ndarray:
        if not self.symmetricalGLCM:
            self.logger.warning("The formula for GLCM - Sum of Squares assumes that the GLCM is symmetrical, "
                                "but this is not the case.")
        return np.nanmean(self._spread_x()[:, 0, 0, :], 1)

    def getCorrelationFeatureValue(self) -> np.ndarray:
        """pyradiomics' Correlation, sigma_x^2 shared with Sum of Squares."""
        c = self.coefficients
        i, j, ux, uy, eps = c["i"], c["j"], c["ux"], c["uy"], c["eps"]
        sigx = self._spread_x() ** 0.5
        sigy = np.sum(self.P_glcm * ((j[None, :, :, None] - uy) ** 2), (1, 2), keepdims=True) ** 0.5
        corm = np.sum(self.P_glcm * (i[None, :, :, None] - ux) * (j[None, :, :, None] - uy), (1, 2), keepdims=True)
        corr = corm / (sigx * sigy + eps)
        corr[sigx * sigy == 0] = 1  # as pyradiomics: elements that would be divided by 0
        return np.nanmean(corr, (1, 2, 3))

    def getImc1FeatureValue(self) -> np.ndarray:
        """pyradiomics' Imc1, log2(px py + eps) shared with Imc2."""
        c = self.coefficients
        hxy, eps, px, py = c["HXY"], c["eps"], c["px"], c["py"]
        hx = (-1) * np.sum((px * np.log2(px + eps)), (1, 2))
        hy = (-1) * np.sum((py * np.log2(py + eps)), (1, 2))
        hxy1 = (-1) * np.sum((self.P_glcm * self._log_pxpy()), (1, 2))
        div = np.fmax(hx, hy)
        imc1 = hxy - hxy1
        imc1[div != 0] /= div[div != 0]
        imc1[div == 0] = 0  # as pyradiomics: elements that would be divided by 0
        return np.nanmean(imc1, 1)

    def getImc2FeatureValue(self) -> np.ndarray:
        """pyradiomics' Imc2, log2(px py + eps) shared with Imc1."""
        c = self.coefficients
        hxy2 = (-1) * np.sum(((c["px"] * c["py"]) * self._log_pxpy()), (1, 2))
        imc2 = (1 - np.e ** (-2 * (hxy2 - c["HXY"]))) ** 0.5
        imc2[hxy2 == c["HXY"]] = 0
        return np.nanmean(imc2, 1)

    def getMCCFeatureValue(self):
        """pyradiomics' MCC, eps in Q's denominator included, from a symmetric eigenproblem.

        pyradiomics takes the eigenvalues of the non-symmetric Q(i, j) = sum_k p(i,k) p(j,k) /
        (px(i) py(k) + eps), the slowest call of an extraction. Without eps, Q is similar to the
        symmetric S = A A^T, A(i, k) = p(i, k) / sqrt(px(i) py(k)), whose eigenpairs `eigh` finds in
        two thirds of the time (with the products, 5.8 against 9 ms a band); eps then only shifts them by the tiny Q0 - Q (see `_ritz_second_largest`).
        Where that shift cannot be bounded below 1e-12, Q's eigenvalues are taken as pyradiomics does.
        """
        p, px, py = self.P_glcm, self.coefficients["px"], self.coefficients["py"]
        if p.shape[1] < 2:
            return 1  # flat region, as pyradiomics
        with one_blas_thread():
            second = _ritz_second_largest(p, px, py, self.coefficients["eps"])
        return np.nanmean(np.sqrt(second), 1).real


_RITZ_SIZE = 4  # top eigenpairs kept: covers the eigenvalue 1 repeated by disconnected gray levels
_RITZ_TOLERANCE = 1e-12  # largest accepted bound on |eigenvalue error| (then 1e-10 on MCC for MCC >= 0.1)


def _ritz_second_largest(p: np.ndarray, px: np.ndarray, py: np.ndarray, eps: float) -> np.ndarray:
    """Second largest eigenvalue of pyradiomics' Q for each (voxel, angle): (Nv, angles).

    Q = Q0 - E with Q0 = Dx^-1/2 S Dx^1/2 and E = e p^T, e = p eps / (d (d + eps)), d = px py.
    Projected on the top eigenvectors U of S (a Rayleigh-Ritz step, exact for repeated eigenvalues),
    Q's top eigenvalues are those of diag(lambda) - (Dx^1/2 U)^T E (Dx^-1/2 U), with an error below
    ||Dx^1/2 E Dx^-1/2||^2 / gap, the gap between the kept and the other eigenvalues of S.
    """
    by_angle = np.ascontiguousarray(p.transpose(0, 3, 1, 2))  # (Nv, angles, i, k): BLAS products below
    d = px.transpose(0, 3, 1, 2) * py.transpose(0, 3, 1, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(d > 0, by_angle / np.sqrt(d), 0.0)
        e = np.where(d > 0, by_angle * (eps / (d * (d + eps))), 0.0)
    values, top = _top_eigenpairs(np.matmul(a, a.transpose(0, 1, 3, 2)), _RITZ_SIZE)
    kept = top.shape[-1]  # (Nv, angles, i, kept)
    root_px = np.sqrt(px[:, :, 0, :].transpose(0, 2, 1))[..., None]  # (Nv, angles, i, 1)
    with np.errstate(divide="ignore"):
        inverse_root_px = np.where(root_px > 0, 1.0 / root_px, 0.0)  # gray levels absent at an angle: 0
    shift = np.matmul(e, by_angle.transpose(0, 1, 3, 2))  # E (Nv, angles, i, j)
    shift_sym = root_px * shift * inverse_root_px.transpose(0, 1, 3, 2)
    projected = np.matmul((root_px * top).transpose(0, 1, 3, 2), np.matmul(shift, top * inverse_root_px))
    ritz = np.sort(np.linalg.eigvals(values[..., -kept:, None] * np.eye(kept) - projected).real, -1)
    second = ritz[..., -2]
    gap = values[..., -kept] - values[..., -kept - 1] if values.shape[-1] > kept else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):  # repeated eigenvalues at the gap: bound inf
        bound = np.sum(shift_sym ** 2, (-2, -1)) / gap
    for v, angle in zip(*np.nonzero(~(bound <= _RITZ_TOLERANCE * np.maximum(second, 1e-2)))):
        second[v, angle] = _second_largest_of_q(p[v, :, :, angle], px[v, :, :, angle], py[v, :, :, angle], eps)
    return second


def _top_eigenpairs(s: np.ndarray, count: int) -> Tuple[np.ndarray, np.ndarray]:
    """The count + 1 largest eigenvalues (ascending) of each symmetric matrix of s (..., n, n) and the
    eigenvectors of the count largest: LAPACK's dsyevr for a few eigenpairs of each matrix takes 60%
    of the time of numpy's batched eigh, which finds all n (the values agree to ~1e-16)."""
    from scipy.linalg import lapack  # start-up time: scipy loads only when a GLCM is computed
    n = s.shape[-1]
    wanted = min(count + 1, n)
    values = np.empty(s.shape[:-2] + (wanted,))
    vectors = np.empty(s.shape[:-2] + (n, min(count, n)))
    for index in np.ndindex(*s.shape[:-2]):
        w, z, found, _, info = lapack.dsyevr(s[index], compute_v=1, range="I", il=n - wanted + 1, iu=n, lower=1)
        if info != 0 or found != wanted:
            w, z = np.linalg.eigh(s[index])  # LAPACK's own failure to converge: all eigenpairs
            w, z = w[-wanted:], z[:, -wanted:]
        values[index] = w[:wanted]
        vectors[index] = z[:, wanted - vectors.shape[-1]:wanted]
    return values, vectors


def _second_largest_of_q(p: np.ndarray, px: np.ndarray, py: np.ndarray, eps: float) -> float:
    """pyradiomics' own way for one angle: the eigenvalues of the non-symmetric Q."""
    values = np.linalg.eigvals((p / (px * py + eps)) @ p.T)
    values.sort()
    return values[-2].real


# The classes an IMNRisk extractor uses in place of pyradiomics' own, by pyradiomics' class name.
FAST_CLASSES: Dict[str, type] = {"glcm": FastGLCM, "firstorder": FastFirstOrder}
