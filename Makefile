# The two commands of the quick start: `make demo` and `make test`. Each does all set-up itself
# (virtualenv, install, servers). `make demo` needs only Python 3.11+, make and git; `make test`
# also installs RabbitMQ and ActiveMQ with apt-get (as root) when they are missing, unless
# POLLER_TEST_RABBITMQ_URL and POLLER_TEST_ACTIVEMQ_URL name running ones (README, Quick start).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
CODE   := poller tests benchmarks examples scripts

.PHONY: demo test lint typecheck unit bench venv clean node-ric

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## demo: run the example mapping on the embedded endpoint and print what happened per shard
demo: $(STAMP)
	cd examples/demo && ../../$(PY) run_demo.py

## test: lint, format check, mypy --strict, then the whole suite (starts and stops its servers)
## on two processes; each broker's tests stay on one of them (tests/conftest.py)
test: lint typecheck
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict poller

## unit: the fast tests only (no servers)
unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

## bench: the benchmarks (tables on stdout, JSON in benchmarks/results/)
bench: $(STAMP)
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/kinesis.py
	$(PY) benchmarks/dynamodb_streams.py
	$(PY) benchmarks/sqs.py
	$(PY) benchmarks/mq.py
	$(PY) benchmarks/kafka.py
	$(PY) benchmarks/functions.py
	$(PY) benchmarks/leases.py
	$(PY) benchmarks/filters.py
	$(PY) benchmarks/engine_filters.py

## node-ric: AWS's Node.js runtime interface client, for the test that runs it (not part of
## `make test`: it compiles curl and the AWS C++ runtime, which takes minutes)
node-ric:
	mkdir -p .node-ric && cd .node-ric && npm install aws-lambda-ric@4 \
		&& (npm install-scripts approve aws-lambda-ric || true) \
		&& npm rebuild aws-lambda-ric --foreground-scripts

clean:
	rm -rf $(VENV) .node-ric .poller .servers .pytest_cache .mypy_cache .ruff_cache .hypothesis
