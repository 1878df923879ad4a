"""The ladder's part of ``tierroute evaluate`` and ``calibrate``: ``--ladder MODEL,MODEL,...`` (cheapest first).

``evaluate --ladder`` reads ladder data (:mod:`app.calibration.ladder_data`: the shared data directory's pair
files joined on the question id, or a JSONL/CSV ladder file), prices each tier (:mod:`app.calibration.ladder_prices`)
and, per source, writes the nested quality-vs-cost curves of the ladder, its two-tier sub-ladders and each
fixed tier to ``<plot-dir>/ladder-<source>.png`` and the report (text; ``--json``) -- see docs/ladder.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.calibration.data import DataError


def add_arguments(p: argparse.ArgumentParser, calibrate: bool) -> None:
    g = p.add_argument_group("ladder of tiers (docs/ladder.md)")
    g.add_argument("--ladder", help="the tiers' models (score columns), cheapest first, e.g. llama-3.1-8b,llama-3.1-70b,gpt-4o")
    g.add_argument("--prices", help="USD per 1M input/output tokens per model over the defaults, e.g. gpt-4o=2.5/10,my-model=0.2/0.2")
    g.add_argument("--sources", help="with a shared-layout --data directory: these sources only (gsm8k,math_l5,crux,mmlu_pro)")
    if calibrate:
        t = g.add_mutually_exclusive_group()
        t.add_argument("--tier-shares", help="target share per tier on the calibration mix (or --traffic), e.g. 0.6,0.3,0.1")
        t.add_argument("--target-quality", type=float, help="the cheapest thresholds reaching this share of the top tier's mean score, e.g. 0.95")
        g.add_argument("--ladder-mode", choices=["cascade", "route"], default="cascade", help="cascade (the verifier reads each tier's answer; default) or route (before generation)")
    else:
        g.add_argument("--variants", help="comma-separated subset of: " + ", ".join(_variant_keys()))
        g.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")


def _variant_keys() -> list[str]:
    from app.calibration.ladder_eval import VARIANTS

    return [v.scorer for v in VARIANTS]


def parse_ladder(text: str | None) -> list[str]:
    tiers = [t.strip() for t in (text or "").split(",") if t.strip()]
    if len(tiers) < 2:
        raise ValueError(f"--ladder needs at least two models, cheapest first (got {text!r})")
    if len(set(tiers)) != len(tiers):
        raise ValueError(f"--ladder names a model twice: {tiers}")
    return tiers


def load_inputs(args, tiers: list[str], need_embeddings: bool):
    """Per source: its :class:`~app.calibration.ladder_eval.SourceInputs` (costs priced, embeddings when needed)."""
    import numpy as np

    from app.calibration.ladder_data import load_ladder
    from app.calibration.ladder_eval import SourceInputs
    from app.calibration.ladder_prices import parse_prices, row_costs

    prices = parse_prices(args.prices)
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    data = load_ladder(args.data, tiers, sources)
    print(f"ladder data: {data.summary()}", file=sys.stderr)
    embed = _embedder() if need_embeddings else None
    out = {}
    for source in data.sources():
        d = data.of_source(source)
        costs = row_costs(d.rows, tiers, prices)
        emb = embed([r.prompt for r in d.rows]) if embed else None
        out[source] = SourceInputs(d, {m: costs[:, k] for k, m in enumerate(tiers)}, None if emb is None else np.asarray(emb))
    return out, data


def _embedder():
    from app.calibration.prepared import cached_embedder

    return cached_embedder(progress=False)[0]


def run_ladder_eval(args) -> int:
    from app.calibration.ladder_eval import VARIANTS, evaluate_source, plot
    from app.calibration.ladder_report import format_source, jsonable

    tiers = parse_ladder(args.ladder)
    keys = [k.strip() for k in args.variants.split(",")] if args.variants else [v.scorer for v in VARIANTS]
    unknown = set(keys) - {v.scorer for v in VARIANTS}
    if unknown:
        raise ValueError(f"--variants: unknown {sorted(unknown)} (known: {', '.join(v.scorer for v in VARIANTS)})")
    if args.folds < 3:
        raise ValueError(f"--folds must be at least 3 (nested: the inner cross-validation uses one fewer), got {args.folds}")
    if args.bootstrap < 10:
        raise ValueError(f"--bootstrap must be at least 10, got {args.bootstrap}")
    variants = [v for v in VARIANTS if v.scorer in keys]
    inputs, data = load_inputs(args, tiers, any(v.scorer == "embedding" for v in variants))
    report = {"ladder": tiers, "data": data.checksums, "dropped_ids": {f: len(i) for f, i in data.dropped.items()}, "sources": {}}
    for source, inp in inputs.items():
        if len(inp.data.rows) < 5 * args.folds:
            raise DataError(f"{source}: {len(inp.data.rows)} rows; the nested evaluation needs at least {5 * args.folds}")
        res = evaluate_source(inp, tiers, variants, args.folds, args.folds - 1, args.seed, args.bootstrap)
        print(format_source(source, res))
        path = plot(source, tiers, res["served"], res["fixed"], inp.costs[tiers[-1]], float(inp.score(tiers[-1]).mean()),
                    Path(args.plot_dir) / f"ladder-{source}-{'-'.join(tiers)}.png", res)  # fmt: skip
        print(f"  -> {path}")
        report["sources"][source] = jsonable(res) | {"plot": str(path)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def parse_shares(text: str, n_tiers: int) -> list[float]:
    try:
        out = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--tier-shares: {text!r} is not comma-separated numbers, e.g. 0.6,0.3,0.1") from None
    if len(out) != n_tiers or any(x < 0 for x in out) or abs(sum(out) - 1) > 1e-6:
        raise ValueError(f"--tier-shares: {n_tiers} non-negative shares summing to 1 are needed (one per --ladder tier), got {text!r}")
    return out


def run_ladder_calibrate(args) -> int:
    """``calibrate --ladder``: fit and write a ladder artifact (see app.calibration.ladder_build)."""
    import numpy as np

    from app.calibration.ladder_build import build_ladder, format_card
    from app.calibration.ladder_eval import SourceInputs
    from app.calibration.ladder_prices import parse_prices, row_costs

    tiers = parse_ladder(args.ladder)
    if not args.output:
        raise ValueError("--output is required (where to write the ladder artifact)")
    if args.traffic and (args.ladder_mode != "route" or args.tier_shares is None):
        raise ValueError(
            "--traffic with --ladder sets --tier-shares on your prompts before generation: it needs --ladder-mode route and "
            "--tier-shares (a climb's scores need each tier's answers; a quality target needs outcomes)"
        )
    if args.tier_shares is None and args.target_quality is None:
        raise ValueError("--ladder needs --tier-shares (e.g. 0.6,0.3,0.1) or --target-quality (e.g. 0.95)")
    shares_ = parse_shares(args.tier_shares, len(tiers)) if args.tier_shares else None
    if args.target_quality is not None and not 0 < args.target_quality <= 1.5:
        raise ValueError(f"--target-quality is a share of the top tier's mean score, in (0, 1.5], got {args.target_quality}")
    if args.folds < 3:
        raise ValueError(f"--folds must be at least 3, got {args.folds}")
    from app.calibration.ladder_data import load_ladder

    prices = parse_prices(args.prices)
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    data = load_ladder(args.data, tiers, sources)
    print(f"ladder data: {data.summary()}", file=sys.stderr)
    costs = row_costs(data.rows, tiers, prices)
    emb, info = None, None
    if args.ladder_mode == "route":
        from app.calibration.prepared import cached_embedder

        embed, info = cached_embedder(args.embedding_model, args.prefix)
        emb = np.asarray(embed([r.prompt for r in data.rows]))
    inp = SourceInputs(data, {m: costs[:, k] for k, m in enumerate(tiers)}, emb)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # many small logistic fits: more BLAS threads only cost time
        art = build_ladder(inp, tiers, prices, args.ladder_mode, shares_, args.target_quality, args.folds, args.seed, info, getattr(args, "command_line", None))
    if args.traffic:
        from app.calibration.ladder_build import retarget
        from app.traffic import read_requests

        _, texts, _ = read_requests(args.traffic)
        print(f"traffic: {len(texts)} prompts from {args.traffic}", file=sys.stderr)
        art = retarget(art, texts, np.asarray(embed(texts)), shares_, Path(args.traffic).name)
    art.save(args.output)
    print(format_card(art) + f"\nwrote {args.output}")
    return 0
