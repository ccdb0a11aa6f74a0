# Set-up and everyday commands. `make app` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup app test lint bench samples clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: anything looser pulls several GB of CUDA wheels
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

app: setup
	$(PY) -m streamlit run app.py --server.headless true

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench

samples: setup
	$(PY) -m sample_data.generate
	$(PY) -m sample_data.evaluate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache
