"""Shadow evaluation on live traffic: a sampled share of routed requests, judged off the response path.

For a sampled request the user's answer is already on its way back. Afterwards, in a task of its
own, the tier the request was *not* routed to answers the same messages, and a judge compares the
two answers in both orders (the prompt and parse of ``tierroute label``:
:mod:`app.feedback.label`). The outcome is one JSON line in the ``calibrate`` format (``weak`` /
``strong`` in [0, 1], plus the tier it was routed to) in a bounded, rotating log, and counted in
Prometheus metrics, so the share of tier-1 answers as good as tier 2's, and of tier-2 requests
tier 1 would have served, is known in production.

It never delays or fails the user's request: :meth:`Shadow.offer` only samples, checks the budget
and starts a task, and never raises; the task's failures are counted and logged, not propagated.
What it may cost is bounded three ways: the sample rate, at most ``max_in_flight`` jobs at once
(more are skipped), and ``tokens_per_hour`` -- a job reserves an upper bound of its tokens before
it starts (skipped when the last hour's reservations leave no room) and is charged what it used.
All bounds are per ingress replica. No Ray here: the ingress passes the calls to the tiers in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path

from app.feedback.label import CHOICES, JUDGE_PROMPT_VERSION, judge_messages, row_id, verdict_scores
from app.routing.text import estimate_tokens
from app.serve.config import ShadowConfig
from app.serve.fallback import other

logger = logging.getLogger("tierroute.shadow")

JUDGE_OVERHEAD_TOKENS = 300  # the judge's instructions and fences, per verdict (an upper bound)

# (tier, messages, max_tokens, extra request fields) -> (answer text, usage)
Ask = Callable[[int, list[dict], int, dict], Awaitable[tuple[str, dict]]]


class HourBudget:
    """Tokens reserved in the last hour stay within ``per_hour`` (a sliding window, not a refilling bucket)."""

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.per_hour = per_hour
        self._clock = clock
        self._spent: deque[list] = deque()  # [time, tokens]

    def used(self) -> int:
        now = self._clock()
        while self._spent and self._spent[0][0] <= now - 3600:
            self._spent.popleft()
        return sum(t for _, t in self._spent)

    def reserve(self, tokens: int) -> list | None:
        """A reservation of ``tokens`` now, or None when it would pass the hour's cap."""
        if self.used() + tokens > self.per_hour:
            return None
        entry = [self._clock(), tokens]
        self._spent.append(entry)
        return entry

    @staticmethod
    def settle(entry: list, tokens: int) -> None:
        """Charge what a job used instead of what it reserved (never more than reserved)."""
        entry[1] = min(entry[1], max(0, tokens))


class _PrivateRotatingFile(RotatingFileHandler):
    """Rotating, and every file it opens is readable by its owner only (outcome rows hold prompts)."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.chmod(self.baseFilename, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


class OutcomeLog:
    """Outcome rows appended to a JSONL file that rotates at ``max_bytes`` (``name.1.jsonl``, ...), kept to ``backups`` files."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = _PrivateRotatingFile(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.namer = lambda name: _rotated_name(name, path)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"tierroute.shadow.outcomes.{path}")
        self._logger.handlers = [self._handler]
        self._logger.propagate = False  # outcome rows hold prompts: never in the replica's default log
        self._logger.setLevel(logging.INFO)

    def write(self, row: dict) -> None:
        self._logger.info(json.dumps(row, ensure_ascii=False))

    def close(self) -> None:
        self._handler.close()


def _rotated_name(default: str, path: Path) -> str:
    """``outcomes.jsonl.2`` -> ``outcomes.2.jsonl``: rotated files stay JSONL that calibrate and evaluate read."""
    n = default.rsplit(".", 1)[1]
    return str(path.with_name(f"{path.stem}.{n}{path.suffix}"))


