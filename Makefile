# optuna-fmd: `make demo` sets everything up and runs the main job; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := vision,plots,dashboard,postgres,anchors,dev
FASHION := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser demo test test-slow lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# Offline datasets: Fashion-MNIST from Debian where apt is usable (Digits ships in scikit-learn).
data:
	@if [ -d $(FASHION) ]; then echo "Fashion-MNIST: $(FASHION)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	else echo "note: Fashion-MNIST not found (apt-get install dataset-fashion-mnist); using Digits"; fi

# Headless Chromium and ChromeDriver from Debian for the dashboard's browser test (skipped without).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "warning: could not install chromium; the dashboard browser test will be skipped"; \
	else echo "note: chromium not found (apt-get install chromium chromium-driver); browser test skipped"; fi

demo: setup data
	$(PY) -m optuna_fmd.cli demo

test: setup data browser
	$(PY) -m pytest -q

test-slow: setup data
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check optuna_fmd tests benchmarks examples hub
	$(VENV)/bin/ruff format --check optuna_fmd tests benchmarks examples hub
	$(VENV)/bin/mypy optuna_fmd

bench: setup data
	$(PY) benchmarks/engine_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
