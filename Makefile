# One command each: `make test` and `make run` set up .venv/ from nothing first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test run artifact evaluate bench clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q

run: setup
	$(VENV)/bin/tierroute demo

artifact: setup
	$(VENV)/bin/tierroute calibrate --data ../shared/data --exemplars app/routing/exemplars/exemplars.jsonl --tier2-share 0.15 --output app/routing/artifacts/default.json

bench: setup
	$(PY) scripts/bench_score.py

clean:
	rm -rf $(VENV)
