"""The ``tierroute`` command line: calibrate, evaluate, score, label, route, demo, show, verify, loadtest, plan.

Each command group owns its parsers and handlers (``add_parser`` + ``run``): :mod:`app.calibration.cli`
(calibrate, evaluate, score, show), :mod:`app.feedback.cli` (label), :mod:`app.routing.cli` (route, demo), :mod:`app.verification.cli` (verify),
:mod:`app.loadtest.cli` and :mod:`app.plan.cli`. This module only assembles them and dispatches.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _commands() -> list[tuple[str, Callable, Callable]]:
    """(command, add its parser to the sub-parsers, run it), in the order ``tierroute --help`` lists them."""
    from app.calibration import cli as calibration
    from app.feedback import cli as feedback
    from app.loadtest import cli as loadtest
    from app.plan import cli as plan
    from app.routing import cli as routing
    from app.verification import cli as verification

    def of(group, command):
        return command, partial(group.add_parser, command=command), group.run

    return [
        of(calibration, "calibrate"), of(calibration, "evaluate"), of(calibration, "score"), of(feedback, "label"),
        of(routing, "route"), of(routing, "demo"), of(calibration, "show"),
        of(verification, "verify"),
        ("loadtest", loadtest.add_parser, loadtest.run), ("plan", plan.add_parser, plan.run),
    ]  # fmt: skip


def _parser(commands) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierroute",
        description="Complexity-based LLM routing: score prompts and send each to the cheapest tier that answers it well.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _, add, _ in commands:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    commands = _commands()
    args = _parser(commands).parse_args(argv)
    # what `calibrate` records as the command that built an artifact
    args.command_line = shlex.join(sys.argv if argv is None else ["tierroute", *argv])
    handler = {name: run for name, _, run in commands}[args.command]
    try:
        return handler(args)
    except (ValueError, OSError) as e:  # ArtifactError, DataError and TrafficError are ValueErrors
        print(f"tierroute {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
