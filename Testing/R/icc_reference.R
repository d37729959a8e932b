# Reference ICCs from R for IMNRisk's feature-stability test (Testing/test_stability.py).
#
#   TZ=UTC Rscript Testing/R/icc_reference.R      (from the repository root; R 4.2, Debian
#                                                 r-cran-psych r-cran-jsonlite; irr 0.84.1)
#
# irr is not packaged by Debian 12: install its CRAN source (github.com/cran/irr, version 0.84.1;
# needs r-cran-lpsolve) into .cache/Rlib with `R CMD INSTALL -l .cache/Rlib <irr source>`; the
# script looks there first. Writes the two-reader data set it makes to Testing/R/data/icc.csv and
# the ICCs to Testing/R/icc_reference.json. Both are committed, so CI needs no R.
#
# ICC(2,1): two-way random effects, absolute agreement, single rater (Shrout & Fleiss 1979),
# = McGraw & Wong's ICC(A,1) = irr::icc(model = "twoway", type = "agreement", unit = "single")
# = psych::ICC's "ICC2" (Single_random_raters). ICC(3,1) (consistency) is written too, to show
# that the test tells the two apart.
if (dir.exists(".cache/Rlib")) .libPaths(c(normalizePath(".cache/Rlib"), .libPaths()))
suppressPackageStartupMessages({ library(irr); library(psych); library(jsonlite) })
dir.create("Testing/R/data", showWarnings = FALSE, recursive = TRUE)

set.seed(20261201)
n <- 40
truth <- rnorm(n)
d <- data.frame(ID = sprintf("P%02d", 1:n))
add <- function(name, r1, r2) { d[[paste0(name, ".r1")]] <<- r1; d[[paste0(name, ".r2")]] <<- r2 }
add("reliable", truth + rnorm(n, sd = 0.2), truth + rnorm(n, sd = 0.2))
add("poor", truth + rnorm(n, sd = 1.5), truth + rnorm(n, sd = 1.5))
add("biased", truth + rnorm(n, sd = 0.3), truth + 0.8 + rnorm(n, sd = 0.3))   # reader 2 larger: agreement < consistency
add("large", 1e6 + 1e3 * truth + rnorm(n, sd = 300), 1e6 + 1e3 * truth + rnorm(n, sd = 300))
add("ties", pmin(5, pmax(1, round(3 + truth + rnorm(n, sd = 0.5)))), pmin(5, pmax(1, round(3 + truth + rnorm(n, sd = 0.5)))))
add("identical", round(truth, 6), round(truth, 6))
add("opposite", truth, -truth)                                            # negative ICC
add("shifted_constant", rep(3, n), rep(4, n))                             # no patient variance: ICC 0
add("constant", rep(7, n), rep(7, n))                                     # 0 / 0: undefined
num <- sapply(d, is.numeric)
d[num] <- lapply(d[num], function(v) round(v, 6))
d[c(5, 17, 33), grep("\\.r2$", names(d))] <- NA                          # three patients read once
write.csv(d, "Testing/R/data/icc.csv", row.names = FALSE, na = "")
d <- read.csv("Testing/R/data/icc.csv")                                  # the very numbers Python reads

features <- sub("\\.r1$", "", grep("\\.r1$", names(d), value = TRUE))
value <- function(x) if (is.null(x) || !is.finite(x)) NULL else unbox(x)
out <- list(R = unbox(R.version.string), irr = unbox(as.character(packageVersion("irr"))),
            psych = unbox(as.character(packageVersion("psych"))), n = unbox(n), read_once = c("P05", "P17", "P33"),
            features = list())
for (f in features) {
  ratings <- d[, paste0(f, c(".r1", ".r2"))]
  complete <- ratings[complete.cases(ratings), ]
  a <- irr::icc(ratings, model = "twoway", type = "agreement", unit = "single")$value
  c3 <- irr::icc(ratings, model = "twoway", type = "consistency", unit = "single")$value
  p <- tryCatch({
    r <- suppressWarnings(suppressMessages(psych::ICC(complete, lmer = FALSE)))$results
    r$ICC[r$type == "ICC2"]
  }, error = function(e) NA_real_)
  out$features[[f]] <- list(irr_agreement_single = value(a), irr_consistency_single = value(c3),
                            psych_icc2 = value(p), n_complete = unbox(nrow(complete)))
}
writeLines(toJSON(out, auto_unbox = FALSE, digits = NA, pretty = TRUE, null = "null"),
           "Testing/R/icc_reference.json")
