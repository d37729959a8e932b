# Reference numbers from R for IMNRisk's clinical selection (issue 12.2) and lambda grid (12.3).
#
#   TZ=UTC Rscript Testing/R/lrt_reference.R      (from the repository root; R 4.2, Debian packages
#                                                   r-cran-glmnet r-cran-jsonlite)
#
# Simulates a clinical table (a 3-level and a 4-level factor, two ordinals, binaries with a collinear
# ER/PR pair, a continuous variable with missing values), writes it to Testing/R/data/lrt_cohort.csv
# and writes to Testing/R/lrt_reference.json:
#   drop1_all     drop1(glm(all variables), test = "LRT"): LR chi2, df, p per variable
#   backward_all  backward elimination from all variables (drop the largest LRT p while >= 0.05,
#                 one variable at a time, refit), its path and the kept variables' drop1 tests
#   procedure     the whole Table 2 procedure as IMNRisk documents it: univariate Wald p (joint Wald
#                 test for a factor) < 0.10 enters; visiting entered variables by univariate p, one
#                 whose Cramer's V (both discrete) or |Spearman| (both ordered) with a kept one
#                 exceeds 0.7 is left out; then the backward elimination above
#   glmnet_lambda glmnet's default lambda sequence (nlambda = 100, lambda.min.ratio = 1e-3,
#                 standardize = FALSE) on Testing/R/data/lasso.csv
# Both files are committed, so CI needs no R. Testing/test_clinical_selection.py compares to 1e-6.
suppressPackageStartupMessages({ library(jsonlite); library(glmnet) })
tight <- glm.control(epsilon = 1e-14, maxit = 100)   # converge fully: we compare to 1e-6

# ---------------------------------------------------------------- the dataset
set.seed(12)
n <- 300
d <- data.frame(
  location = sample(c("lateral", "medial", "central"), n, TRUE, prob = c(.55, .3, .15)),
  er = sample(c("negative", "positive"), n, TRUE, prob = c(.3, .7)),
  ki67 = sample(c("low", "high"), n, TRUE),
  grade = sample(c("I", "II", "III", "uncertain"), n, TRUE, prob = c(.2, .45, .25, .1)),
  aln = sample(c("N0", "N1", "N2", "N3"), n, TRUE, prob = c(.45, .3, .15, .1)),
  her2 = sample(c("negative", "positive"), n, TRUE, prob = c(.7, .3)),
  age = round(rnorm(n, 52, 10)),
  stringsAsFactors = FALSE)
flip <- runif(n) < 0.08                                   # PR follows ER in 92% of patients
d$pr <- ifelse(flip, ifelse(d$er == "positive", "negative", "positive"), d$er)
aln_step <- match(d$aln, c("N0", "N1", "N2", "N3")) - 1
d$stage <- c("T1", "T2", "T3", "T4")[pmin(3, pmax(0, round(0.6 * aln_step + rnorm(n, 0.8, 0.8)))) + 1]  # no own effect
lp <- -2.0 + 1.0 * (d$location == "medial") + 0.6 * (d$location == "central") - 0.9 * (d$pr == "positive") +
  0.5 * aln_step + 0.5 * (d$grade == "III") + 0.35 * (d$ki67 == "high")
d$IMN <- rbinom(n, 1, plogis(lp))
d$age[sample.int(n, 6)] <- NA
d <- d[, c("IMN", "location", "er", "pr", "ki67", "grade", "aln", "stage", "her2", "age")]
write.csv(d, "Testing/R/data/lrt_cohort.csv", row.names = FALSE, na = "")

# ---------------------------------------------------------------- coding as the schema says
levels_of <- list(location = c("lateral", "medial", "central"), er = c("negative", "positive"),
                  pr = c("negative", "positive"), ki67 = c("low", "high"), grade = c("I", "II", "III", "uncertain"),
                  aln = c("N0", "N1", "N2", "N3"), stage = c("T1", "T2", "T3", "T4"), her2 = c("negative", "positive"))
type_of <- c(location = "categorical", er = "binary", pr = "binary", ki67 = "binary", grade = "categorical",
             aln = "ordinal", stage = "ordinal", her2 = "binary", age = "continuous")
