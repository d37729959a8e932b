# Reference numbers from R for IMNRisk's statistics tests.
#
#   Rscript Testing/R/reference.R        (from the repository root; R 4.2, Debian packages
#                                         r-cran-proc r-cran-rms r-cran-glmnet r-cran-brglm2)
#
# Writes the datasets it makes to Testing/R/data/*.csv and every number to
# Testing/R/reference.json. Both are committed, so CI needs no R. Python tests compare to 1e-6.
suppressPackageStartupMessages({
  library(pROC); library(rms); library(jsonlite); library(brglm2)
})
dir.create("Testing/R/data", showWarnings = FALSE, recursive = TRUE)
out <- list(R = R.version.string, pROC = as.character(packageVersion("pROC")),
            rms = as.character(packageVersion("rms")), brglm2 = as.character(packageVersion("brglm2")))

# ---------------------------------------------------------------- datasets for evaluation
make_eval <- function(n, seed, ties = FALSE) {
  set.seed(seed)
  x <- rnorm(n)
  y <- rbinom(n, 1, plogis(-1.2 + 1.5 * x))
  a <- x + rnorm(n, sd = 0.8)
  b <- 0.5 * x + rnorm(n, sd = 1)
  p <- plogis(-1.0 + 1.2 * a)              # a (miscalibrated) probability
  if (ties) { a <- round(a, 1); b <- round(b * 2) / 2; p <- round(p, 2) }
  d <- data.frame(y = y, a = a, b = b, p = p, disc = pmin(5, pmax(1, round(2 + x + rnorm(n, sd = .7)))))
  d
}
datasets <- list(small = make_eval(40, 1), ties = make_eval(150, 2, ties = TRUE), large = make_eval(2000, 3))
set.seed(4)
sep <- data.frame(y = c(rep(0, 18), rep(1, 12)))
sep$a <- c(sort(runif(18, 0, 0.45)), sort(runif(12, 0.55, 1)))
sep$b <- runif(30)
sep$p <- sep$a
sep$disc <- c(rep(1, 18), rep(2, 12))
datasets$separated <- sep

hoslem <- function(y, p, g = 10) {
  # ResourceSelection::hoslem.test's grouping; df counts the non-empty groups
  qq <- unique(quantile(p, probs = seq(0, 1, 1 / g)))
  cuts <- cut(p, breaks = qq, include.lowest = TRUE)
  obs <- xtabs(cbind(1 - y, y) ~ cuts); exp <- xtabs(cbind(1 - p, p) ~ cuts)
  keep <- rowSums(obs) > 0
  chisq <- sum(((obs - exp)^2 / exp)[keep, ])
  df <- sum(keep) - 2
  list(chi2 = chisq, df = df, p = 1 - pchisq(chisq, df), n = as.vector(rowSums(obs)[keep]),
       observed = as.vector(obs[keep, 2]), expected = as.vector(exp[keep, 2]))
}

evaluate_score <- function(y, s, probability) {
  r <- roc(y, s, levels = c(0, 1), direction = "<", quiet = TRUE)
  ci <- ci.auc(r, method = "delong")
  best <- coords(r, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"),
                 transpose = FALSE)
  res <- list(auc = as.numeric(auc(r)), variance = var(r, method = "delong"), ci95 = c(ci[1], ci[3]),
              youden = list(threshold = best$threshold[1], sensitivity = best$sensitivity[1],
                            specificity = best$specificity[1]))
  if (probability) {
    inner <- s > 0 & s < 1
    lp <- qlogis(s[inner]); yy <- y[inner]
    tight <- glm.control(epsilon = 1e-14, maxit = 100)   # converge fully: we compare to 1e-6
    fit <- suppressWarnings(glm(yy ~ lp, family = binomial, control = tight))
    vp <- suppressWarnings(val.prob(s[inner], yy, pl = FALSE))
    citl <- suppressWarnings(glm(yy ~ 1, offset = lp, family = binomial, control = tight))
    sepd <- !fit$converged || any(abs(coef(fit)) > 15)
    res$calibration <- if (sepd) list(separation = TRUE) else
      list(intercept = unname(coef(fit)[1]), slope = unname(coef(fit)[2]),
           valprob_intercept = unname(vp["Intercept"]), valprob_slope = unname(vp["Slope"]),
           slope_se = unname(sqrt(diag(vcov(fit)))[2]),
           slope_p_vs_1 = 2 * pnorm(-abs((coef(fit)[2] - 1) / sqrt(diag(vcov(fit)))[2])),
           citl = unname(coef(citl)[1]), separation = FALSE)
    res$brier <- mean((s - y)^2)
    res$hosmer_lemeshow <- hoslem(y, s)
    pt <- (1:99) / 100
    res$net_benefit <- sapply(pt, function(t) sum(s >= t & y == 1) / length(y) -
                                             sum(s >= t & y == 0) / length(y) * t / (1 - t))
    lw <- lowess(s, y, iter = 0)
    res$lowess <- list(x = lw$x, y = lw$y)
  }
  res
}

