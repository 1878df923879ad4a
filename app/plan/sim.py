"""Discrete-event simulation (simpy) of a serving topology: Poisson arrivals, the router's latency, a queue per
tier, and N continuous-batching replicas per tier.

A replica runs engine steps back to back while it has work. At each step boundary it admits waiting requests
(first come, first served, from its tier's one queue) while it has fewer than ``max_seqs`` running and the
prompts admitted this step total less than ``max_batched_tokens`` (at least one is admitted). The step prefills
the admitted prompts and decodes one token for every running sequence; its duration comes from a StepModel (the
roofline: it grows with the batch and its contexts). An admitted request's first token comes at the end of its
prefill step (TTFT); it finishes ``output - 1`` decode steps later.

A cascade (``Workload.parent``): an escalated request is two entries, its tier-1 answer and a tier-2 entry
whose ``parent`` is it; the tier-2 entry joins tier 2's queue when the tier-1 entry finishes (the client sees
only tier 2's answer: its ttft and e2e count from the original arrival). Per-tier figures (sizing) count a
tier-2 entry from when it joined tier 2's queue.

Requests are measured if they arrive in [warmup, warmup + seconds); arrivals stop then and the run continues
``drain`` seconds. A measured request not finished by the end is ``unfinished``: its latency is counted as the
time it had waited so far (a lower bound), and the objective fails if unfinished requests exceed 1 - percentile.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import simpy

from app.plan.remote import RemotePool
from app.plan.roofline import StepModel


@dataclass
class Workload:
    """One array entry per request, in arrival order. ``delay``: router latency before the tier's queue."""

    arrival: np.ndarray
    delay: np.ndarray
    tier: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    warmup: float
    seconds: float
    parent: np.ndarray | None = None  # cascade: the tier-1 entry an escalated tier-2 entry follows, else -1

    @property
    def parents(self) -> np.ndarray:
        return self.parent if self.parent is not None else np.full(len(self.arrival), -1)

    @property
    def has_child(self) -> np.ndarray:
        """Tier-1 entries that were escalated (the client does not see their answer)."""
        out = np.zeros(len(self.arrival), dtype=bool)
        p = self.parents
        out[p[p >= 0]] = True
        return out

    @property
    def measured(self) -> np.ndarray:
        return (self.arrival >= self.warmup) & (self.arrival < self.warmup + self.seconds)


def poisson_workload(
    rate: float, seconds: float, warmup: float, seed: int, tier2_share: float, prompt_dists: dict, output_dist,
    delay_sampler=None,
) -> Workload:  # fmt: skip
    """Poisson arrivals at ``rate`` for warmup + seconds; tier 2 with probability ``tier2_share``.

    ``prompt_dists`` maps tier -> TokenDist; ``delay_sampler(rng, n)`` draws router latencies (None: no router).
    The same seed gives the same arrivals, splits and token counts whatever the replica counts (common random
    numbers), so runs that differ only in replicas compare like with like."""
    rng = np.random.default_rng(seed)
    horizon = warmup + seconds
    n = int(rng.poisson(rate * horizon))
    arrival = np.sort(rng.uniform(0.0, horizon, n))
    tier = np.where(rng.uniform(size=n) < tier2_share, 2, 1)
    prompt = np.empty(n, dtype=np.int64)
    draws = {t: prompt_dists[t].sample(rng, n) for t in (1, 2)}  # drawn whole per tier: shares do not shift them
    for t in (1, 2):
        prompt[tier == t] = draws[t][tier == t]
    output = output_dist.sample(rng, n)
    delay = delay_sampler(rng, n) if delay_sampler is not None else np.zeros(n)
    return Workload(arrival, delay, tier, prompt, output, warmup, seconds)


@dataclass
class Pool:
    """The replicas of one tier."""

    replicas: int
    step: StepModel
    max_seqs: int
    max_batched_tokens: int = 1 << 30


class _Queue:
    """A tier's FIFO (a simpy Store) that also integrates its length over the measured window (Little's law)."""

    def __init__(self, env: simpy.Environment, t0: float, t1: float):
        self.env, self.store = env, simpy.Store(env)
        self.t0, self.t1, self.last, self.area = t0, t1, 0.0, 0.0

    def note(self) -> None:
        """Call just before the queue's length changes."""
        now = self.env.now
        lo, hi = max(self.last, self.t0), min(now, self.t1)
        if hi > lo:
            self.area += len(self.store.items) * (hi - lo)
        self.last = now