class Shadow:
    def __init__(
        self,
        spec: ShadowConfig,
        models: dict[int, str],
        ask: Ask,
        log: OutcomeLog,
        count: Callable[..., None] = lambda *a, **k: None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.spec = spec
        self.models = models
        self.judge_tier = {m: t for t, m in models.items()}[spec.judge_model or models[2]]
        self._ask = ask
        self.log = log
        self._count = count  # count(event, **tags): the ingress's metrics
        self.counts: Counter[str] = Counter()  # "skipped:budget", "failed:timeout", "judged:1", ...
        self.budget = HourBudget(spec.tokens_per_hour, clock)
        self._rng = rng or random.Random()
        self.tasks: set[asyncio.Task] = set()
        self.outcomes = {1: [0, 0], 2: [0, 0]}  # routed tier -> [judged, tier 1 as good]

    def sampled(self) -> bool:
        """Whether to shadow this request: decided before it is served (a sampled stream keeps its text)."""
        return self._rng.random() < self.spec.sample_rate

    def offer(self, routed_tier: int, messages: list[dict], answer: str | None, usage: dict | None, decision: dict) -> bool:
        """Start judging a sampled, served request off the response path; False when skipped. Never raises."""
        try:
            return self._offer(routed_tier, messages, answer, usage or {}, decision)
        except Exception:
            logger.exception("shadow: offer failed; the request is not shadowed")
            return False

    def _skip(self, cause: str) -> bool:
        self.counts[f"skipped:{cause}"] += 1
        self._count("skipped", cause=cause)
        return False

    def _failed(self, cause: str) -> None:
        self.counts[f"failed:{cause}"] += 1
        self._count("failed", cause=cause)

    def state(self) -> dict:
        """For operators and tests: jobs in flight, tokens charged in the last hour, event counts, estimates."""
        return {"in_flight": len(self.tasks), "tokens_last_hour": self.budget.used(), "counts": dict(self.counts), **self.estimates()}

    def _offer(self, routed_tier, messages, answer, usage, decision) -> bool:
        if not answer:
            return self._skip("no_answer")
        out_tokens = int(usage.get("completion_tokens") or estimate_tokens(answer))
        if out_tokens > self.spec.max_tokens:  # a shorter shadow answer would be judged unfairly
            return self._skip("too_long")
        if len(self.tasks) >= self.spec.max_in_flight:
            return self._skip("busy")
        in_tokens = int(usage.get("prompt_tokens") or estimate_tokens("".join(str(m.get("content") or "") for m in messages)))
        bound = in_tokens + self.spec.max_tokens + 2 * (in_tokens + out_tokens + self.spec.max_tokens + JUDGE_OVERHEAD_TOKENS + len(CHOICES))
        entry = self.budget.reserve(bound)
        if entry is None:
            return self._skip("budget")
        task = asyncio.get_running_loop().create_task(self._run(routed_tier, messages, answer, usage, decision, entry))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.counts["started"] += 1
        return True

    async def _run(self, routed_tier, messages, answer, usage, decision, entry) -> None:
        spent = 0
        try:
            row, spent = await asyncio.wait_for(self._judge(routed_tier, messages, answer, usage, decision), self.spec.timeout_s)
        except asyncio.TimeoutError:
            self._failed("timeout")  # a job given up on keeps its reservation: what it used is unknown
            return
        except Exception as e:
            self._failed("judge" if isinstance(e, JudgeError) else "error")
            logger.warning("shadow: a job failed (%s)", type(e).__name__)  # no exception text: it may quote the prompt
            return  # keeps its reservation too
        HourBudget.settle(entry, spent)
        self.log.write(row)
        ok = row["weak"] >= row["strong"]
        judged = self.outcomes[routed_tier]
        judged[0] += 1
        judged[1] += ok
        self.counts[f"judged:{routed_tier}"] += 1
        self._count("outcome", routed_tier=routed_tier, verdict="tier1_suffices" if ok else "tier2_needed", tokens=spent)
        self._count("estimate", **self.estimates())

    async def _judge(self, routed_tier, messages, answer, usage, decision) -> tuple[dict, int]:
        shadow_answer, su = await self._ask(other(routed_tier), messages, self.spec.max_tokens, {})
        a1, a2 = (answer, shadow_answer) if routed_tier == 1 else (shadow_answer, answer)
        request = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)
        extra = {"temperature": 0.0, "structured_outputs": {"choice": list(CHOICES)}}
        (v1, j1), (v2, j2) = await asyncio.gather(
            self._ask(self.judge_tier, judge_messages(request, a1, a2), 4, extra),
            self._ask(self.judge_tier, judge_messages(request, a2, a1), 4, extra),
        )
        v1, v2 = v1.strip(), v2.strip()
        if v1 not in CHOICES or v2 not in CHOICES:
            raise JudgeError("the judge's verdict is not one of the choices")
        weak, strong = verdict_scores(v1, v2)
        tokens = {"shadow_answer": _total(su), "judge": _total(j1) + _total(j2)}
        row = {
            "id": row_id({"messages": messages}), "messages": messages, "weak": weak, "strong": strong, "verdicts": [v1, v2],
            "source": "shadow", "routed_tier": routed_tier, "complexity_score": decision.get("complexity_score"),
            "threshold": decision.get("threshold"), "kind": decision.get("kind"),
            "judge": self.models[self.judge_tier], "judge_prompt": JUDGE_PROMPT_VERSION,
            "tier1_model": self.models[1], "tier2_model": self.models[2], "tokens": tokens,
            "ts": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        return row, tokens["shadow_answer"] + tokens["judge"]

    def estimates(self) -> dict[str, float]:
        """This replica's running estimates: tier 1 as good as tier 2 where routed to tier 1; where routed to tier 2."""
        (n1, ok1), (n2, ok2) = self.outcomes[1], self.outcomes[2]
        return {"tier1_ok": ok1 / n1 if n1 else float("nan"), "tier2_avoidable": ok2 / n2 if n2 else float("nan")}


class JudgeError(RuntimeError):
    pass


def _total(usage: dict | None) -> int:
    return int((usage or {}).get("total_tokens") or 0)
