# The two commands of the README: `make demo` and `make test`. Each does its own set-up.
PYTHON ?= python3
SETUP_STAMP := .learnpulse/.setup-done
DEBIAN_PACKAGES := openjdk-17-jre-headless maven clickhouse-server prometheus prometheus-alertmanager docker-compose chromium

.PHONY: demo test setup unit clean

demo: setup
	$(PYTHON) -m learnpulse demo $(DEMO_ARGS)

test: setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

# System packages (Debian) and the Python package with test extras; re-run when pyproject changes.
setup: $(SETUP_STAMP)
$(SETUP_STAMP): pyproject.toml Makefile
	@mkdir -p .learnpulse
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(PYTHON) -m pip install -q -e '.[test]'
	@touch $(SETUP_STAMP)

clean:
	-$(PYTHON) -m learnpulse stack down
	rm -rf .learnpulse