@dataclass
class SimResult:
    workload: Workload
    start: np.ndarray  # admitted to a replica (prefill starts)
    first: np.ndarray  # first token
    done: np.ndarray
    end: float
    queue_area: dict[int, float] = field(default_factory=dict)  # per tier: time-integral of queue length in window
    steps: int = 0
    generated: np.ndarray | None = None  # tokens generated by requests still running at the end
    entered: np.ndarray | None = None  # when each entry joined its tier's queue (NaN: an escalation that never did)

    @property
    def queued_at(self) -> np.ndarray:
        w = self.workload
        fed = w.arrival + w.delay
        return fed if self.entered is None else np.where(w.parents >= 0, self.entered, fed)

    def _select(self, tier: int | None, path: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(measured entries of the group, when each one's clock starts)."""
        w = self.workload
        child = w.parents >= 0
        if path is not None:  # the client's view of one path: tier 1 answered, direct to tier 2, escalated
            sel = {"tier1": (w.tier == 1) & ~w.has_child, "direct": (w.tier == 2) & ~child, "escalated": child}[path]
            return w.measured & sel, w.arrival
        if tier is None:  # every client request once: an escalated one by its tier-2 entry
            return w.measured & ~w.has_child, w.arrival
        sel = w.measured & (w.tier == tier)
        if self.entered is None or not child.any():
            return sel, w.arrival
        sel &= ~(child & np.isnan(self.entered))  # never reached tier 2: not tier 2's to count
        return sel, np.where(child, np.nan_to_num(self.entered), w.arrival)

    def metrics(self, tier: int | None = None, path: str | None = None) -> dict[str, np.ndarray]:
        """Client-side ttft, e2e, tpot (s) of measured requests (per tier: from when the tier got them).

        A request with no first token by the end is ``unfinished`` and its ttft and e2e count as its wait so far (lower
        bounds); one still generating has e2e = its time so far and tpot from the tokens it has generated."""
        w = self.workload
        sel, base = self._select(tier, path)
        first = np.where(np.isnan(self.first), self.end, self.first)[sel]
        done = np.where(np.isnan(self.done), self.end, self.done)[sel]
        arr = base[sel]
        tokens = w.output[sel].copy()
        running = ~np.isnan(self.first[sel]) & np.isnan(self.done[sel])
        if self.generated is not None:
            tokens[running] = self.generated[sel][running]
        multi = tokens > 1
        tpot = (done[multi] - first[multi]) / (tokens[multi] - 1)
        return {"ttft": first - arr, "e2e": done - arr, "tpot": tpot, "unfinished": np.isnan(self.first[sel])}

    def summary(self, tier: int | None = None, percentiles=(50, 95, 99), path: str | None = None) -> dict:
        m = self.metrics(tier, path)
        n = int(len(m["e2e"]))
        out = {"requests": n, "unfinished": int(m["unfinished"].sum())}
        for k in ("ttft", "e2e", "tpot"):
            v = m[k]
            for p in percentiles:
                out[f"{k}_p{p:g}"] = float(np.percentile(v, p)) if len(v) else float("nan")
            out[f"{k}_mean"] = float(v.mean()) if len(v) else float("nan")
        return out

    def wait(self, tier: int | None = None) -> np.ndarray:
        """Time in the tier's queue (admission - arrival at the tier) of measured, admitted requests."""
        w = self.workload
        sel = w.measured & ~np.isnan(self.start)
        if tier is not None:
            sel &= w.tier == tier
        return (self.start - self.queued_at)[sel]


class _Replica:
    """One continuous-batching engine; ``heap`` and ``step`` stay readable for the sequences running at the end."""

    def __init__(self, env, q: _Queue, pool: Pool, w: Workload, start, first, done, counter, finished=None):
        self.env, self.q, self.pool, self.w = env, q, pool, w
        self.start, self.first, self.done, self.counter = start, first, done, counter
        self.finished = finished or (lambda i: None)  # called with each request as it finishes (cascade hand-off)
        self.heap: list[tuple[int, int]] = []  # (step at which it finishes, request)
        self.step = 0

    def run(self):
        env, q, pool, heap = self.env, self.q, self.pool, self.heap
        prompt, output = self.w.prompt, self.w.output
        ctx = 0.0  # context tokens of the running sequences
        while True:
            joiners: list[int] = []
            ptok = 0.0
            if not heap:
                q.note()
                i = yield q.store.get()  # idle: wait for work
                joiners.append(i)
                ptok += prompt[i]
            while len(heap) + len(joiners) < pool.max_seqs and q.store.items and ptok < pool.max_batched_tokens:
                q.note()
                i = yield q.store.get()
                joiners.append(i)
                ptok += prompt[i]
            now = env.now
            for i in joiners:
                self.start[i] = now
            psq = float(sum(float(prompt[i]) ** 2 for i in joiners))
            b = len(heap)
            yield env.timeout(pool.step.step_s(b, ctx, ptok, psq))
            self.step += 1
            self.counter[0] += 1
            now = env.now
            ctx += b
            for i in joiners:
                self.first[i] = now
                if output[i] <= 1:
                    self.done[i] = now
                    self.finished(i)
                else:
                    heapq.heappush(heap, (self.step + int(output[i]) - 1, i))
                    ctx += prompt[i] + 1
            while heap and heap[0][0] <= self.step:
                _, i = heapq.heappop(heap)
                self.done[i] = now
                self.finished(i)
                ctx -= prompt[i] + output[i]

    def generated(self) -> dict[int, int]:
        """Tokens generated so far by each running sequence."""
        return {i: int(self.w.output[i]) - (f - self.step) for f, i in self.heap}


def _feeder(env, q: _Queue, times: np.ndarray, idx: np.ndarray):
    for t, i in zip(times, idx):
        if t > env.now:
            yield env.timeout(t - env.now)
        q.note()
        q.store.put(int(i))


def simulate(w: Workload, pools: dict[int, Pool], drain_s: float) -> SimResult:
    """Run the topology; ``pools`` maps tier -> Pool (a tier with requests must have a pool with replicas) or RemotePool."""
    env = simpy.Environment()
    n = len(w.arrival)
    start, first, done, entered = (np.full(n, np.nan) for _ in range(4))
    t0, t1 = w.warmup, w.warmup + w.seconds
    queues, counter, replicas = {}, [0], []
    at_tier = w.arrival + w.delay
    parent = w.parents
    child = np.full(n, -1)
    child[parent[parent >= 0]] = np.flatnonzero(parent >= 0)

    def hand_off(i: int) -> None:  # an escalated tier-1 answer is done: its tier-2 entry joins tier 2's queue
        j = child[i]
        if j >= 0:
            entered[j] = env.now
            queues[2].note()
            queues[2].store.put(int(j))

    for t in (1, 2):
        if not (w.tier == t).any():
            continue
        idx = np.flatnonzero((w.tier == t) & (parent < 0))
        pool = pools.get(t)
        remote = isinstance(pool, RemotePool)
        if pool is None or (not remote and pool.replicas < 1):
            raise ValueError(f"tier {t} receives requests but has no replicas")
        order = idx[np.argsort(at_tier[idx], kind="stable")]
        entered[order] = at_tier[order]
        q = queues[t] = _Queue(env, t0, t1)
        env.process(_feeder(env, q, at_tier[order], order))
        if remote:
            env.process(_remote(env, q, pool.draws(n), w.output, start, first, done, hand_off))
            continue
        for _ in range(pool.replicas):
            r = _Replica(env, q, pool, w, start, first, done, counter, hand_off)
            replicas.append(r)
            env.process(r.run())
    measured = np.flatnonzero(w.measured)
    stop = env.event()
    env.process(_stopper(env, stop, t1, t1 + drain_s, done, measured))
    env.run(until=stop)
    end = env.now
    for q in queues.values():
        q.note()
    generated = np.zeros(n, dtype=np.int64)
    for r in replicas:
        for i, g in r.generated().items():
            generated[i] = g
    return SimResult(w, start, first, done, end, {t: q.area for t, q in queues.items()}, counter[0], generated, entered)


def _remote(env, q: _Queue, draws, output, start, first, done, finished):
    """A remote tier: every request starts at once (no queue of ours); first token after its ttft, then its tpot per token."""
    ttft, tpot = draws

    def one(i: int):
        start[i] = env.now
        yield env.timeout(ttft[i])
        first[i] = env.now
        yield env.timeout(max(0, int(output[i]) - 1) * tpot[i])
        done[i] = env.now
        finished(i)

    while True:
        q.note()
        i = yield q.store.get()
        env.process(one(i))


def _stopper(env, stop, t1: float, end: float, done: np.ndarray, measured: np.ndarray):
    """End the run at ``end``, or earlier once arrivals are over and every measured request is done."""
    yield env.timeout(t1)
    while env.now < end and np.isnan(done[measured]).any():
        yield env.timeout(min(1.0, end - env.now))
    stop.succeed()
