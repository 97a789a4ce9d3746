# The two commands of the quick start: `make demo` and `make test`. Each does all set-up itself
# (virtualenv, install, servers). `make demo` needs only Python 3.11+, make and git; `make test`
# also installs RabbitMQ and ActiveMQ with apt-get (as root) when they are missing, unless
# POLLER_TEST_RABBITMQ_URL and POLLER_TEST_ACTIVEMQ_URL name running ones (README, Quick start).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
CODE   := poller tests benchmarks examples scripts

.PHONY: demo test lint typecheck unit bench bench-quick venv clean node-ric

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

## bench: every benchmark (tables on stdout, JSON in benchmarks/results/), then the report:
## benchmarks/results/report.md and its charts (*.png), which README's Performance section links.
## A script that fails does not stop the others (each starts its own servers and writes its own
## file, and a long run should not be thrown away for one broker); run_all.py notes it, the report
## names it and leaves its older file out, and the target fails at the end.
BENCH_SCRIPTS := engine.py kinesis.py dynamodb_streams.py sqs.py mq.py kafka.py functions.py \
	leases.py filters.py engine_filters.py latency.py
## bench-quick: the same with --quick (reduced sizes, one run each; aimed at under three minutes on
## a quiet 2-core machine) to check that the benchmarks and the report work; its report and charts
## are marked "not for comparison".
## leases.py is left out: its timings are lease durations and process starts, not sizes to reduce.
BENCH_QUICK_SCRIPTS := $(filter-out leases.py,$(BENCH_SCRIPTS))
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_SCRIPTS); status=$$?; \
		$(PY) benchmarks/report.py && exit $$status

bench-quick: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py --quick --timeout 120 $(BENCH_QUICK_SCRIPTS); status=$$?; \
		$(PY) benchmarks/report.py && exit $$status

## node-ric: AWS's Node.js runtime interface client, for the test that runs it (not part of
## `make test`: it compiles curl and the AWS C++ runtime, which takes minutes)
node-ric:
	mkdir -p .node-ric && cd .node-ric && npm install aws-lambda-ric@4 \
		&& (npm install-scripts approve aws-lambda-ric || true) \
		&& npm rebuild aws-lambda-ric --foreground-scripts

clean:
	rm -rf $(VENV) .node-ric .poller .servers .pytest_cache .mypy_cache .ruff_cache .hypothesis
