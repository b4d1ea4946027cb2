# uldviz: the two set-up commands of the README.
#   make lab    create .venv, install the kit, open JupyterLab on notebooks/
#   make test   create .venv, install the kit, run the whole test suite (widget tests under ipywidgets 7.7 too)
# Choose the interpreter with PYTHON=python3.12 (3.10+). A torch already in .venv is kept (lower bounds only).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Colab ships ipywidgets 7.7: the widget tests run a second time with it laid over .venv (a PYTHONPATH overlay).
IPYW7_DIR := $(VENV)/ipywidgets7
IPYW7_PKGS := ipywidgets==7.7.1 ipython_genutils==0.2.0
PYTEST_ARGS ?= -ra
# ipywidgets 7.7 creates its comms through ipykernel's deprecated Comm class, and its add_traits (which anywidget
# calls) reads trait metadata the way traitlets 4.1 deprecated: warnings per widget, not a problem.
IPYW7_QUIET := -W "ignore::DeprecationWarning:ipywidgets.widgets.widget" -W "ignore:Deprecated in traitlets 4.1:DeprecationWarning"
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test install test-ipywidgets7 test-main clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "uldviz needs Python 3.10 or newer: run make PYTHON=python3.11 (or another 3.10+)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.uldviz-installed: $(PY) pyproject.toml
	$(PY) -m pip install -e '.[lab,test]'
	@touch $@

install: $(VENV)/.uldviz-installed

lab: install
	$(PY) -m jupyterlab --notebook-dir=notebooks $(ROOT_FLAG)

$(IPYW7_DIR)/.installed: $(PY)
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(IPYW7_DIR) $(IPYW7_PKGS)
	@touch $@

# No test collected (pytest's exit code 5) is a failure too: a widget pass that runs nothing proves nothing.
test-ipywidgets7: install $(IPYW7_DIR)/.installed
	@echo "== widget tests under ipywidgets 7.7 (Colab's version) =="
	@rc=0; ULDVIZ_EXPECT_IPYWIDGETS=7 PYTHONPATH="$(CURDIR)/$(IPYW7_DIR)" $(PY) -m pytest -m widgets \
		-p no:cacheprovider $(IPYW7_QUIET) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "FAILED: no widget test was collected under ipywidgets 7.7 (pytest exit code 5)"; fi; \
	exit $$rc

test-main: install
	@echo "== whole test suite (ipywidgets $$($(PY) -c 'import ipywidgets; print(ipywidgets.__version__)')) =="
	$(PY) -m pytest $(PYTEST_ARGS)

# The small ipywidgets-7 run goes first so the suite's own summary line closes the output.
test: install
	@$(MAKE) --no-print-directory test-ipywidgets7
	@$(MAKE) --no-print-directory test-main

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache

# ---- the course as static HTML ---------------------------------------------------------------------------------
#   make site   execute every notebook (default mode; ULDVIZ_FAST=1 make site for the quick one) and render the
#               executed lessons with an index page into $(SITE_DIR)/ (git-ignored); publishing: see README.md
SITE_DIR ?= site

.PHONY: site
site: install
	$(PY) -m uldviz.course.site --out $(SITE_DIR)
