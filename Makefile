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

DEMO_KEY ?= demo-key-change-me

demo: env
	$(RUN) layerops demo-data examples/data
	$(RUN) layerops train examples/iris.yaml --alias production
	$(RUN) layerops train examples/shipping.yaml --alias production
	$(RUN) layerops models list
	@echo ""
	@echo "Serving every production model on http://127.0.0.1:8000 (Ctrl-C stops). Try:"
	@echo "  curl -H 'Authorization: Bearer $(DEMO_KEY)' localhost:8000/models"
	@echo "  curl -H 'Authorization: Bearer $(DEMO_KEY)' -d '{\"sepal_length\":5.1,\"sepal_width\":3.5,\"petal_length\":1.4,\"petal_width\":0.2}' localhost:8000/models/iris/predict"
	@echo "  curl -H 'Authorization: Bearer $(DEMO_KEY)' -d '{\"length\":30,\"width\":20,\"height\":10,\"weight\":2.5,\"origin\":\"north\",\"destination\":\"east\",\"service_level\":\"express\"}' localhost:8000/models/shipping/predict"
	@echo "  open http://127.0.0.1:8000/docs for the typed request schemas"
	@echo ""
	LAYEROPS_API_KEYS=$(DEMO_KEY) $(RUN) layerops serve --port 8000

lint: env
	$(RUN) ruff format --check src tests bench
	$(RUN) ruff check src tests bench
	$(RUN) mypy
	$(RUN) lint-imports

test: lint
	$(RUN) pytest

bench: env
	$(RUN) python bench/train_overhead.py
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	$(RUN) python bench/serve.py

clean:
	rm -rf .layerops examples/data .pytest_cache .mypy_cache .ruff_cache
