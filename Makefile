# The two commands of the README: `make demo` and `make test`. Each does its own set-up.
#
# Set-up installs the Debian packages below (apt-get, with sudo when not root) and this
# package with its test extras into a virtualenv in .venv (so nothing touches the system
# Python). Kafka's jars are resolved from Maven Central by `learnpulse stack up` itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-done
PYBKT_VENV := .venv-pybkt
PYBKT_STAMP := $(PYBKT_VENV)/.setup-done
DEBIAN_PACKAGES := openjdk-17-jre-headless maven clickhouse-server prometheus prometheus-alertmanager docker-compose chromium postgresql nodejs haproxy zookeeper

.PHONY: demo test setup unit clean

demo: setup
	$(PY) -m learnpulse demo $(DEMO_ARGS)

# Test processes (pytest-xdist): each starts the services its tests need (Kafka, ClickHouse…)
# on ports of its own; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

test: setup $(PYBKT_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

setup: $(SETUP_STAMP)
$(SETUP_STAMP): pyproject.toml Makefile tests/browser/package-lock.json reporting/web/package-lock.json
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || { echo "apt-get install failed: install$$missing by hand and re-run"; exit 1; }; \
	fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@echo "installing learnpulse and its dependencies into $(VENV)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@echo "installing the browser test's xAPI client (npm ci in tests/browser)"
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	@echo "installing the dashboard's chart library (npm ci in reporting/web)"
	npm ci --prefix reporting/web --no-audit --no-fund --silent
	@touch $(SETUP_STAMP)

# pyBKT, the reference the mastery fit is compared with in the tests, needs NumPy 1 and
# scikit-learn < 1.6: a virtualenv of its own, for `make test` only.
$(PYBKT_STAMP): deploy/pybkt/requirements.txt
	@[ -x $(PYBKT_VENV)/bin/python ] || $(PYTHON) -m venv $(PYBKT_VENV)
	@echo "installing pyBKT into $(PYBKT_VENV)"
	$(PYBKT_VENV)/bin/python -m pip install -q --disable-pip-version-check -r deploy/pybkt/requirements.txt
	@touch $(PYBKT_STAMP)

clean:
	-[ -x $(PY) ] && $(PY) -m learnpulse stack down
	rm -rf .learnpulse $(VENV) $(PYBKT_VENV)
