# onething: every target does its own set-up, so a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(shell find protos/onething -name '*.proto')
# google/type/date.proto (google.type.Date) comes with googleapis-common-protos, which also gives its
# generated Python: it is copied beside our protos for protoc and buf (git-ignored), never generated
GOOGLE_TYPES := protos/google/type/date.proto
STAMP := $(VENV)/.installed

.PHONY: all venv protos contracts lint infra-up infra-down up down run demo stop test unit bench chaos dead-letters clean status run-sites sites-down sites-status test-links-long observe observe-down promtool stuck bench-timeline soak

all: protos

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	echo "$(CURDIR)" > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/onething.pth
	echo "$(CURDIR)/gen" >> $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/onething.pth
	touch $(STAMP)

venv: $(STAMP)

$(GOOGLE_TYPES): $(STAMP)
	mkdir -p $(dir $@)
	cp "$$($(BIN)/python -c 'import google.type.date_pb2 as d, os; print(os.path.dirname(d.__file__))')/$(notdir $@)" $@

gen/.stamp: $(PROTOS) $(GOOGLE_TYPES) $(STAMP)
	rm -rf gen && mkdir -p gen
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=gen --grpc_python_out=gen --pyi_out=gen $(PROTOS)
	find gen -type d -exec touch {}/__init__.py \;
	rm -f gen/__init__.py
	touch gen/.stamp

protos: gen/.stamp

# The contracts: buf lint, and buf breaking against the last release (protos/releases/README.md).
# buf comes from npm, pinned, into tools/buf; once there, no network is needed.
BUF_VERSION := 1.75.0
BUF := tools/buf/node_modules/.bin/buf
contracts: $(GOOGLE_TYPES)
	@test "$$($(BUF) --version 2>/dev/null)" = "$(BUF_VERSION)" || \
	  npm install --prefix tools/buf --silent --no-audit --no-fund --ignore-scripts @bufbuild/buf@$(BUF_VERSION)
	$(BUF) lint protos
	$(BUF) breaking protos --against $$(ls protos/releases/v*.binpb | sort -V | tail -n 1)

# ruff (ruff.toml) and mypy (mypy.ini) over the code and the tests.
lint: protos
	$(BIN)/ruff check .
	$(BIN)/mypy

infra-up: protos
	$(BIN)/python -m infra.local up

infra-down:
	$(BIN)/python -m infra.local down

up: infra-up
	$(BIN)/python -m infra.suite up

down stop:
	-$(BIN)/python -m infra.observe down
	-$(BIN)/python -m infra.multisite down
	-$(BIN)/python -m infra.suite down
	-$(BIN)/python -m infra.local down

status:
	$(BIN)/python -m infra.suite status

# The main job: the whole suite on the embedded defaults, with one demo case to its end.
run demo: up
	$(BIN)/python -m tools.demo

# Unit, integration and end-to-end tests. Starts the local servers it needs. The alert rules are
# checked by promtool (infra/tests/test_alerts.py), which `promtool` installs when it is missing.
test: contracts lint infra-up promtool
	$(BIN)/python -m pytest -q

# Debian's prometheus package (prometheus and promtool) when promtool is missing; its own service is
# kept from starting (infra/observe.py install). Needs root, as on CI.
promtool: $(STAMP)
	@command -v promtool >/dev/null 2>&1 || $(BIN)/python -m infra.observe install

# The suite with a real Prometheus on http://127.0.0.1:9090 (ONETHING_PROMETHEUS_PORT): every process's
# /metrics, RabbitMQ per queue, the alert rules of infra/prometheus/alerts.yml (infra/observe.py).
observe: up
	$(BIN)/python -m infra.observe up

observe-down:
	-$(BIN)/python -m infra.observe down

unit: protos contracts lint promtool
	$(BIN)/python -m pytest -q -m "not integration and not e2e"

# Three sites on this machine (infra/multisite.py): the province 440000 and the cities 440100 and
# 440300, each with its own RabbitMQ node, databases, buckets and api ports, linked by shovels; then a
# cross-city 企业迁移 case and a case with a provincial item, each to its end (tools/sites_demo.py).
run-sites: infra-up
	$(BIN)/python -m infra.multisite up
	$(BIN)/python -m tools.sites_demo
	-$(BIN)/python -m infra.observe targets

sites-down:
	-$(BIN)/python -m infra.multisite down
	-$(BIN)/python -m infra.observe targets

sites-status:
	$(BIN)/python -m infra.multisite status

# The links' long run: each side's broker stopped (gracefully, then killed) for 30 s while the other
# publishes to it, on two bare nodes and on the three sites (make test runs the same with 3 s outages).
test-links-long: infra-up
	ONETHING_LINK_OUTAGE_SECONDS=30 $(BIN)/python -m pytest -q infra/tests/test_links.py -m integration
	ONETHING_LINK_OUTAGE_SECONDS=30 $(BIN)/python -m pytest -q e2e/test_sites.py

BENCH_ARGS ?=
bench: up
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

# The soak run (tools/soak.py): cases for 30 minutes with a sample every minute of throughput, each
# process's memory and the span, log and MongoDB folders. The suite is restarted first with small
# rotation sizes, so the run shows the span and log files held at their bounds (make test runs a
# half-minute version: e2e/test_soak.py).
SOAK_ENV ?= ONETHING_SPANS_FILE_BYTES=33554432 ONETHING_SPANS_KEEP_BYTES=536870912 ONETHING_LOG_FILE_BYTES=4194304
SOAK_ARGS ?= --minutes 30
soak: infra-up
	-$(BIN)/python -m infra.suite down
	env $(SOAK_ENV) $(BIN)/python -m infra.suite up
	env $(SOAK_ENV) $(BIN)/python -m tools.soak $(SOAK_ARGS)

# Fault injection on the running suite: 1,000 cases while processes are SIGKILLed every 3 s and the
# broker, MongoDB and S3 are each restarted once (make test runs a small version: e2e/test_chaos.py).
CHAOS_ARGS ?= --cases 1000 --in-flight 8 --kill-every 3
chaos: up
	$(BIN)/python -m tools.chaos $(CHAOS_ARGS)

# Cases without progress for 30 minutes: where each waits and why (tools/stuck.py; --for, --sites, --json).
stuck: protos
	$(BIN)/python -m tools.stuck

# The timeline's lookup speed: one case among 10,000 generated cases' spans (tools/timeline_bench.py).
bench-timeline: protos
	$(BIN)/python -m tools.timeline_bench

dead-letters: protos
	$(BIN)/python -m tools.dead_letters list

clean: down
	rm -rf gen var $(VENV)
