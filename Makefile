# The two set-up commands of the README:
#   make run    create .venv, install, start the bot in console mode (SQLite under var/)
#   make test   install everything the tests need (venv, test extras, ngircd, InspIRCd,
#               Anope, Synapse, PostgreSQL, chromium), check the layers with import-linter and the types with mypy
#               (both configured in setup.cfg), then run the whole suite
#   make check  only the layer and type checks
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run test check test-servers bench clean

run: $(VENV)/.installed
	$(PY) bot.py --console

test: check test-servers
	$(PY) -m pytest $(PYTEST_ARGS)

check: $(VENV)/.installed-test
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy

test-servers:
	scripts/install-test-servers.sh

bench: $(VENV)/.installed-test
	$(PY) bench/dispatcher_bench.py

$(VENV)/.created:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-venv" >&2; \
	  $$( [ "$$(id -u)" -eq 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" -eq 0 ] || echo sudo ) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created setup.cfg pyproject.toml
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) var build *.egg-info
