"""Decision identity: fingerprint the router's decisions for the shipped artifact, and compare two fingerprints.

    # on the code before a change (the tree to test is the working directory and PYTHONPATH):
    cd /work/main && PYTHONPATH=$PWD .venv/bin/python /path/to/scripts/compare_decisions.py record --out /tmp/base
    # on the code after it, then compare:
    PYTHONPATH=$PWD .venv/bin/python scripts/compare_decisions.py record --out /tmp/new --data /work/shared/data
    python scripts/compare_decisions.py compare /tmp/base /tmp/new      # exit 1 when anything differs

The prompts are every calibration prompt that `make artifact` calibrates on: the shared data directory
(``--data``, default ../shared/data) and the exemplars (``--exemplars``; default the first of
app/calibration/exemplars/exemplars.jsonl and app/routing/exemplars/exemplars.jsonl that exists), read
here as raw rows (``prompt``/``question`` or ``messages``), never through ``app``. Each user-facing path
sees them only through the CLI or HTTP, in subprocesses whose ``PYTHONPATH`` and working directory are
the tree under test, so the same script records old and new code alike:

* ``score``: ``tierroute score`` over all prompts -> score and tier per prompt;
* ``show``: ``tierroute show --json`` -> the card;
* ``evaluate``: ``tierroute evaluate --data DATA`` -> the printed report and its ``--json``;
* ``serve``: ``POST /v1/route`` for every prompt on the local default (configs/local.yaml) started with
  :func:`app.serve.local.local_graph` -> the decision body without ``router_latency_ms``. Requests go one at a
  time by default: a request alone is embedded alone (``--concurrency`` > 1 lets the ingress batch them,
  whose embeddings need not match a lone one's to the last bit). ``--serve-sample N`` routes N evenly
  spaced prompts instead of all.

Besides the fingerprints, ``record`` writes timings.json (seconds per path; the graph's start phases) and
copies the Serve logs of the graph it started to serve-logs/ (replica start-up timestamps).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = "import sys; from app.cli import main; sys.exit(main())"
EXEMPLARS = ("app/calibration/exemplars/exemplars.jsonl", "app/routing/exemplars/exemplars.jsonl")
VOLATILE = ("router_latency_ms",)  # fields of a /v1/route body that are timings, not decisions
csv.field_size_limit(1 << 26)


# --- the prompts --------------------------------------------------------------------------------
def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _request(row: dict) -> dict:
    """What the router is asked about a data row, as ``score`` and ``/v1/route`` both take it."""
    if row.get("messages") is not None:
        return {"messages": row["messages"]}
    return {"prompt": row.get("prompt", row.get("question"))}


def calibration_files(data: Path, exemplars: Path) -> list[Path]:
    """The files `make artifact` reads, in app.calibration.data.load_shared_dir's order, exemplars first."""
    pair = "llama31_8b_vs_70b"  # app.calibration.data.LLAMA31, the pair files load_shared_dir reads by default
    shared = sorted((data / "routellm/mmlu/responses").glob("mmlu_*.csv")) + [
        data / "routellm/gsm8k/gsm8k_responses.csv",
        data / "grade-school-math/example_model_solutions.jsonl",
        data / f"mmlu_pro/{pair}.csv",
        *(data / f"zeroeval/{kind}_{pair}.csv" for kind in ("gsm8k", "math_l5", "crux")),
        data / "arena-hard-auto/data/arena-hard-v0.1/question.jsonl",
    ]
    return [exemplars] + [p for p in shared if p.is_file()]


