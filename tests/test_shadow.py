"""Shadow evaluation's own logic with stand-in tiers (unit-test doubles); the real graph: tests/test_serve_shadow.py."""

import asyncio
import json
import random

import pytest

from app.calibration.data import load_file
from app.serve.config import ShadowConfig
from app.serve.shadow import HourBudget, OutcomeLog, Shadow

MODELS = {1: "small", 2: "large"}
MSGS = [{"role": "user", "content": "Prove that there are infinitely many primes."}]
DECISION = {"complexity_score": 0.4, "threshold": 0.5, "kind": "chat"}
USAGE = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}


class Tiers:
    """Stand-in for the tier calls: answers, a judge reply, or a judge that fails or hangs."""

    def __init__(self, judge="tie", hang=False, fail=False):
        self.judge, self.hang, self.fail = judge, hang, fail
        self.calls = []

    async def __call__(self, tier, messages, max_tokens, extra):
        self.calls.append((tier, max_tokens, bool(extra)))
        if extra:  # a judge call
            if self.hang:
                await asyncio.Event().wait()
            if self.fail:
                raise RuntimeError("judge down: secret prompt text")
            return self.judge, {"total_tokens": 100}
        return f"answer from tier {tier}", {"total_tokens": 50}


class Counts:
    def __init__(self):
        self.events = []

    def __call__(self, event, **tags):
        self.events.append((event, tags))

    def of(self, event):
        return [t for e, t in self.events if e == event]


def make(tmp_path, tiers, clock=None, **spec):
    counts = Counts()
    log = OutcomeLog(tmp_path / "out.jsonl", 1 << 20, 2)
    kw = {"clock": clock} if clock else {}
    s = Shadow(ShadowConfig(enabled=True, sample_rate=1.0, **spec), MODELS, tiers, log, counts, rng=random.Random(0), **kw)
    return s, counts, log


async def settle(shadow):
    while shadow.tasks:
        await asyncio.sleep(0.01)


def test_a_judged_request_is_an_outcome_row_calibrate_reads(tmp_path):
    tiers = Tiers(judge="A")  # A wins in both orders: each answer in turn

    async def go():
        s, counts, log = make(tmp_path, tiers)
        assert s.offer(1, MSGS, "answer from tier 1", USAGE, DECISION)
        await settle(s)
        return s, counts, log

    s, counts, log = asyncio.run(go())
    row = json.loads(log.path.read_text())
    assert row["routed_tier"] == 1 and row["source"] == "shadow" and row["verdicts"] == ["A", "A"]
    assert (row["weak"], row["strong"]) == (0.5, 0.5) and row["judge"] == "large" and row["messages"] == MSGS
    assert row["tokens"] == {"shadow_answer": 50, "judge": 200}
    # the other tier answered (tier 2), then two judge calls on the judge (tier 2 by default)
    assert tiers.calls[0] == (2, 256, False) and [c[0] for c in tiers.calls[1:]] == [2, 2]
    assert counts.of("outcome") == [{"routed_tier": 1, "verdict": "tier1_suffices", "tokens": 250}]
    assert s.estimates()["tier1_ok"] == 1.0
    ex = load_file(log.path).examples[0]
    assert ex.source == "shadow" and ex.weak == 0.5 and ex.target == 0


