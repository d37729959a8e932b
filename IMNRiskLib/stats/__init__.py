"""The statistics every stage shares: logistic fits, lasso path, ranks, metrics, numba kernels."""