out$evaluation <- list()
for (name in names(datasets)) {
  d <- datasets[[name]]
  write.csv(d, sprintf("Testing/R/data/eval_%s.csv", name), row.names = FALSE)
  scores <- list()
  for (col in c("a", "b", "p", "disc")) scores[[col]] <- evaluate_score(d$y, d[[col]], col == "p")
  pairs <- list()
  for (pair in list(c("a", "b"), c("a", "p"), c("b", "disc"))) {
    r1 <- roc(d$y, d[[pair[1]]], levels = c(0, 1), direction = "<", quiet = TRUE)
    r2 <- roc(d$y, d[[pair[2]]], levels = c(0, 1), direction = "<", quiet = TRUE)
    t <- tryCatch(roc.test(r1, r2, method = "delong", paired = TRUE), error = function(e) NULL)
    pairs[[length(pairs) + 1]] <- list(a = pair[1], b = pair[2],
                                       z = if (is.null(t)) NULL else unname(t$statistic),
                                       p = if (is.null(t)) NULL else unname(t$p.value))
  }
  out$evaluation[[name]] <- list(scores = scores, pairs = pairs)
}

# ---------------------------------------------------------------- Wilson intervals
out$wilson <- lapply(list(c(0, 10), c(3, 10), c(19, 21), c(50, 50), c(7, 124)), function(kn) {
  ci <- prop.test(kn[1], kn[2], correct = FALSE)$conf.int
  list(k = kn[1], n = kn[2], ci = c(ci[1], ci[2]))
})

# ---------------------------------------------------------------- logistic regression
set.seed(5)
n <- 150
lg <- data.frame(x1 = rnorm(n, 50, 10), x2 = rbinom(n, 1, 0.4),
                 x3 = factor(sample(c("a", "b", "c"), n, TRUE), levels = c("a", "b", "c")))
lg$y <- rbinom(n, 1, plogis(-4 + 0.06 * lg$x1 + 0.8 * lg$x2 + 0.7 * (lg$x3 == "c")))
write.csv(lg, "Testing/R/data/logistic.csv", row.names = FALSE)
fit <- glm(y ~ x1 + x2 + x3, data = lg, family = binomial, control = glm.control(epsilon = 1e-14, maxit = 100))
ci <- confint.default(fit)
out$logistic <- list(terms = names(coef(fit)), coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
                     p = unname(summary(fit)$coefficients[, 4]), ci_low = unname(ci[, 1]), ci_high = unname(ci[, 2]))
# Firth (brglm2 AS_mean) on a separated dataset
fs <- data.frame(x = c(rep(0, 20), rep(1, 10)), z = seq(-1, 1, length.out = 30))
fs$y <- c(rbinom(20, 1, 0.3), rep(1, 10))
write.csv(fs, "Testing/R/data/firth.csv", row.names = FALSE)
ff <- glm(y ~ x + z, data = fs, family = binomial, method = "brglmFit", type = "AS_mean")
out$firth <- list(terms = names(coef(ff)), coef = unname(coef(ff)), se = unname(sqrt(diag(vcov(ff)))))

# ---------------------------------------------------------------- the paper's Table 1 cohort
t1 <- read.csv("Testing/R/data/table1_cohort.csv", stringsAsFactors = FALSE)
uni <- function(x, label) {
  f <- glm(t1$IMN ~ x, family = binomial, control = glm.control(epsilon = 1e-14)); ci <- confint.default(f)
  list(term = label, or = unname(exp(coef(f)[2])), ci_low = unname(exp(ci[2, 1])),
       ci_high = unname(exp(ci[2, 2])), p = unname(summary(f)$coefficients[2, 4]))
}
out$table2 <- list(
  uni(as.numeric(t1$tumor_location == "lateral"), "tumor_location"),
  uni(as.numeric(t1$vascular_invasion == "yes"), "vascular_invasion"),
  uni(as.numeric(t1$menstrual_status == "postmenopausal"), "menstrual_status"),
  uni(as.numeric(t1$er == "positive"), "er"),
  uni(as.numeric(t1$pr == "positive"), "pr"),
  uni(as.numeric(t1$her2 == "negative"), "her2"),
  uni(as.numeric(t1$ki67 == "high"), "ki67"),
  uni(match(t1$aln_metastases, c("N0", "N1", "N2", "N3")) - 1, "aln_metastases"))