def test_a_failing_or_hanging_judge_never_delays_or_fails_the_offer(tmp_path):
    async def go(tiers):
        s, counts, log = make(tmp_path, tiers, timeout_s=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert s.offer(2, MSGS, "answer from tier 2", USAGE, DECISION) is True
        returned = loop.time() - t0
        pending = len(s.tasks)  # the job is still running when the request's answer would be sent
        await settle(s)
        return returned, pending, counts, log

    for tiers, cause in ((Tiers(hang=True), "timeout"), (Tiers(fail=True), "error"), (Tiers(judge="maybe"), "judge")):
        returned, pending, counts, log = asyncio.run(go(tiers))
        assert returned < 0.05 and pending == 1
        assert counts.of("failed") == [{"cause": cause}] and log.path.read_text() == ""


def test_offer_never_raises(tmp_path):
    s, counts, _ = make(tmp_path, Tiers())
    # no running event loop: starting the task fails inside offer, which reports and returns False
    assert s.offer(1, MSGS, "x", USAGE, DECISION) is False


def test_budget_caps_tokens_per_hour_and_frees_them_after_the_hour(tmp_path):
    now = [0.0]
    tiers = Tiers()

    async def go():
        s, counts, _ = make(tmp_path, tiers, clock=lambda: now[0], tokens_per_hour=3000, max_tokens=64)
        started = 0
        for _ in range(10):
            started += s.offer(1, MSGS, "a", USAGE, DECISION)
            await settle(s)
        reserved_peak = s.budget.used()
        now[0] = 3601.0  # an hour later
        again = s.offer(1, MSGS, "a", USAGE, DECISION)
        await settle(s)
        return s, counts, started, again, reserved_peak

    s, counts, started, again, peak = asyncio.run(go())
    bound = 12 + 64 + 2 * (12 + 20 + 64 + 300 + 3)  # the reservation of one job
    used = 50 + 2 * 100  # what one job used (charged after it) is less than it reserved (bound)
    assert started == (3000 - bound) // used + 1  # each starts only while its whole reservation fits
    assert peak <= 3000  # what was charged never passed the cap
    assert len(counts.of("skipped")) == 10 - started and {c["cause"] for c in counts.of("skipped")} == {"budget"}
    assert again is True  # the window slid


def test_budget_charges_what_was_used_so_more_jobs_fit(tmp_path):
    b = HourBudget(1000, clock=lambda: 0.0)
    e = b.reserve(800)
    assert b.reserve(300) is None
    HourBudget.settle(e, 250)
    assert b.reserve(300) is not None and b.used() == 550
    HourBudget.settle(e, 5000)  # never more than reserved
    assert b.used() == 550


def test_busy_and_too_long_are_skipped(tmp_path):
    async def go():
        s, counts, _ = make(tmp_path, Tiers(hang=True), max_in_flight=2, timeout_s=5)
        got = [s.offer(1, MSGS, "a", USAGE, DECISION) for _ in range(3)]
        long = s.offer(1, MSGS, "a", {**USAGE, "completion_tokens": 999}, DECISION)
        empty = s.offer(1, MSGS, "", USAGE, DECISION)
        for t in list(s.tasks):
            t.cancel()
        await asyncio.sleep(0)
        return got, long, empty, counts

    got, long, empty, counts = asyncio.run(go())
    assert got == [True, True, False] and long is False and empty is False
    assert [c["cause"] for c in counts.of("skipped")] == ["busy", "too_long", "no_answer"]


def test_outcome_log_rotates_and_stays_bounded(tmp_path):
    log = OutcomeLog(tmp_path / "o.jsonl", 2048, 2)
    for i in range(200):
        log.write({"i": i, "pad": "x" * 50})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["o.1.jsonl", "o.2.jsonl", "o.jsonl"]
    assert all((tmp_path / f).stat().st_size <= 2048 + 100 for f in files)
    rows = [json.loads(line) for f in files for line in (tmp_path / f).read_text().splitlines()]
    assert rows and max(r["i"] for r in rows) == 199  # the newest survive, whole lines only
    assert (tmp_path / "o.jsonl").stat().st_mode & 0o077 == 0  # prompts inside: owner only


def test_judge_must_be_a_tier():
    from app.serve.config import AppConfig

    with pytest.raises(ValueError, match="shadow.judge_model"):
        AppConfig.model_validate(
            {
                "tier1": {"model_id": "a", "model_source": "x/a", "engine_kwargs": {"enforce_eager": True, "max_model_len": 8}},
                "tier2": {"model_id": "b", "model_source": "x/b", "engine_kwargs": {"enforce_eager": True, "max_model_len": 8}},
                "shadow": {"enabled": True, "judge_model": "gpt-judge"},
            }
        )
    with pytest.raises(ValueError, match="outcomes_path"):
        ShadowConfig(outcomes_path="out.txt")


def test_evaluate_outcomes_reports_the_running_estimates(tmp_path, capsys):
    from app.cli import main

    rows = [{"routed_tier": 1, "weak": 1.0, "strong": 0.5}] * 30 + [{"routed_tier": 1, "weak": 0.0, "strong": 1.0}] * 10
    rows += [{"routed_tier": 2, "weak": 0.5, "strong": 0.5}] * 5 + [{"routed_tier": 2, "weak": 0.0, "strong": 1.0}] * 15
    d = tmp_path / "shadow"
    d.mkdir()
    lines = [json.dumps({**r, "judge": "large", "judge_prompt": "pairwise-v1", "messages": MSGS}) for r in rows]
    (d / "outcomes-a.jsonl").write_text("\n".join(lines[:35]) + "\n")
    (d / "outcomes-a.1.jsonl").write_text("\n".join(lines[35:]) + "\n{torn")
    assert main(["evaluate", "--outcomes", str(d), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["rows"] == 60 and rep["skipped_lines"] == 1
    assert rep["tier1_ok"]["share"] == 0.75 and rep["tier1_ok"]["low"] < 0.75 < rep["tier1_ok"]["high"]
    assert rep["tier2_avoidable"]["share"] == 0.25 and rep["as_good_as_tier2"]["share"] == (30 + 20) / 60
    assert "tier1_ok" in out and "75.0%" in out and "large (pairwise-v1) x60" in out
    assert main(["evaluate", "--outcomes", str(tmp_path / "none")]) == 2


def test_calibrate_reads_shadow_logs_of_every_replica_as_one_source(tmp_path, capsys):
    """The loop closes: outcome rows of two replicas' files (one rotated) recalibrate an artifact, as one source."""
    from app.cli import main
    from app.routing.artifact import load_artifact

    d = tmp_path / "shadow"
    d.mkdir()
    rows = []
    for i in range(90):
        hard = i % 3 == 0
        text = f"Prove lemma {i} by induction and derive the bound." if hard else f"What colour is item {i}?"
        weak = 0.0 if hard else 1.0
        rows.append(json.dumps({"messages": [{"role": "user", "content": text}], "weak": weak, "strong": 1.0, "routed_tier": 1 + hard, "source": "shadow"}))
    (d / "outcomes-r1.jsonl").write_text("\n".join(rows[:40]) + "\n")
    (d / "outcomes-r1.1.jsonl").write_text("\n".join(rows[40:60]) + "\n")
    (d / "outcomes-r2.jsonl").write_text("\n".join(rows[60:]) + "\n")
    files = [str(p) for p in sorted(d.glob("*.jsonl"))]
    out = tmp_path / "a.json"
    assert main(["calibrate", "--data", *files, "--folds", "3", "--output", str(out)]) == 0, capsys.readouterr().err
    art = load_artifact(out)
    assert art.build["data"]["rows"] == {"shadow": 90}
    assert "shadow" in art.build["nested_cross_validation"]["by_source"]
