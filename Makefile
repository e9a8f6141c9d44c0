# emotion-cnn: `make run` runs the whole pipeline, `make test` the tests.
# Both create .venv with the pinned requirements first (once; again when they change).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/emotion-cnn
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# folds trained at once by bench-accuracy: two 1-thread trainings are as fast as one 2-thread or
# faster since round 20 (and JOBS=1 rounds differently, so it would not repeat the README's figure)
JOBS ?= 2

.PHONY: install run test prepare train cv app bench-prepare bench-predict bench-accuracy clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

run: install  ## main job: fetch data if needed, run both notebooks headless
	$(CLI) run

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

prepare: install
	$(CLI) prepare

train: install
	$(CLI) train

cv: bench-accuracy

app: install  ## the web app on http://127.0.0.1:8501
	$(CLI) app

bench-prepare: install  ## cold and warm prepare timings on the full dataset
	$(PY) benchmarks/bench_prepare.py

bench-predict: install  ## one app prediction's latency with the committed model (needs a RAVDESS clip: RAVDESS_DIR or dataset/)
	$(PY) benchmarks/bench_predict.py

bench-accuracy: install  ## 6-fold EmoBox cross-validation, JOBS folds at once (about 30-70 min on 2 CPU cores, by the VM kind and day)
	$(CLI) cv --protocol emobox --jobs $(JOBS)

clean:
	rm -rf spectrograms splits runs
