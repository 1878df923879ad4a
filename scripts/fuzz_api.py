"""Fuzz the HTTP API of the real local graph: generated requests, no 5xx, every error in OpenAI's shape.

Hypothesis generates requests of four kinds: raw bytes, arbitrary JSON, valid OpenAI requests
with fields replaced or added by arbitrary JSON (types, ranges, nesting, unicode), and valid
requests with odd but legal options; for the four endpoints (chat, completions, route, models),
with and without streaming. Generation is kept short (max_tokens <= 8 where it is a valid number)
so the load on the tiny engines stays small. Each response is checked:

* no 5xx (a 504 would mean the per-request deadline of 20 s was hit: also a failure here);
* a 4xx carries ``{"error": {"message", "type", "param", "code"}}`` and no exception text;
* a 200 is a chat/completion object, an SSE stream ending in exactly one ``[DONE]``, a decision,
  or the model list.

    .venv/bin/python scripts/fuzz_api.py --n 5000            # starts the local graph (configs/local.yaml)
    .venv/bin/python scripts/fuzz_api.py --n 5000 --url http://127.0.0.1:8000 [--key sk-...]

tests/test_serve_faults.py runs a few hundred of the same inputs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import httpx
from common import local_args
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.serve.local import local_graph

PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/route")
LEAKS = ("Traceback", "Error:", "RecursionError", "KeyError", "TypeError", "ValueError", "/work/", "site-packages", 'File "')
SAMPLING = ("stream", "temperature", "top_p", "n", "max_tokens", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "seed", "stop", "stream_options", "response_format", "user", "echo", "tools", "tool_choice")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
content = st.one_of(
    st.text(min_size=1, max_size=200),
    st.just("What is the capital of France?"),
    st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(min_size=1, max_size=50)}), min_size=1, max_size=3),
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "wizard"]), "content": content | json_values}
)


def valid_chat(model: str = "auto") -> st.SearchStrategy[dict]:
    turns = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": content}), max_size=3)
    return st.builds(
        lambda history, last, extra: {"model": model, "messages": [*history, {"role": "user", "content": last}], "max_tokens": 4, **extra},
        turns,
        content,
        st.fixed_dictionaries({}, optional={"stream": st.booleans(), "temperature": st.floats(0, 2), "n": st.integers(1, 2), "seed": st.integers(0, 100)}),
    )


def valid_completion() -> st.SearchStrategy[dict]:
    return st.builds(lambda p, s: {"model": "auto", "prompt": p, "max_tokens": 4, **s}, st.text(min_size=1, max_size=200), st.fixed_dictionaries({}, optional={"stream": st.booleans()}))


def mutated(base: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    keys = st.sampled_from(("model", "messages", "prompt", *SAMPLING)) | st.text(max_size=10)
    return st.builds(lambda b, changes: {**b, **changes}, base, st.dictionaries(keys, json_values | st.lists(message, max_size=3), min_size=1, max_size=3))


def bounded(body):
    """Keep generation short where the request would be valid."""
    if isinstance(body, dict):
        mt = body.get("max_tokens")
        if mt is None or (isinstance(mt, int) and not isinstance(mt, bool) and mt > 8):
            body = {**body, "max_tokens": 4}
        if isinstance(body.get("n"), int) and not isinstance(body.get("n"), bool) and body["n"] > 2:
            body = {**body, "n": 2}
    return body


requests = st.one_of(
    st.tuples(st.sampled_from(PATHS), st.binary(max_size=300)),
    st.tuples(st.sampled_from(PATHS), json_values.map(bounded)),
    st.tuples(st.sampled_from(PATHS), mutated(valid_chat()).map(bounded)),
    st.tuples(st.sampled_from(PATHS), mutated(valid_completion()).map(bounded)),
    st.tuples(st.just("/v1/chat/completions"), valid_chat()),
    st.tuples(st.just("/v1/completions"), valid_completion()),
    st.tuples(st.just("/v1/route"), valid_chat()),
    st.tuples(st.just("/v1/models"), st.none()),
)


def send(client: httpx.Client, path: str, body, headers: dict) -> tuple[int, str]:
    if path == "/v1/models":
        r = client.get(path, headers=headers)
        return r.status_code, r.text
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    with client.stream("POST", path, content=data, headers={**headers, "content-type": "application/json", "x-tierroute-timeout": "20"}) as r:
        return r.status_code, r.read().decode("utf-8", "replace")


def problem(path: str, status: int, text: str) -> str | None:
    """What is wrong with this response, or None."""
    if status >= 500:
        return f"{status} from {path}: {text[:200]}"
    if any(leak in text for leak in LEAKS) and status != 200:
        return f"{status} leaks internals: {text[:200]}"
    if status >= 400:
        try:
            err = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            return f"{status} not in OpenAI's error shape: {text[:200]}"
        if not isinstance(err, dict) or set(err) != {"message", "type", "param", "code"} or not err["message"]:
            return f"{status} error fields wrong: {text[:200]}"
        return None
    if text.startswith("data: "):
        events = [e for e in text.split("\n\n") if e.strip()]
        if events[-1] != "data: [DONE]" or events.count("data: [DONE]") != 1:
            return f"stream does not end with one [DONE]: {text[-200:]}"
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return f"200 not JSON: {text[:200]}"
    ok = "choices" in obj or "tier" in obj or obj.get("object") == "list"
    return None if ok else f"200 of unknown shape: {text[:200]}"


def fuzz(client: httpx.Client, n: int, headers: dict | None = None, seed: int = 0) -> dict:
    """``n`` generated requests; returns the counts and the problems found (empty when all is well)."""
    stats: Counter[str] = Counter()
    problems: list[str] = []
    headers = headers or {}

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate], derandomize=seed == 0, suppress_health_check=list(HealthCheck))
    @given(requests)
    def one(req):
        path, body = req
        status, text = send(client, path, body, headers)
        stats["sent"] += 1
        stats[f"{status // 100}xx"] += 1
        stats[str(status)] += 1
        if (p := problem(path, status, text)) is not None:
            problems.append(p)

    one()
    return {"counts": dict(stats), "problems": problems}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--url", help="a running tierroute (default: start the local graph here)")
    ap.add_argument("--key", help="API key to send, when the graph requires one")
    args = ap.parse_args()
    headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
    t0 = time.monotonic()
    if args.url:
        with httpx.Client(base_url=args.url, timeout=60) as client:
            report = fuzz(client, args.n, headers)
    else:
        with local_graph(local_args(), name="fuzz") as url, httpx.Client(base_url=url, timeout=60) as client:
            report = fuzz(client, args.n, headers)
    c = report["counts"]
    print(f"fuzzed {c.get('sent', 0)} requests in {time.monotonic() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "sent"))
    for p in report["problems"][:20]:
        print("PROBLEM", p)
    print(json.dumps({"fuzz_inputs": c.get("sent", 0), "problems": len(report["problems"]), "counts": c}))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