def write_prompts(files: list[Path], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for path in files:
            for row in _rows(path):
                f.write(json.dumps(_request(row)) + "\n")
                n += 1
    return n


# --- the user-facing paths, as subprocesses on the tree under test ------------------------------
def _env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(root: Path, argv: list[str], timeout_s: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, cwd=cwd or root, env=_env(root), capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p


def cli(root: Path, *args: str, timeout_s: float = 1800, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run(root, [sys.executable, "-c", CLI, *args], timeout_s, cwd)


def record_score(root: Path, prompts: Path, out: Path) -> None:
    scored = out / "score.output.jsonl"  # kept whole: its lines hold the prompts as written (not ASCII-escaped)
    p = cli(root, "score", "--input", str(prompts), "--output", str(scored))
    rows = [json.loads(line) for line in scored.read_text(encoding="utf-8").split("\n") if line.strip()]
    (out / "score.jsonl").write_text("".join(json.dumps({"score": r["score"], "tier": r["tier"]}) + "\n" for r in rows))
    (out / "score.summary.txt").write_text(p.stderr.strip().splitlines()[-1] + "\n")


def record_show(root: Path, out: Path) -> None:
    (out / "show.json").write_text(cli(root, "show", "--json").stdout)


def record_evaluate(root: Path, data: Path, out: Path) -> None:
    # run in an empty folder with a relative --plot-dir: the report names its plots the same in every record
    with tempfile.TemporaryDirectory() as tmp:
        p = cli(root, "evaluate", "--data", str(data), "--plot-dir", "plots", "--json", str(out.resolve() / "evaluate.json"), cwd=Path(tmp))
    (out / "evaluate.txt").write_text(p.stdout)


def record_serve(root: Path, prompts: Path, out: Path, opts) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "serve-route", "--prompts", str(prompts.resolve())]
    argv += ["--out", str(out.resolve()), "--config", opts.config, "--concurrency", str(opts.concurrency)]
    argv += ["--sample", str(opts.serve_sample)]
    run(root, argv, opts.serve_timeout_s)
    return json.loads((out / "serve.timings.json").read_text())


# --- the served graph (runs in its own process, `serve-route`) ----------------------------------
def _local_graph():
    """``app.serve.local.local_graph`` of the tree under test, else of this script's tree (old trees lack it)."""
    try:
        from app.serve.local import local_graph
    except ImportError:
        spec = importlib.util.spec_from_file_location("_local_graph", Path(__file__).resolve().parents[1] / "app/serve/local.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        local_graph = mod.local_graph
    return local_graph


def sample(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when ``k`` is 0 or at least ``n``)."""
    return list(range(n)) if not k or k >= n else [i * n // k for i in range(k)]


async def _route_all(url: str, bodies: list[dict], concurrency: int) -> list[dict]:
    import asyncio

    import httpx

    gate = asyncio.Semaphore(concurrency)

    async def one(client, body):
        async with gate:
            r = await client.post("/v1/route", json=body)
        d = r.json()
        for k in VOLATILE:
            d.pop(k, None)
        return {"status": r.status_code, "body": d}

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        return await asyncio.gather(*(one(client, b) for b in bodies))


def _copy_serve_logs(out: Path) -> None:
    try:
        import ray._private.worker as worker  # the session folder of the cluster this process started

        logs = Path(worker._global_node.get_session_dir_path()) / "logs"
        shutil.copytree(logs / "serve", out / "serve-logs", dirs_exist_ok=True)
        for f in [*logs.glob("worker-*.err"), *logs.glob("worker-*.out")]:  # the replicas' output: vLLM's start-up lines
            if 0 < f.stat().st_size < 4 << 20:
                shutil.copy(f, out / "serve-logs" / f.name)
    except Exception as e:  # the logs are for reading, not for the comparison
        print(f"serve logs not copied: {e!r}", file=sys.stderr)


def serve_route(opts) -> int:
    import asyncio

    import yaml

    args = yaml.safe_load(Path(opts.config).read_text())["applications"][0]["args"]
    bodies = [json.loads(line) for line in Path(opts.prompts).read_text(encoding="utf-8").split("\n") if line]
    idx = sample(len(bodies), opts.sample)
    out, t = Path(opts.out), {"start": time.monotonic()}
    with _local_graph()(args, name="decisions") as url:
        t["ready"] = time.monotonic()
        results = asyncio.run(_route_all(url, [bodies[i] for i in idx], opts.concurrency))
        t["routed"] = time.monotonic()
        _copy_serve_logs(out)
    t["stopped"] = time.monotonic()
    (out / "serve.jsonl").write_text("".join(json.dumps({"i": i, **r}) + "\n" for i, r in zip(idx, results)))
    timings = {"serve_start_s": t["ready"] - t["start"], "serve_route_s": t["routed"] - t["ready"], "serve_stop_s": t["stopped"] - t["routed"]}
    (out / "serve.timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    return 0


# --- record / compare ---------------------------------------------------------------------------
def record(opts) -> int:
    root, out = Path.cwd(), Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(opts.data).resolve()
    exemplars = Path(opts.exemplars) if opts.exemplars else next((root / e for e in EXEMPLARS if (root / e).is_file()), None)
    if exemplars is None or not data.is_dir():
        raise SystemExit(f"need --data (a directory: {data}) and --exemplars (tried {', '.join(EXEMPLARS)})")
    prompts = out / "prompts.jsonl"
    n = write_prompts(calibration_files(data, exemplars), prompts)
    saved = out / "timings.json"  # a record made in several runs (--paths) keeps every run's timings
    timings: dict = {**(json.loads(saved.read_text()) if saved.is_file() else {}), "prompts": n}
    steps = {
        "show": lambda: record_show(root, out),
        "score": lambda: record_score(root, prompts, out),
        "evaluate": lambda: record_evaluate(root, data, out),
        "serve": lambda: timings.update(record_serve(root, prompts, out, opts)),
    }
    for name in opts.paths:
        t0 = time.monotonic()
        steps[name]()
        timings[f"{name}_s"] = round(time.monotonic() - t0, 1)
        print(f"{name}: {timings[f'{name}_s']} s", file=sys.stderr)
    saved.write_text(json.dumps(timings, indent=1) + "\n")
    return 0


def _leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, x


def json_diff(a, b) -> tuple[int, int, float]:
    """(leaves, leaves that differ, max |difference| of numeric leaves) of two JSON values."""
    la, lb = dict(_leaves(a)), dict(_leaves(b))
    differ, worst = 0, 0.0
    for k in la.keys() | lb.keys():
        x, y = la.get(k), lb.get(k)
        if x != y or type(x) is not type(y):
            differ += 1
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
                worst = max(worst, abs(x - y))
    return len(la.keys() | lb.keys()), differ, worst


def _decisions(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().split("\n") if line]
    return [{"i": r.get("i", n), "status": r.get("status", 200), **r.get("body", r)} for n, r in enumerate(rows)]


def compare_decisions(a: list[dict], b: list[dict]) -> dict:
    """Per prompt (matched by index): scores and tiers that differ, the largest |score difference|, other fields."""
    bi = {r["i"]: r for r in b}
    common = [(r, bi[r["i"]]) for r in a if r["i"] in bi]
    score = "complexity_score" if a and "complexity_score" in a[0] else "score"
    diffs = [abs(x.get(score, 0) - y.get(score, 0)) for x, y in common]

    def rest(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in (score, "tier")}

    return {
        "prompts": len(a), "other_side": len(b), "matched": len(common),
        "scores_differ": sum(x.get(score) != y.get(score) for x, y in common),
        "tiers_differ": sum(x.get("tier") != y.get("tier") for x, y in common),
        "max_abs_score_diff": max(diffs, default=0.0),
        "other_fields_differ": sum(rest(x) != rest(y) for x, y in common),
        "router_llm_fallbacks": f"{sum(bool(x.get('llm_fallback')) for x in a)}/{sum(bool(y.get('llm_fallback')) for y in b)}",
    }  # fmt: skip


def compare(opts) -> int:
    base, new = Path(opts.base), Path(opts.new)
    bad = False
    for name in ("prompts.jsonl",):
        same = (base / name).read_bytes() == (new / name).read_bytes()
        print(f"prompts: {'identical' if same else 'DIFFER (the two records used different prompts)'}")
        bad |= not same
    for name in ("score.jsonl", "serve.jsonl"):
        if not (base / name).is_file() or not (new / name).is_file():
            print(f"{name.split('.')[0]}: not in both records")
            continue
        c = compare_decisions(_decisions(base / name), _decisions(new / name))
        differs = c["prompts"] != c["other_side"] or c["matched"] != c["prompts"] or c["scores_differ"] or c["tiers_differ"] or c["other_fields_differ"]
        bad |= bool(differs)
        print(f"{name.split('.')[0]}: {'DIFFERS' if differs else 'identical'} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    for name in ("show.json", "evaluate.json"):
        if (base / name).is_file() and (new / name).is_file():
            leaves, differ, worst = json_diff(json.loads((base / name).read_text()), json.loads((new / name).read_text()))
            bad |= bool(differ)
            print(f"{name.split('.')[0]} (json): {'DIFFERS' if differ else 'identical'} leaves {leaves}, differ {differ}, max_abs_diff {worst}")
    if (base / "evaluate.txt").is_file() and (new / "evaluate.txt").is_file():
        same = (base / "evaluate.txt").read_bytes() == (new / "evaluate.txt").read_bytes()
        bad |= not same
        print(f"evaluate (printed report): {'identical' if same else 'DIFFERS'}")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="fingerprint the tree in the working directory (also PYTHONPATH)")
    r.add_argument("--out", required=True)
    r.add_argument("--data", default="../shared/data", help="the shared calibration data directory")
    r.add_argument("--exemplars", help=f"the exemplars file (default: the first of {', '.join(EXEMPLARS)})")
    r.add_argument("--paths", nargs="+", default=["show", "score", "evaluate", "serve"], choices=["show", "score", "evaluate", "serve"])
    r.add_argument("--config", default="configs/local.yaml", help="the graph's Serve config (its first application's args)")
    r.add_argument("--concurrency", type=int, default=1, help="concurrent /v1/route requests (1: each prompt embedded alone)")
    r.add_argument("--serve-sample", type=int, default=0, help="route this many evenly spaced prompts (0: all)")
    r.add_argument("--serve-timeout-s", type=float, default=3600)
    c = sub.add_parser("compare", help="compare two records; exit 1 when anything differs")
    c.add_argument("base")
    c.add_argument("new")
    s = sub.add_parser("serve-route", help="(internal) route the prompts on a local graph")
    s.add_argument("--prompts", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--config", required=True)
    s.add_argument("--concurrency", type=int, default=1)
    s.add_argument("--sample", type=int, default=0)
    opts = ap.parse_args()
    return {"record": record, "compare": compare, "serve-route": serve_route}[opts.cmd](opts)


if __name__ == "__main__":
    raise SystemExit(main())
