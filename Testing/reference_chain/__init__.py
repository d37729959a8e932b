"""A frozen copy of the selection chain and validation loop as they were before the speed work
(IMNRiskLib at commit 7d29d76: clinical.py, selection.py, models.py, validation.py, unchanged but
for their imports; only what fit_models, repeated_cv and bootstrap_validation reach is kept: Table 1,
the nomogram, risk groups and the funnel are left out, the library has them), and the exact LASSO
solver of 529e068 (lasso_exact.py). `Testing/test_speed_equality.py` checks that the fast chain
gives the same results; never edit these files to make that test pass.

The code shared with IMNRiskLib (fit_firth, RadScore, module headers...) is duplicated on purpose:
importing the parts that have not changed yet would let a later change to them pass the equality
test unseen."""