reference_of <- c(location = "lateral", grade = "II")
coded <- data.frame(IMN = d$IMN)
for (v in names(type_of)) {
  coded[[v]] <- switch(type_of[[v]],
    categorical = relevel(factor(d[[v]], levels = levels_of[[v]]), reference_of[[v]]),
    binary = match(d[[v]], levels_of[[v]]) - 1,
    ordinal = match(d[[v]], levels_of[[v]]) - 1,
    continuous = d[[v]])
}
variables <- names(type_of)

drop1_table <- function(vars, data) {
  fit <- glm(reformulate(vars, "IMN"), data = data, family = binomial, control = tight)
  t <- drop1(fit, test = "LRT")
  lapply(vars, function(v) list(variable = v, chi2 = t[v, "LRT"], df = t[v, "Df"], p = t[v, "Pr(>Chi)"]))
}

backward <- function(vars, data, keep_p = 0.05) {
  data <- data[complete.cases(data[, c("IMN", vars)]), ]   # the same patients at every step
  path <- list()
  while (length(vars) > 0) {
    tests <- drop1_table(vars, data)
    p <- sapply(tests, function(t) t$p)
    worst <- which.max(p)
    if (p[worst] < keep_p) return(list(path = path, final = tests, kept = vars))
    path[[length(path) + 1]] <- c(list(step = length(path) + 1, removed = vars[worst]), tests[[worst]][-1])
    vars <- vars[-worst]
  }
  list(path = path, final = list(), kept = character(0))
}

cc <- coded[complete.cases(coded), ]
out <- list(R = R.version.string, glmnet = as.character(packageVersion("glmnet")), n = n,
            complete = nrow(cc), events = sum(d$IMN))
out$drop1_all <- drop1_table(variables, cc)
out$backward_all <- backward(variables, cc)

# ---------------------------------------------------------------- the whole procedure
univariate_p <- sapply(variables, function(v) {
  dv <- coded[!is.na(coded[[v]]), ]
  fit <- glm(reformulate(v, "IMN"), data = dv, family = binomial, control = tight)
  b <- coef(fit)[-1]; V <- vcov(fit)[-1, -1, drop = FALSE]
  stat <- as.numeric(t(b) %*% solve(V) %*% b)             # joint Wald test of the variable's terms
  pchisq(stat, length(b), lower.tail = FALSE)
})
entered <- variables[univariate_p < 0.10]
cramers_v <- function(a, b) {
  tab <- table(a, b)
  chi2 <- suppressWarnings(chisq.test(tab, correct = FALSE)$statistic)
  sqrt(unname(chi2) / (sum(tab) * (min(dim(tab)) - 1)))
}
association <- function(a, b) {
  ok <- !is.na(d[[a]]) & !is.na(d[[b]])
  discrete <- c("binary", "categorical", "ordinal"); ordered <- c("binary", "ordinal", "continuous")
  values <- 0
  if (type_of[[a]] %in% discrete && type_of[[b]] %in% discrete) values <- c(values, cramers_v(d[[a]][ok], d[[b]][ok]))
  if (type_of[[a]] %in% ordered && type_of[[b]] %in% ordered)
    values <- c(values, abs(cor(as.numeric(coded[[a]][ok]), as.numeric(coded[[b]][ok]), method = "spearman")))
  max(values)
}
kept <- character(0); pairs <- list()
for (v in entered[order(univariate_p[entered])]) {
  hit <- NULL
  for (k in kept) { a <- association(v, k); if (a > 0.7) { hit <- list(kept = k, dropped = v, value = a); break } }
  if (is.null(hit)) kept <- c(kept, v) else pairs[[length(pairs) + 1]] <- hit
}
candidates <- entered[entered %in% kept]
bw <- backward(candidates, coded)
out$procedure <- list(univariate_p = as.list(univariate_p), entered = entered, collinear = pairs,
                      candidates = candidates, path = bw$path, final = bw$final, selected = bw$kept)

# ---------------------------------------------------------------- glmnet's lambda grid
ld <- read.csv("Testing/R/data/lasso.csv")
gl <- glmnet(as.matrix(ld[, -1]), ld$y, family = "binomial", nlambda = 100, lambda.min.ratio = 1e-3,
             standardize = FALSE)
out$glmnet_lambda <- gl$lambda

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           "Testing/R/lrt_reference.json")
cat("wrote Testing/R/lrt_reference.json\n")
