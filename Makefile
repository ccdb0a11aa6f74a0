# Set-up and everyday commands. `make app` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

JS_DIR := viewer/component
JS_STAMP := $(JS_DIR)/node_modules/.package-lock.json

.PHONY: setup app test test-loaded lint bench bench-viewer samples clean

setup: $(STAMP) $(JS_STAMP)

# The viewer itself needs no npm package; NiiVue is installed for the side-by-side benchmark only, pinned by
# viewer/component/package-lock.json (no registry addresses in it; see viewer/component/.npmrc).
$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd $(JS_DIR) && npm ci --no-audit --no-fund --ignore-scripts; \
	else echo "npm not found: NiiVue (benchmark only) not installed"; mkdir -p $(JS_DIR)/node_modules; touch $@; fi

$(STAMP): requirements.txt requirements-dev.txt requirements-frameworks.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: anything looser pulls several GB of CUDA wheels
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt
	# nnU-Net without its timm/torchvision requirement (requirements.txt lists what it imports)
	$(PY) -m pip install --quiet --no-deps -c constraints.txt -r requirements-frameworks.txt
	touch $(STAMP)

app: setup
	$(PY) -m streamlit run app.py --server.headless true

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q

# The suite with two CPU-bound busy loops beside it, as on a shared CI machine (times in docs/benchmarks.md).
test-loaded: lint
	@bash -c 'for i in 1 2; do (while :; do :; done) & pids="$$pids $$!"; done; \
	  trap "kill $$pids" EXIT; time $(PY) -m pytest -q'

bench: setup
	$(PY) -m bench

# Every viewer figure of docs/benchmarks.md (real Chromium; a few minutes)
bench-viewer: setup
	$(PY) -m bench --viewer-only

samples: setup
	$(PY) -m sample_data.generate
	$(PY) -m sample_data.evaluate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache $(JS_DIR)/node_modules
