# IMNRisk: `make demo` (set-up + the demo on the built-in phantom) and `make test` (set-up + all tests).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PYRADIOMICS := pyradiomics-3.0.1
SDIST  := .cache/sdist/$(PYRADIOMICS).tar.gz
STAMP  := $(VENV)/.imnrisk-installed
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install demo test bench clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install numpy versioneer setuptools wheel

# pyradiomics 3.0.1 has no wheel for Python >= 3.10 and its sdist needs a patch on 3.12+: one recipe
# (also run by the Slicer extension build) fetches the sdist, builds a wheel and caches it. The
# sdist stays in .cache/sdist (its data/ folder holds the real test images).
$(SDIST): | $(VENV)/bin/python
	$(PY) tools/pyradiomics_wheel.py --sdist-only

$(STAMP): pyproject.toml Makefile tools/pyradiomics_wheel.py $(SDIST) | $(VENV)/bin/python
	$(PY) tools/pyradiomics_wheel.py --install
	$(PIP) install --no-build-isolation -e '.[test,dask,dicom,dicom-test,web,web-test]'
	# numba (the `fast` extra: compiled LASSO paths, ranks and logistic fits) only at the numpy that
	# pyradiomics was built against; where no numba fits it, training uses numpy (same results, slower)
	$(PIP) install 'numba>=0.60' "numpy==$$($(PY) -c 'import numpy; print(numpy.__version__)')" \
	  || echo "imnrisk: no numba for this numpy; training uses the numpy solvers (same results, ~1.9x slower)"
	$(PY) -m IMNRiskLib.stats.kernels
	$(PY) -m IMNRiskLib.app.synthkernels
	touch $@

demo: install
	$(VENV)/bin/imnrisk demo --out demo-output --force

test: install
	$(PY) -m pytest -q -n $(JOBS) Testing; rc=$$?; [ $$rc -eq 5 ] && { echo "no tests ran"; exit 1; }; exit $$rc

bench: install
	$(PY) bench/bench_extract.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