ms <- glm(IMN ~ relevel(factor(molecular_subtype), "luminal_A"), data = t1, family = binomial,
          control = glm.control(epsilon = 1e-14))
mci <- confint.default(ms)
out$table2_subtype <- list(levels = sub(".*\\)", "", names(coef(ms))[-1]), or = unname(exp(coef(ms)[-1])),
                           ci_low = unname(exp(mci[-1, 1])), ci_high = unname(exp(mci[-1, 2])),
                           p = unname(summary(ms)$coefficients[-1, 4]))
out$table1_tests <- lapply(c("tumor_location", "vascular_invasion", "pathological_type", "histological_grade",
                             "er", "pr", "molecular_subtype", "aln_metastases", "t_stage"), function(v) {
  tab <- table(t1$IMN, t1[[v]])
  list(variable = v, fisher = fisher.test(tab)$p.value,
       chisq = suppressWarnings(chisq.test(tab, correct = FALSE)$p.value))
})

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           "Testing/R/reference.json")
cat("wrote Testing/R/reference.json\n")

# ---------------------------------------------------------------- LASSO (glmnet's objective)
suppressPackageStartupMessages(library(glmnet))
set.seed(6)
n <- 124; p <- 30
X <- matrix(rnorm(n * p), n, p)
X <- scale(X) * sqrt(n / (n - 1))           # z-scored with the population SD, as IMNRisk does
yl <- rbinom(n, 1, plogis(-1.7 + 1.2 * X[, 1] - 0.9 * X[, 2] + 0.5 * X[, 3]))
write.csv(data.frame(y = yl, X), "Testing/R/data/lasso.csv", row.names = FALSE)
lams <- c(0.08, 0.04, 0.02, 0.01)
gf <- glmnet(X, yl, family = "binomial", lambda = lams, standardize = FALSE, thresh = 1e-14, maxit = 1e7)
out$lasso <- lapply(seq_along(lams), function(k) list(lambda = lams[k], coef = as.vector(coef(gf)[, k])))

# ---------------------------------------------------------------- nomogram (rms)
nd <- data.frame(y = lg$y, x2 = lg$x2, x3 = lg$x3, rs = (lg$x1 - 50) / 10)
dd <- datadist(nd); options(datadist = "dd")
nf <- lrm(y ~ x2 + x3 + rs, data = nd)
nom <- nomogram(nf, x2 = c(0, 1), rs = c(-2.5, 2.5), maxscale = 100)
out$nomogram <- list(coef = unname(coef(nf)), terms = names(coef(nf)),
                     x2 = nom$x2$points, x3 = nom$x3$points, x3_levels = as.character(nom$x3$x3),
                     rs = nom$rs$points, rs_values = nom$rs$rs,
                     total_points = nom$total.points$x, lp = nom$lp$x)
write.csv(nd, "Testing/R/data/nomogram.csv", row.names = FALSE)

# ---------------------------------------------------------------- bootstrap optimism (rms validate's definitions)
set.seed(7)
B <- 50
idx <- t(replicate(B, sample.int(n = nrow(lg), replace = TRUE)))
write.csv(idx, "Testing/R/data/bootstrap_indices.csv", row.names = FALSE)
perf <- function(y, lp) {
  p <- plogis(lp)
  cal <- coef(glm(y ~ lp, family = binomial, control = glm.control(epsilon = 1e-14, maxit = 100)))
  c(auc = as.numeric(auc(roc(y, p, levels = c(0, 1), direction = "<", quiet = TRUE))),
    slope = unname(cal[2]), intercept = unname(cal[1]), brier = mean((p - y)^2))
}
opt <- matrix(NA, B, 4)
for (b in 1:B) {
  d <- lg[idx[b, ], ]
  f <- glm(y ~ x1 + x2 + x3, data = d, family = binomial, control = glm.control(epsilon = 1e-14, maxit = 100))
  opt[b, ] <- perf(d$y, predict(f, d)) - perf(lg$y, predict(f, lg))
}
out$optimism <- list(auc = mean(opt[, 1]), slope = mean(opt[, 2]), intercept = mean(opt[, 3]), brier = mean(opt[, 4]))

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           "Testing/R/reference.json")
cat("wrote Testing/R/reference.json (with LASSO, nomogram, optimism)\n")
