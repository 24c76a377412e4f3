# Two entry points on a fresh machine (Python 3.11+ and the package index are all it needs):
#   make demo   creates the environment, trains the demo pipelines, registers and promotes the winners
#   make test   creates the environment, runs format check, lint, types, import contracts and tests
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --frozen

.PHONY: env demo test lint bench clean

env:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen

demo: env
	$(RUN) layerops demo-data examples/data
	$(RUN) layerops train examples/iris.yaml --alias production
	$(RUN) layerops train examples/shipping.yaml --alias production
	$(RUN) layerops models list

lint: env
	$(RUN) ruff format --check src tests bench
	$(RUN) ruff check src tests bench
	$(RUN) mypy
	$(RUN) lint-imports

test: lint
	$(RUN) pytest

bench: env
	$(RUN) python bench/train_overhead.py

clean:
	rm -rf .layerops examples/data .pytest_cache .mypy_cache .ruff_cache
