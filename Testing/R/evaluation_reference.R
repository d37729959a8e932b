# Reference numbers from R for issue 12 items 4, 5, 6, 8 (EPV / sample size, shrinkage, accuracy
# against the no-information rate, Hosmer-Lemeshow degrees of freedom).
#
#   Rscript Testing/R/evaluation_reference.R     (from the repository root; R 4.2, Debian packages
#                                                 r-cran-caret r-cran-jsonlite)
#
# Reads the datasets reference.R wrote (Testing/R/data/eval_*.csv) and writes every number to
# Testing/R/evaluation_reference.json, committed so that CI needs no R.
suppressPackageStartupMessages({ library(jsonlite); library(caret) })
out <- list(R = R.version.string, caret = as.character(packageVersion("caret")))
read_eval <- function(name) read.csv(sprintf("Testing/R/data/eval_%s.csv", name))

# ---------------------------------------------------------------- 6. accuracy vs no-information rate
# caret::confusionMatrix: AccuracyNull = the larger class share, AccuracyPValue =
# binom.test(correct, n, p = NIR, alternative = "greater")
nir <- list()
for (name in c("small", "ties", "large")) {
  d <- read_eval(name)
  for (thr in c(0.5, 0.3)) {
    pred <- factor(as.integer(d$p >= thr), levels = c(0, 1))
    cm <- confusionMatrix(pred, factor(d$y, levels = c(0, 1)), positive = "1")
    nir[[sprintf("%s_%g", name, thr)]] <- list(
      dataset = name, threshold = thr, accuracy = unname(cm$overall["Accuracy"]),
      nir = unname(cm$overall["AccuracyNull"]), p = unname(cm$overall["AccuracyPValue"]),
      correct = sum(diag(cm$table)), n = sum(cm$table))
  }
}
# the demo-like counts: 124 patients, 19 events (NIR 105/124 = 84.7%)
bt <- lapply(c(105, 108, 112, 118), function(k) {
  t <- binom.test(k, 124, p = 105 / 124, alternative = "greater")
  list(correct = k, n = 124, nir = 105 / 124, p = t$p.value)
})
out$nir <- list(confusion_matrix = unname(nir), binom_test = bt)

# ---------------------------------------------------------------- 8. Hosmer-Lemeshow df
# The statistic by hand with ResourceSelection::hoslem.test's grouping (as reference.R): df = g - 2
# on development data, df = g on an external cohort scored by a frozen model.
hoslem_df <- function(y, p, external, g = 10) {
  qq <- unique(quantile(p, probs = seq(0, 1, 1 / g)))
  cuts <- cut(p, breaks = qq, include.lowest = TRUE)
  obs <- xtabs(cbind(1 - y, y) ~ cuts); exp <- xtabs(cbind(1 - p, p) ~ cuts)
  keep <- rowSums(obs) > 0
  chisq <- sum(((obs - exp)^2 / exp)[keep, ])
  groups <- sum(keep)
  df <- if (external) groups else groups - 2
  list(chi2 = chisq, df = df, groups = groups, p = pchisq(chisq, df, lower.tail = FALSE))
}
hl <- list()
for (name in c("small", "ties", "large")) {
  d <- read_eval(name)
  for (external in c(FALSE, TRUE))
    hl[[length(hl) + 1]] <- c(list(dataset = name, external = external, rounded = FALSE),
                              hoslem_df(d$y, d$p, external))
  # heavy ties: predictions rounded to one decimal leave fewer than 10 groups (the rounded values are
  # written out: R's round() and numpy's differ on halves such as 0.15)
  pr <- pmin(pmax(round(d$p, 1), 0.01), 0.99)
  for (external in c(FALSE, TRUE))
    hl[[length(hl) + 1]] <- c(list(dataset = name, external = external, rounded = TRUE, p_used = pr),
                              hoslem_df(d$y, pr, external))
}
out$hosmer_lemeshow <- hl

# ---------------------------------------------------------------- 5. uniform shrinkage
# Steyerberg (Clinical Prediction Models, ch. 13): coefficients x s, intercept refitted with the
# shrunk linear predictor as offset.
tight <- glm.control(epsilon = 1e-14, maxit = 100)
shr <- list()
for (name in c("small", "large")) {
  d <- read_eval(name)
  fit <- glm(y ~ a + b, family = binomial, data = d, control = tight)
  for (s in c(0.8, 0.53, 1.1)) {
    lp <- s * as.vector(as.matrix(d[, c("a", "b")]) %*% coef(fit)[-1])
    refit <- glm(d$y ~ 1, offset = lp, family = binomial, control = tight)
    shr[[length(shr) + 1]] <- list(dataset = name, factor = s, coefficients = unname(coef(fit)),
                                   intercept = unname(coef(refit)[1]),
                                   mean_predicted = mean(plogis(coef(refit)[1] + lp)), observed = mean(d$y))
  }
}
out$shrinkage <- shr

# ---------------------------------------------------------------- 4. Cox-Snell R2 from a C statistic
# pmsampsize 1.1.3's cstat2rsq (R/cstat2rsq.R, Riley, Van Calster & Collins 2021), as the package
# runs it (seed 123456, 1e6 simulated patients); pmsampsize is not packaged for Debian.
cstat2rsq <- function(cstatistic, prevalence, seed = 123456) {
  n <- 1000000
  mu <- sqrt(2) * qnorm(cstatistic)
  set.seed(seed)
  LP <- c(rnorm(prevalence * n, mean = 0, sd = 1), rnorm((1 - prevalence) * n, mean = mu, sd = 1))
  y <- c(rep(0, prevalence * n), rep(1, (1 - prevalence) * n))
  model <- glm(y ~ LP, family = binomial)
  as.numeric(1 - exp(-1 * (model$null.deviance - model$deviance) / n))
}
out$cstat2rsq <- lapply(list(c(0.89, 0.174), c(0.81, 0.77), c(0.75, 0.1), c(0.947, 0.153)), function(a)
  list(cstatistic = a[1], prevalence = a[2], r2_cs = cstat2rsq(a[1], a[2])))

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           "Testing/R/evaluation_reference.json")
cat("wrote Testing/R/evaluation_reference.json\n")
