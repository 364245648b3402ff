# The two commands a new user needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make serve` installs what serving needs (the package and its OpenVINO engine); `make test`
# adds the test, benchmark and load-test tools (the dev extra).
SERVE_STAMP := $(VENV)/.serve-stamp
STAMP := $(VENV)/.installed-stamp
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes PyTorch's CPU-only wheels from
# there (a venv of about 1.2 GB instead of 6.5 GB with PyPI's CUDA builds); empty: PyPI's.
TORCH_INDEX ?=
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check \
	$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: install install-serve serve test coverage test-fast bench loadtest tools lint typecheck format protos clean

install-serve: $(SERVE_STAMP)
install: $(STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[openvino]'
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml $(SERVE_STAMP)
	$(PIP_INSTALL) -e '.[dev]'
	touch $(STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/batchserve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The gRPC service's descriptor set, compiled from its .proto (checked by
# tests/server/web/grpc/test_messages.py, which compiles it again and compares).
GRPC_DIR := server/web/grpc
protos: $(STAMP)
	cd $(GRPC_DIR) && ../../../$(BIN)/python -m grpc_tools.protoc -I. --include_imports \
		--descriptor_set_out=inference.binpb inference.proto

# Prometheus (promtool) and docker-compose for the observability checks; installs them with
# apt-get when missing and allowed to (root), else the tests that need them say so.
tools:
	./scripts/ensure-tools.sh

# The suite runs on every core (pytest-xdist); TEST_WORKERS=0 runs it in this one process.
# A file's tests run in one worker, so its module-scoped models are built once, not per worker.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --dist loadfile
# Coverage's line tracer (Python 3.11 has no sys.monitoring) makes torch.export, OpenVINO's
# conversion and NNCF, all Python-heavy, about 1.6x slower in every process it follows: measured
# on test_main.py's quantize test, 40 s plain against 64 s traced. `make test` (CI) runs the
# suite untraced; `make coverage` runs the same suite traced, subprocesses included, and fails
# under the threshold in pyproject.toml.
test: lint typecheck tools
	$(BIN)/pytest $(XDIST) --durations=20

coverage: lint typecheck tools
	$(BIN)/pytest $(XDIST) --cov --cov-report=term --durations=20

# The day-to-day loop: everything but the tests marked slow (a real model, a server process,
# a benchmark); CI runs `make test`, which runs them all.
test-fast: lint typecheck
	$(BIN)/pytest $(XDIST) -m "not slow" -q

# Locust, headless, against a running server: make loadtest URL=http://host:8000 USERS=8 DURATION=60s
URL ?= http://127.0.0.1:8000
USERS ?= 8
DURATION ?= 60s
RESULTS ?= results
loadtest: $(STAMP)
	mkdir -p $(RESULTS)
	$(BIN)/locust -f loadtest/locustfile.py --headless -H $(URL) -u $(USERS) -r $(USERS) \
		-t $(DURATION) --csv $(RESULTS)/locust --csv-full-history --html $(RESULTS)/locust.html \
		--only-summary
	$(BIN)/python -m loadtest.locust_plot $(RESULTS)/locust_stats_history.csv $(RESULTS)/locust.png

# Measures this machine. BENCH picks the parts: `engines` (every engine x precision, batchserve
# against the naive FastAPI baseline: docs/benchmarks-engines.md; SECTIONS=raw,servers selects
# within it), `server` (the model alone, then the server with batching on and off:
# docs/benchmarks.md + .png), `models` (a real model's .ts, .pt2 and .onnx files, and two
# models sharing one server: docs/benchmarks-models.md), `int8` (int8 against fp32 on two
# real classifiers, the recipe and each lever: docs/benchmarks-int8.md) and `tracing` (OpenTelemetry
# off and on: docs/benchmarks-tracing.md).
# Linux only (reads /proc).
BENCH ?= engines,server,models,int8,tracing
SECTIONS ?= raw,servers
bench: $(STAMP)
	case ",$(BENCH)," in *,engines,*) $(BIN)/python -m loadtest.engines_bench --sections $(SECTIONS);; esac
	case ",$(BENCH)," in *,server,*) $(BIN)/python -m loadtest.bench;; esac
	case ",$(BENCH)," in *,models,*) $(BIN)/python -m loadtest.models_bench;; esac
	case ",$(BENCH)," in *,int8,*) $(BIN)/python -m loadtest.int8_fidelity;; esac
	case ",$(BENCH)," in *,tracing,*) $(BIN)/python -m loadtest.tracing_bench;; esac

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov *.egg-info results
