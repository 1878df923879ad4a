"""Write the gold-answer task (:mod:`app.verification.gold`) to app/verification/tasks/arithmetic.jsonl.

Fixed seed: the same file comes out every time (tests check that the shipped file matches).

Usage: python scripts/make_gold_task.py [--per-cell 18] [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.verification.gold import generate  # noqa: E402

DEFAULT = ROOT / "app/verification/tasks/arithmetic.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-cell", type=int, default=18, help="items per kind and level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(DEFAULT))
    args = ap.parse_args()
    items = generate(args.per_cell, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    print(f"wrote {len(items)} items to {out}")


if __name__ == "__main__":
    main()
