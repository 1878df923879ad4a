# One command each: `make test` and `make run` set up .venv/ from nothing first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test run demo artifact ladder-artifact verifier bench bench-serve bench-embed bench-execution clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q

# The local default graph on 127.0.0.1:8000 (configs/local.yaml); Ctrl-C stops it.
run: setup
	RAY_AUTH_MODE=disabled $(VENV)/bin/serve run configs/local.yaml

demo: setup
	$(VENV)/bin/tierroute demo

artifact: setup
	$(VENV)/bin/tierroute calibrate --data ../shared/data --exemplars app/calibration/exemplars/exemplars.jsonl --tier2-share 0.15 --min-source-share 0.05 --repeats 3 --output app/routing/artifacts/default.json

# The shipped route-mode ladder (Llama-3.1 8B -> Llama-3.1 70B -> gpt-4o; ZeroEval GSM8K, MATH level 5, CRUXEval): docs/ladder.md.
ladder-artifact: setup
	$(VENV)/bin/tierroute calibrate --ladder llama-3.1-8b,llama-3.1-70b,gpt-4o --ladder-mode route --data ../shared/data --sources gsm8k,math_l5,crux --tier-shares 0.6,0.3,0.1 --output app/routing/artifacts/ladder.json
	$(VENV)/bin/tierroute calibrate --ladder llama-3.1-8b,llama-3.1-70b,gpt-4o --ladder-mode cascade --data ../shared/data --sources gsm8k,math_l5,crux --tier-shares 0.6,0.3,0.1 --output app/verification/artifacts/ladder.json

# The shipped verifier (cascade routing): the Llama-3.1 8B/70B answer rows of ../shared/data (docs/verifier.md).
verifier: setup
	$(VENV)/bin/tierroute calibrate --data ../shared/data --verifier-only --verifier-embedding --verifier-output app/verification/artifacts/default.json --repeats 1

bench: setup
	$(PY) scripts/bench_score.py

bench-serve: setup
	$(PY) scripts/bench_serve.py --startup

bench-embed: setup
	$(PY) scripts/bench_embed.py

bench-execution: setup
	$(PY) scripts/bench_execution.py

clean:
	rm -rf $(VENV)
