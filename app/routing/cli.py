"""``tierroute route`` and ``tierroute demo``: route prompts with an artifact and show the decisions.

The top-level CLI (:mod:`app.cli`) calls ``add_parser(sub, command)`` for each of :data:`COMMANDS` and
``run(args)``. Heavy imports (the router, the embedder) wait for the command, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse

COMMANDS = ("route", "demo")

DEMO_PROMPTS = [
    "I was charged twice for my order #4411, can you help?",
    "Convert this to JSON: name=Ada, role=admin, active=yes",
    "What does HTTP status 404 mean?",
    "Prove that the square root of 2 is irrational.",
    "Refactor this function to avoid the N+1 query and explain the trade-offs:\n"
    "def totals(users):\n    return {u.id: sum(o.amount for o in Order.objects.filter(user=u)) for u in users}",
    "A train leaves at 3:40 pm at 48 mph; a second leaves the same station at 4:10 pm at 60 mph on the "
    "same track. At what time does the second catch the first, and how far from the station?",
]


def add_artifact_arg(p: argparse.ArgumentParser) -> None:
    """``--artifact``, as every command that loads an artifact takes it."""
    p.add_argument("--artifact", help="calibration artifact (default: the one shipped with tierroute)")


def add_parser(sub, command: str) -> argparse.ArgumentParser:
    if command == "route":
        p = sub.add_parser("route", help="route one prompt and print the decision as JSON")
        p.add_argument("prompt", help="the prompt text")
    else:
        p = sub.add_parser("demo", help="route a few example prompts and print how each is routed")
    add_artifact_arg(p)
    return p


def run(args) -> int:
    return {"route": run_route, "demo": run_demo}[args.command](args)


def run_route(args) -> int:
    from app.routing.router import Router

    print(Router.load(args.artifact).route(args.prompt).model_dump_json(indent=1))
    return 0


def run_demo(args) -> int:
    from app.routing.router import Router

    router = Router.load(args.artifact)
    print(f"artifact: {router.artifact.build.get('chosen', router.artifact.scorer.family)}, threshold {router.threshold:.4f}")
    for prompt in DEMO_PROMPTS:
        d = router.route(prompt)
        first = prompt.splitlines()[0]
        print(f"tier {d.tier}  score {d.complexity_score:.3f}  conf {d.confidence:.2f}  {d.router_latency_ms:6.1f} ms  {first[:70]}")
    return 0
