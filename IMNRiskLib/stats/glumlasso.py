"""glum's LASSO logistic at one lambda: the fallback both exact path solvers (numpy in `lasso`, numba
in `kernels`) share for the rare lambda where their active set cycles."""

from __future__ import annotations

import warnings

import numpy as np


def glum_lasso(Xi: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """[intercept, coefficients] by glum's coordinate descent (Xi: intercept column first), for the
    rare lambda where the active set cycles; converged to a tolerance only, so it is then polished."""
    from glum import GeneralizedLinearRegressor  # start-up time: glum loads only when used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GeneralizedLinearRegressor(family="binomial", l1_ratio=1.0, alpha=lam, gradient_tol=1e-10,
                                           scale_predictors=False).fit(Xi[:, 1:], y)
    return np.concatenate([[model.intercept_], np.where(np.abs(model.coef_) > 1e-10, model.coef_, 0.0)])
