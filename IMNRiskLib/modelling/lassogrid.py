"""IMNRisk's LASSO lambda grid: the defaults of TrainingOptions and of the selection chain, and the
text of the protocols' deviation table. A module of its own, importing nothing, so that the table
(which the report shows) is made without loading sklearn and without an import circle."""

N_LAMBDAS = 100       # as glmnet's nlambda
LAMBDA_RATIO = 1e-3   # smallest / largest lambda (3 decades)
