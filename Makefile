# Set-up commands; each creates the virtual environments it needs:
#   make demo [PORT=8000]  the demo shop on an embedded SQLite file (runtime + Flask only)
#   make test              lint and type-check once, then the whole test suite under
#                          the default python3 and under every version in PYTHONS
#   make dist              the wheel and sdist a user installs, into dist/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
PORT ?= 8000
# The extra interpreters the suite also runs under (the oldest and newest supported
# here), each in its own .venv-X.Y. An interpreter is pyenv's newest X.Y.* (under
# `pyenv root`) or pythonX.Y on PATH; set PYTHON_X.Y=/path/to/python to choose one.
# Without one, `make test` says "skipped: no pythonX.Y"; with CI=true it fails.
PYTHONS ?= 3.10 3.13
PYTEST_ARGS ?=
PYENV_ROOT ?= $(or $(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)

.PHONY: demo test lint typecheck pytest bench dist clean

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(DEV_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/pixel-wsgi --storage sqlite:///demo.db demo --port $(PORT)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy --strict src

# pytest exits non-zero when it collects no test (5), so an empty run fails too.
pytest: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest $(addprefix pytest-,$(PYTHONS))

# The suite under pythonX.Y, in .venv-X.Y (every extra but the linters).
pytest-%:
	@py="$(PYTHON_$*)"; \
	if [ -z "$$py" ]; then \
	    for candidate in $$(ls -d "$(PYENV_ROOT)"/versions/$*.* 2>/dev/null | sort -V -r); do \
	        if [ -x "$$candidate/bin/python$*" ]; then py="$$candidate/bin/python$*"; break; fi; \
	    done; \
	fi; \
	if [ -z "$$py" ] && python$* -c '' 2>/dev/null; then py="$$(command -v python$*)"; fi; \
	if [ -z "$$py" ] || ! "$$py" -c '' 2>/dev/null; then \
	    case "$${CI:-}" in \
	        1|true|yes) echo "no python$* (set PYTHON_$*=/path/to/python$*): CI runs the suite under it" >&2; exit 1;; \
	        *) echo "skipped: no python$*"; exit 0;; \
	    esac; \
	fi; \
	venv=.venv-$*; \
	if [ ! "$$venv/.installed-test" -nt pyproject.toml ]; then \
	    { [ -x "$$venv/bin/python" ] || "$$py" -m venv "$$venv"; } && \
	    "$$venv/bin/python" -m pip install --quiet --upgrade pip && \
	    "$$venv/bin/python" -m pip install --quiet -e '.[demo,postgres,test]' && \
	    touch "$$venv/.installed-test" || exit 1; \
	fi; \
	echo "pytest under $$("$$venv/bin/python" --version) ($$venv)"; \
	"$$venv/bin/pytest" $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/hot_path.py
	$(BIN)/python benchmarks/dashboard.py

# What `pip install dist/pixel_wsgi-*.whl` installs, and the sdist it is built from.
dist: $(DEV_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) .venv-* dist build .pytest_cache .mypy_cache .ruff_cache
