# company-skywalking developer commands. Everything runs in .venv, built on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTOC_VENV := .venvs/protoc

.PHONY: venv test test-plugins lint docs protos bench demo tox clean

$(STAMP): setup.py pyproject.toml requirements/test.txt skywalking/bootstrap/company_skywalking.pth
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . -r requirements/test.txt
	@# uWSGI builds from source (a C compiler and Python headers); tests/prefork skips its cases if it cannot
	$(BIN)/python -m pip install -q "uwsgi>=2.0.20" || echo "WARNING: uWSGI did not build: its pre-fork tests will be skipped"
	@# an editable install leaves out the .pth that a wheel puts at the root of site-packages (SW_AGENT_AUTOSTART)
	cp skywalking/bootstrap/company_skywalking.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
	touch $(STAMP)

venv: $(STAMP)

# the pinned protoc that generated skywalking/protocol_v*/gen (a test checks they are not stale)
$(PROTOC_VENV)/.stamp:
	$(PYTHON) -m venv $(PROTOC_VENV)
	$(PROTOC_VENV)/bin/python -m pip install -q "grpcio-tools==1.49.1"
	touch $@

## make protos: regenerate skywalking/protocol_v*/gen from the .proto files (see tools/gen_protos.py)
protos: $(PROTOC_VENV)/.stamp
	$(PROTOC_VENV)/bin/python tools/gen_protos.py

## make test: unit and protocol tests (the command CI and README use)
test: venv $(PROTOC_VENV)/.stamp
	$(BIN)/python -m pytest

## make test-plugins: every plugin on the oldest and the newest library version it declares (tox envs; Ray on
## 2.9 and 2.40 here, 2.60 in `make test`). The standard-library plugins run in `make test`.
## tools/check_matrix.py first checks tox.ini's pins against the plugins' declarations, then lists the envs.
test-plugins: venv $(PROTOC_VENV)/.stamp
	$(BIN)/python -m pip install -q "tox>=4"
	$(BIN)/python tools/check_matrix.py
	envs="$$($(BIN)/python tools/check_matrix.py --envs)" && $(BIN)/tox -e "$$envs"

## make lint: ruff over the package, tests, tools and benchmarks, then mypy over the package ([tool.mypy])
lint: venv
	$(BIN)/ruff check skywalking tests tools bench examples
	$(BIN)/mypy skywalking sw_python

## make docs: regenerate docs/configuration.md and skywalking/config.pyi from the config table
docs: venv
	$(BIN)/python tools/gen_docs.py
	$(BIN)/python tools/gen_config_stub.py

## make bench: every benchmark against no agent, apache-skywalking 1.2.0 and (Ray) Ray's own tracing
bench: venv
	$(BIN)/python -m pip install -q -r requirements/bench.txt
	$(BIN)/python bench/run.py

## make demo: a Ray Serve app traced end to end into the bundled collector, the trace printed
demo: venv
	$(BIN)/python examples/demo.py

## make tox: the unit tests on every supported Python (3.10-3.13) and on the dependency floors
# (pyenv-installed interpreters are put on PATH so that tox finds python3.10 ... python3.13)
PYENV_BINS := $(subst $(eval) ,:,$(wildcard $(HOME)/.pyenv/versions/3.1[0-3].*/bin))
tox: venv $(PROTOC_VENV)/.stamp
	$(BIN)/python -m pip install -q "tox>=4"
	PATH="$(PYENV_BINS):$$PATH" $(BIN)/tox

clean:
	rm -rf $(VENV) .venvs .tox build dist *.egg-info .pytest_cache .hypothesis .ruff_cache .mypy_cache
