"""tierroute plan: the simulator against queueing theory, the hardware model against public figures, fit, sizing,
config validation and the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.plan.cli import main
from app.plan.config import G6E, L40S, LLAMA_8B_AWQ, LLAMA_70B_FP8, Gpu, Perf, PlanConfig, build_config
from app.plan.fit import fit, fits_for_tier
from app.plan.planner import Planner, make_inputs
from app.plan.roofline import Roofline
from app.plan.sim import Pool, Workload, simulate
from app.plan.sizing import check, size_replicas
from app.plan.tokens import TokenDist, lognormal_params

# -- the simulator against closed-form queueing results ---------------------------------------------------------


class ExpService:
    """Degenerate engine for M/M/c: one sequence at a time (max_seqs=1), one output token, and a step that lasts
    ``prompt tokens x 1 us``; prompts are exponential with mean 1/mu seconds' worth of tokens."""

    def step_s(self, decoding, ctx_tokens, prefill_tokens, prefill_sq):
        return prefill_tokens * 1e-6


def mm_workload(lam: float, mu: float, n: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / lam, n))
    prompt = np.maximum(1, np.rint(rng.exponential(1e6 / mu, n))).astype(np.int64)  # 1 token = 1 us: no rounding bias
    horizon = arrival[-1]
    return Workload(arrival, np.zeros(n), np.ones(n, dtype=np.int64), prompt, np.ones(n, dtype=np.int64), 0.05 * horizon, 0.95 * horizon)


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    tail = a**c / math.factorial(c) / (1 - a / c)
    p_wait = tail / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    return p_wait / (c * mu - lam)


def batch_means(x: np.ndarray, batches: int = 20) -> tuple[float, float]:
    """Mean and its standard error from batch means (waits are autocorrelated: the naive error is too small)."""
    means = np.array([b.mean() for b in np.array_split(x, batches)])
    return float(x.mean()), float(means.std(ddof=1) / math.sqrt(batches))


@pytest.mark.parametrize("c,lam,mu", [(1, 0.7, 1.0), (3, 2.4, 1.0)])
def test_mean_wait_matches_mm1_and_erlang_c(c, lam, mu):
    w = mm_workload(lam, mu, 120_000, seed=c)
    res = simulate(w, {1: Pool(c, ExpService(), max_seqs=1)}, drain_s=1e6)
    mean, se = batch_means(res.wait(1))
    expected = lam / (mu * (mu - lam)) if c == 1 else erlang_c_wait(lam, mu, c)  # M/M/1: Wq = rho / (mu - lam)
    # 4 standard errors of the batch-means estimate (~1e-4 chance of a false failure), and within 8%
    assert abs(mean - expected) < 4 * se, (mean, se, expected)
    assert abs(mean - expected) / expected < 0.08


def test_littles_law_on_the_simulated_queue():
    lam = 2.4
    w = mm_workload(lam, 1.0, 60_000, seed=7)
    res = simulate(w, {1: Pool(3, ExpService(), max_seqs=1)}, drain_s=1e6)
    l_queue = res.queue_area[1] / w.seconds  # time-average number waiting, integrated by the simulator
    waits = res.wait(1)
    lam_obs = len(waits) / w.seconds
    assert l_queue == pytest.approx(lam_obs * waits.mean(), rel=0.03)


def test_an_erlang_c_check_would_catch_a_wrong_server_count():
    """The closed-form tests can fail: 2 servers instead of 3 give a far longer wait than Erlang C for 3."""
    w = mm_workload(1.8, 1.0, 40_000, seed=3)
    two = simulate(w, {1: Pool(2, ExpService(), max_seqs=1)}, drain_s=1e6).wait(1).mean()
    assert two > 2 * erlang_c_wait(1.8, 1.0, 3)


# -- continuous batching ---------------------------------------------------------------------------------------


class LinearStep:
    """Step = 10 ms + 1 ms per running sequence + 0.1 ms per prefill token."""

    def step_s(self, decoding, ctx_tokens, prefill_tokens, prefill_sq):
        return 0.010 + 0.001 * decoding + 0.0001 * prefill_tokens


def fixed_workload(arrivals, prompts, outputs) -> Workload:
    n = len(arrivals)
    return Workload(np.asarray(arrivals, float), np.zeros(n), np.ones(n, dtype=np.int64), np.asarray(prompts), np.asarray(outputs), 0.0, 100.0)


def test_a_lone_request_takes_its_prefill_then_one_step_per_token():
    res = simulate(fixed_workload([1.0], [100], [5]), {1: Pool(1, LinearStep(), 8)}, drain_s=10)
    ttft = 0.010 + 0.0001 * 100  # prefill step: no sequence decoding yet
    assert res.first[0] - 1.0 == pytest.approx(ttft)
    assert res.done[0] - 1.0 == pytest.approx(ttft + 4 * (0.010 + 0.001))  # 4 decode steps of a batch of 1


def test_requests_join_the_running_batch_and_slow_each_step():
    # b arrives while a decodes: it joins at the next step boundary and both then decode in one step
    res = simulate(fixed_workload([0.0, 0.0205], [10, 10], [50, 50]), {1: Pool(1, LinearStep(), 8)}, drain_s=10)
    assert res.start[1] < res.done[0]  # admitted before a finished: continuous batching, not one at a time
    alone = simulate(fixed_workload([0.0], [10], [50]), {1: Pool(1, LinearStep(), 8)}, drain_s=10)
    assert res.done[0] > alone.done[0]  # a's steps got longer with b in the batch
    one_at_a_time = simulate(fixed_workload([0.0, 0.0205], [10, 10], [50, 50]), {1: Pool(1, LinearStep(), 1)}, drain_s=10)
    assert one_at_a_time.start[1] == pytest.approx(one_at_a_time.done[0])  # max_seqs=1 queues b behind a
    assert res.done[1] < one_at_a_time.done[1]


def test_same_seed_same_results_and_another_seed_differs():
    cfg = small_config()
    p = Planner(cfg, make_inputs(cfg), progress=False)
    runs = [simulate(p.workload(5.0, 0.2, True, seed_offset=s), {1: Pool(2, LinearStep(), 64), 2: Pool(2, LinearStep(), 64)}, 30) for s in (0, 0, 1)]
    assert np.array_equal(runs[0].done, runs[1].done, equal_nan=True)
    assert len(runs[0].done) != len(runs[2].done) or not np.array_equal(runs[0].done, runs[2].done, equal_nan=True)


# -- the hardware model ----------------------------------------------------------------------------------------


def test_kv_bytes_per_token_from_the_architecture():
    assert LLAMA_8B_AWQ.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert LLAMA_70B_FP8.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327680


@pytest.mark.parametrize(
    "gpu,read_gb,published",
    [
        # L40S, Llama 3 8B F16, llama.cpp, batch 1: 43.42 tokens/s (openllmbenchmarks.com, data of ggerganov / XiongjieDai)
        (L40S, 16.06 - 1.05, 43.42),
        # A100 40GB, Llama-3.1-8B-Instruct BF16, vLLM 0.23, concurrency 1: ~75 tokens/s (johnmusgrave.com sweep)
        (Gpu(memory_gb=40, bandwidth_gbs=1555, bf16_tflops=312), 16.06 - 1.05, 75.0),
    ],
)
def test_single_stream_decode_matches_public_figures(gpu, read_gb, published):
    bf16 = LLAMA_8B_AWQ.model_copy(update={"weight_gb": 16.06, "decode_read_gb": read_gb, "name": "8B BF16"})
    tps = Roofline(bf16, gpu, 1, Perf()).decode_tps(1, 1024)
    assert abs(tps - published) / published < 0.15, tps


def test_decode_grows_with_batch_until_memory_or_compute_binds():
    r = Roofline(LLAMA_8B_AWQ, L40S, 1, Perf())
    t1, t64, t256 = (r.step_s(b, b * 800.0) for b in (1, 64, 256))
    assert t1 < t64 < t256  # a step's time grows with the batch (KV reads)
    assert 64 / t64 > 10 / t1  # but tokens/s grow far more than the step time


def test_tensor_parallel_over_pcie_costs_all_reduce_time():
    perf = Perf()
    tp4 = Roofline(LLAMA_70B_FP8, L40S, 4, perf)
    fast = Roofline(LLAMA_70B_FP8, L40S, 4, perf.model_copy(update={"interconnect_gbs": 1e6, "allreduce_latency_us": 0}))
    assert tp4.step_s(64, 64 * 800.0) > fast.step_s(64, 64 * 800.0)


# -- fit -------------------------------------------------------------------------------------------------------


def test_70b_fp8_is_refused_on_one_l40s_with_the_reason():
    cfg = PlanConfig()
    for node in ("g6e.xlarge", "g6e.4xlarge"):
        f = fit(cfg, cfg.tier2, node, 1, 800)
        assert not f.fits
        assert "72.7 GB" in f.reason and "usable 43.2 GB" in f.reason


def test_70b_fp8_fits_g6e_12xlarge_with_tp4_and_8b_fits_one_gpu():
    cfg = PlanConfig()
    f = fit(cfg, cfg.tier2, "g6e.12xlarge", 4, 800)
    assert f.fits and f.replicas_per_node == 1 and f.kv_tokens >= cfg.tier2.engine.max_model_len
    assert f.max_seqs == min(cfg.tier2.engine.max_num_seqs, int(f.kv_tokens / 800))
    assert not fit(cfg, cfg.tier2, "g6e.12xlarge", 1, 800).fits
    assert fit(cfg, cfg.tier1, "g6e.xlarge", 1, 800).fits
    tp8 = fit(cfg, cfg.tier2, "g6e.4xlarge", 8, 800)
    assert not tp8.fits and "has 1" in tp8.reason


def test_kv_room_below_max_model_len_is_refused():
    cfg = build_config({"tier2": {"engine": {"max_model_len": 65536}}})
    f = fit(cfg, cfg.tier2, "g6e.12xlarge", 2, 800)  # 36 GB of weights per GPU leave ~30k tokens of KV
    assert not f.fits and "max_model_len 65536" in f.reason
    assert fit(cfg, cfg.tier2, "g6e.12xlarge", 4, 800).fits


def test_tp_options_skip_degrees_the_kv_heads_do_not_allow():
    cfg = PlanConfig()
    tps = {(f.node, f.tp) for f in fits_for_tier(cfg, cfg.tier2, 800)}
    assert ("g6e.48xlarge", 8) in tps and ("g6e.12xlarge", 3) not in tps and ("g6e.12xlarge", 8) not in tps


# -- tokens ----------------------------------------------------------------------------------------------------


def test_lognormal_has_the_requested_mean_and_p95():
    mu, s = lognormal_params(600, 2000)
    x = np.random.default_rng(0).lognormal(mu, s, 400_000)
    assert x.mean() == pytest.approx(600, rel=0.02)
    assert np.percentile(x, 95) == pytest.approx(2000, rel=0.02)
    d = TokenDist(mean=600, p95=2000, cap=1000)
    assert d.sample(np.random.default_rng(1), 10_000).max() == 1000


# -- config ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,field",
    [
        ({"traffic": {"rpss": 3}}, "traffic.rpss"),
        ({"traffic": {"prompt_tokens": {"mean": 500, "p95": 400}}}, "traffic.prompt_tokens"),
        ({"tier2": {"engine": {"gpu_memory_utilization": 1.5}}}, "tier2.engine.gpu_memory_utilization"),
        ({"tier1": {"node_types": ["p5.48xlarge"]}}, "tier1.node_types"),
        ({"slo": {"ttft_s": None, "tpot_s": None}}, "slo"),
    ],
)
def test_config_errors_name_the_field(data, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_config(data)


def test_the_shipped_scenario_config_loads():
    from pathlib import Path

    from app.plan.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "plan.yaml")
    assert cfg.split.tier2_share == 0.15 and cfg.traffic.rps > 0


def test_a_new_model_is_taken_whole_not_merged_with_the_default():
    m = {"name": "m", "params_b": 3, "weight_gb": 6, "layers": 28, "hidden": 3072, "heads": 24, "kv_heads": 8, "head_dim": 128}
    cfg = build_config({"tier1": {"model": m}})
    assert cfg.tier1.model.decode_read_gb is None and cfg.tier1.model.read_gb == 6


# -- sizing and cost -------------------------------------------------------------------------------------------


def small_config(**over) -> PlanConfig:
    data = {
        "traffic": {"rps": 6, "prompt_tokens": {"mean": 300, "p95": 900}, "output_tokens": {"mean": 60, "p95": 150}},
        "slo": {"ttft_s": 1.0, "tpot_s": 0.08},
        "tier1": {"node_types": ["g6e.xlarge"]},
        "tier2": {"node_types": ["g6e.12xlarge"], "tensor_parallel": [4]},
        "sim": {"seconds": 20, "warmup_s": 5, "drain_s": 30},
        "plot": {"shares": [0.1, 0.5], "loads": [0.5, 1.0], "seconds": 10},
    }
    return build_config(data, over)


def test_sizing_returns_the_fewest_replicas_that_pass():
    cfg = small_config(**{"traffic.rps": 12})
    p = Planner(cfg, make_inputs(cfg), progress=False)
    f = next(f for f in p.fits[2] if f.fits)
    w = p.workload(12.0, 1.0, False)
    s = size_replicas(cfg, 2, f, 12.0, w, 1, cfg.slo, cfg.sim.drain_s)
    assert s.feasible and s.replicas >= 2
    assert s.tried[s.replicas][0] and not s.tried[s.replicas - 1][0]  # minimal: one fewer was simulated and failed


def test_more_tier2_traffic_never_needs_fewer_tier2_replicas_and_all_tier2_costs_most():
    cfg = small_config(**{"traffic.rps": 16})
    p = Planner(cfg, make_inputs(cfg), progress=False)
    f2 = next(f for f in p.fits[2] if f.fits)
    sizes = [p._size_fixed(2, f2, 16.0 * s, True).replicas for s in (0.1, 0.4, 0.8)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    f1 = next(f for f in p.fits[1] if f.fits)
    t1 = [p._size_fixed(1, f1, 16.0 * (1 - s), True).replicas for s in (0.1, 0.8)]
    assert t1[0] >= t1[1]


def test_slo_below_the_hardware_floor_is_reported_infeasible():
    cfg = small_config(**{"slo.tpot_s": 0.01})  # 70B TP4 on L40S decodes one sequence in ~30 ms
    p = Planner(cfg, make_inputs(cfg), progress=False)
    f = next(f for f in p.fits[2] if f.fits)
    s = size_replicas(cfg, 2, f, 2.0, p.workload(2.0, 1.0, False), 1, cfg.slo, cfg.sim.drain_s)
    assert not s.feasible and "tpot_s 0.01" in s.reason


def test_check_fails_when_requests_are_left_unserved():
    cfg = small_config()
    w = fixed_workload(np.linspace(0, 10, 200), [100] * 200, [400] * 200)
    res = simulate(w, {1: Pool(1, LinearStep(), 2)}, drain_s=1)  # far too little capacity
    ok, obs = check(res, cfg.slo.model_copy(update={"ttft_s": 1000.0, "tpot_s": None}), 1)
    assert not ok and obs["unfinished"] > 0.5


def test_scored_file_sets_the_share_and_rejects_a_bad_tier(tmp_path):
    cfg = small_config()
    good = tmp_path / "scored.jsonl"
    good.write_text("".join(json.dumps({"prompt": "x" * (40 * (i + 1)), "score": 0.1, "tier": 2 if i % 4 == 0 else 1}) + "\n" for i in range(20)))
    inp = make_inputs(cfg, scored=str(good))
    assert inp.share == pytest.approx(5 / 20)
    assert inp.prompt[2].values != inp.prompt[1].values  # per-tier prompt lengths from the file
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "tier": 1}) + "\n" + json.dumps({"prompt": "hi", "tier": 3}) + "\n")
    with pytest.raises(ValueError, match="row 2 has tier 3"):
        make_inputs(cfg, scored=str(bad))


# -- the command -----------------------------------------------------------------------------------------------


def write_small_config(tmp_path):
    import yaml

    cfg = small_config()
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    return path


def test_cli_writes_json_and_png_and_prints_the_table(tmp_path, capsys):
    cfg_path = write_small_config(tmp_path)
    out, png = tmp_path / "plan.json", tmp_path / "plan.png"
    rc = main(["--config", str(cfg_path), "--split", "0.2", "--json", str(out), "--plot", str(png), "--no-progress"])
    assert rc == 0
    plan = json.loads(out.read_text())
    assert plan["scenario"]["tier2_share"] == 0.2
    r, b = plan["routed"], plan["all_large"]
    assert r["tier2"]["node"] == "g6e.12xlarge" and r["tier1"]["node"] == "g6e.xlarge"
    assert r["monthly_usd"] == pytest.approx(
        (r["tier1"]["nodes"] * G6E["g6e.xlarge"].hourly_usd + r["tier2"]["nodes"] * G6E["g6e.12xlarge"].hourly_usd + G6E["g6e.xlarge"].hourly_usd) * 730
    )
    assert b["monthly_usd"] == pytest.approx(b["tier2"]["nodes"] * G6E["g6e.12xlarge"].hourly_usd * 730)
    for key in ("ttft_p99", "e2e_p99", "tpot_p99"):
        assert r["sim"]["all"][key] > 0 and b["sim"]["all"][key] > 0
    assert r["sim"]["tier2"]["ttft_p99"] <= 1.0 and b["sim"]["all"]["tpot_p99"] <= 0.08  # sized to the objective
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(plan["curves"]["cost_vs_share"]) == 2
    text = capsys.readouterr().out
    assert "all-tier-2" in text and "saving" in text and "Fit per node type" in text


def test_cli_fit_only_and_user_errors(tmp_path, capsys):
    assert main(["--fit-only"]) == 0
    assert "NO" in capsys.readouterr().out
    assert main(["--split", "1.5"]) == 2
    assert "--split must be between 0 and 1" in capsys.readouterr().err
    assert main(["--set", "tier2.engine.max_num_seqs=0", "--fit-only"]) == 2
    assert "tier2.engine.max_num_seqs" in capsys.readouterr().err
    assert main(["--scored", str(tmp_path / "missing.jsonl")]) == 2
    assert "--scored" in capsys.readouterr().err


def test_plan_does_not_import_ray_or_serve():
    import subprocess
    import sys

    code = "import sys, app.plan.cli, app.plan.planner, app.plan.plot; print(any(m == 'ray' or m.startswith(('ray.', 'app.serve')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# -- cascades ----------------------------------------------------------------------------------------------------


def test_cascade_loads_and_cost_per_request_arithmetic():
    from app.plan.cascade import cost_per_request, loads

    c = loads("cascade", 0.3, escalation_share=0.2, direct_share=0.5)  # route's share and the direct share are ignored
    assert (c.tier1, c.tier2, c.direct, c.escalated) == (1.0, pytest.approx(0.2), 0.0, pytest.approx(0.2))
    assert cost_per_request(c, tier1_cost=1.0, tier2_cost=10.0) == pytest.approx(1.0 + 10.0 * 0.2)  # tier1 x 1 + tier2 x e
    cr = loads("cascade_routing", 0.3, escalation_share=0.2, direct_share=0.1)
    assert cr.tier1 == pytest.approx(0.9) and cr.escalated == pytest.approx(0.9 * 0.2)
    assert cr.tier2 == pytest.approx(0.1 + 0.18) and cr.answered_by_tier2 == pytest.approx(0.28)
    assert cost_per_request(cr, 1.0, 10.0) == pytest.approx(0.9 + 2.8)
    r = loads("route", 0.3, escalation_share=0.9)
    assert (r.tier1, r.tier2, r.escalated) == (pytest.approx(0.7), 0.3, 0.0)
    # at the same share answered by tier 2, a cascade always pays tier 1 for the escalated requests on top
    assert cost_per_request(loads("cascade", 0, 0.3), 1.0, 10.0) - cost_per_request(loads("route", 0.3), 1.0, 10.0) == pytest.approx(0.3)


def test_cascade_workload_escalates_its_share_of_tier1_requests_with_the_same_prompt():
    from app.plan.cascade import cascade_workload, loads

    cfg = small_config()
    inp = make_inputs(cfg)
    ld = loads("cascade_routing", 0.0, escalation_share=0.25, direct_share=0.2)
    w = cascade_workload(200.0, 60.0, 0.0, 3, ld, inp.prompt, inp.output)
    parent = w.parent
    child = np.flatnonzero(parent >= 0)
    first = np.flatnonzero(parent < 0)
    assert set(w.tier[child]) == {2} and set(w.tier[parent[child]]) == {1}  # a tier-1 answer, then tier 2
    assert np.array_equal(w.prompt[child], w.prompt[parent[child]]) and np.array_equal(w.arrival[child], w.arrival[parent[child]])
    assert (w.tier[first] == 2).mean() == pytest.approx(0.2, abs=0.02)  # direct
    assert len(child) / (w.tier[first] == 1).sum() == pytest.approx(0.25, abs=0.02)  # escalated share of tier 1's answers
    plain = cascade_workload(200.0, 60.0, 0.0, 3, loads("cascade_routing", 0.0, 0.0, 0.2), inp.prompt, inp.output)
    assert np.array_equal(plain.arrival, w.arrival[first])  # the escalation draw leaves the arrivals common


def test_an_escalated_request_pays_tier1_then_tier2():
    w = Workload(np.array([1.0, 1.0]), np.zeros(2), np.array([1, 2]), np.array([100, 100]), np.array([5, 5]), 0.0, 100.0, np.array([-1, 0]))
    res = simulate(w, {1: Pool(1, LinearStep(), 8), 2: Pool(1, LinearStep(), 8)}, drain_s=10)
    alone = 0.010 + 0.0001 * 100 + 4 * (0.010 + 0.001)  # one request on an idle replica (as above)
    assert res.start[1] == pytest.approx(res.done[0])  # tier 2 starts when tier 1's answer is done
    client = res.metrics()  # the client sees one request: the escalated one, from its arrival
    assert len(client["e2e"]) == 1 and client["e2e"][0] == pytest.approx(2 * alone)
    assert client["ttft"][0] == pytest.approx(alone + 0.010 + 0.0001 * 100)  # nothing streams before tier 2's first token
    assert res.metrics(2)["e2e"][0] == pytest.approx(alone)  # tier 2's own figure counts from when it got the request
    assert res.metrics(1)["e2e"][0] == pytest.approx(alone)
    assert res.summary(path="escalated")["requests"] == 1 and res.summary(path="tier1")["requests"] == 0


def test_routing_mode_is_validated_naming_the_field():
    with pytest.raises(ValueError, match="routing.mode"):
        build_config({"routing": {"mode": "cascading"}})
    with pytest.raises(ValueError, match="routing.escalation_share"):
        build_config(None, {"routing.escalation_share": 1.5})


def test_cli_plans_the_cascade_beside_the_routed_topology(tmp_path, capsys):
    cfg_path = write_small_config(tmp_path)
    out, png = tmp_path / "plan.json", tmp_path / "plan.png"
    args = ["--config", str(cfg_path), "--split", "0.2", "--mode", "cascade", "--escalation", "0.2", "--json", str(out), "--plot", str(png), "--no-progress"]
    assert main(args) == 0
    plan = json.loads(out.read_text())
    c, r = plan["cascade"], plan["routed"]
    assert c["loads"] == {"tier1": 1.0, "tier2": pytest.approx(0.2), "direct": 0.0, "escalated": pytest.approx(0.2), "answered_by_tier2": pytest.approx(0.2)}
    peak = plan["scenario"]["peak_rps"]
    assert c["tier1"]["rate_rps"] == pytest.approx(peak) and r["tier1"]["rate_rps"] == pytest.approx(0.8 * peak)  # tier 1 carries all
    assert c["tier2"]["rate_rps"] == pytest.approx(0.2 * peak)
    assert c["tier1"]["replicas"] >= r["tier1"]["replicas"]
    assert c["monthly_usd"] == pytest.approx(c["tier1"]["monthly_usd"] + c["tier2"]["monthly_usd"] + G6E["g6e.xlarge"].hourly_usd * 730)
    s = c["sim"]
    assert s["escalated"]["requests"] > 0 and s["direct"]["requests"] == 0
    assert s["escalated"]["e2e_p50"] > s["tier1"]["e2e_p50"]  # tier 1's time, then tier 2's
    assert s["escalated"]["ttft_p50"] > r["sim"]["tier2"]["ttft_p50"]
    assert s["all"]["requests"] == s["tier1"]["requests"] + s["escalated"]["requests"]
    assert len(plan["curves"]["cascade"]["cost_vs_share"]) == 2 and png.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "Route vs cascade" in text and "escalated" in text
    assert ("client-side ttft p99 of the cascade" in text) == (s["all"]["ttft_p99"] > 1.0)  # small_config: ttft_s 1.0


# -- remote tiers ------------------------------------------------------------------------------------------------

GPT4O = {"model": "gpt-4o", "input_usd_per_1m": 2.5, "output_usd_per_1m": 10.0, "ttft_s": {"mean": 0.5, "p95": 1.2}, "tpot_s": 0.0125}


def remote_config(**over) -> PlanConfig:
    cfg = small_config(**over)
    data = json.loads(cfg.model_dump_json())
    data["tier2"] = {"remote": dict(GPT4O)}
    return build_config(data)


def test_remote_cost_is_tokens_of_the_mean_traffic_times_the_prices():
    from app.plan.remote import monthly_usd, throttled_share

    r = build_config({"tier2": {"remote": GPT4O}}).tier2.remote
    # 10 req/s x 730 h x 3600 s = 26.28M requests; each 1000 in x $2.5/1M + 100 out x $10/1M = $0.0035
    assert monthly_usd(r, 10.0, 1000, 100) == pytest.approx(26_280_000 * 0.0035)  # $91,980
    lim = build_config({"tier2": {"remote": {**GPT4O, "rate_limit": {"requests_per_minute": 300, "tokens_per_minute": 400_000}}}}).tier2.remote
    t = throttled_share(lim, 10.0, 1000, 100)  # 600 req/min (limit 300: half over), 660,000 tokens/min (limit 400k)
    assert t["requests_per_minute"] == 600 and t["tokens_per_minute"] == 660_000
    assert t["throttled_share"] == pytest.approx(0.5)  # the binding limit: 1 - 300/600 > 1 - 400/660
    assert throttled_share(lim, 1.0, 1000, 100)["throttled_share"] == 0.0


@pytest.mark.parametrize(
    "tier2,field",
    [
        ({"remote": {**GPT4O, "input_usd_per_1m": -1}}, "tier2.remote.input_usd_per_1m"),
        ({"remote": {**GPT4O, "ttft_s": {"mean": 1.0, "p95": 0.5}}}, "tier2.remote.ttft_s"),
        ({"remote": {**GPT4O, "tpot_s": -0.01}}, "tier2.remote.tpot_s: .*seconds > 0"),
        ({"remote": {**GPT4O, "tpot_s": {"mean": 0.01}}}, "tier2.remote.tpot_s: .*p95: Field required"),
        ({"remote": {**GPT4O, "rate_limit": {}}}, "tier2.remote.rate_limit"),
        ({"remote": {**GPT4O, "price": 3}}, "tier2.remote.price"),
        ({"remote": GPT4O, "node_types": ["g6e.xlarge"]}, "tier2"),
        ({"remote": GPT4O, "model": LLAMA_70B_FP8.model_dump()}, "tier2"),
    ],
)
def test_remote_tier_errors_name_the_field(tier2, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.").replace(r"\.*", ".*")):
        build_config({"tier2": tier2})


def test_old_configs_load_unchanged_and_a_remote_tier_takes_no_default_model():
    from pathlib import Path

    from app.plan.config import load_config

    root = Path(__file__).resolve().parents[1]
    old = load_config(root / "configs" / "plan.yaml")
    assert old.tier1.remote is None and old.tier2.model == LLAMA_70B_FP8 and old.tier2.remote is None
    rem = load_config(root / "configs" / "plan-remote.yaml")
    assert rem.tier2.model is None and rem.tier2.remote.model == "gpt-4o" and rem.tier1.model == LLAMA_8B_AWQ
    assert build_config(None, {"tier1.remote": GPT4O}).tier1.model is None  # --set works the same way


def test_the_simulated_latency_of_a_remote_tier_follows_its_spread():
    from app.plan.remote import RemotePool
    from app.plan.tokens import TokenDist

    rem = build_config({"tier2": {"remote": {**GPT4O, "tpot_s": {"mean": 0.02, "p95": 0.05}}}}).tier2.remote
    dists = {1: TokenDist(mean=300, p95=900), 2: TokenDist(mean=300, p95=900)}
    from app.plan.sim import poisson_workload

    w = poisson_workload(200.0, 60.0, 0.0, 3, 1.0, dists, TokenDist(mean=50, p95=150))
    res = simulate(w, {2: RemotePool(rem, seed=1)}, drain_s=600)
    m = res.metrics(2)
    assert len(m["ttft"]) > 10_000 and not m["unfinished"].any()
    assert m["ttft"].mean() == pytest.approx(0.5, rel=0.03) and np.percentile(m["ttft"], 95) == pytest.approx(1.2, rel=0.04)
    assert m["tpot"].mean() == pytest.approx(0.02, rel=0.03) and np.percentile(m["tpot"], 95) == pytest.approx(0.05, rel=0.05)
    # fixed figures, and no queue of ours: at 200 req/s every request takes exactly ttft + (output - 1) x tpot
    fixed = build_config({"tier2": {"remote": {**GPT4O, "ttft_s": 0.3, "tpot_s": 0.01}}}).tier2.remote
    f = simulate(w, {2: RemotePool(fixed)}, drain_s=600).metrics(2)
    assert np.allclose(f["ttft"], 0.3) and np.allclose(f["e2e"], 0.3 + (w.output[w.measured] - 1) * 0.01)


def test_a_remote_tier_sizes_no_nodes_and_is_priced_per_token(tmp_path):
    cfg = remote_config()
    p = Planner(cfg, make_inputs(cfg), progress=False)
    assert p.fits[2] == [] and p.fits[1]
    plan = p.plan()
    r, b = plan["routed"], plan["all_large"]
    assert r["tier2"]["remote"] and r["tier2"]["nodes"] == 0 and r["tier2"]["replicas"] == 0 and b["tier2"]["nodes"] == 0
    assert r["tier1"]["nodes"] >= 1 and not r["tier1"].get("remote")
    month = 6 * 730 * 3600  # small_config: 6 req/s mean, peak factor 1
    per_req = (p.mean_prompt[2] * 2.5 + p.mean_output * 10.0) / 1e6
    assert r["tier2"]["monthly_usd"] == pytest.approx(0.15 * month * per_req)
    assert b["monthly_usd"] == pytest.approx(month * per_req)
    assert r["monthly_usd"] == pytest.approx(r["tier1"]["monthly_usd"] + r["tier2"]["monthly_usd"] + G6E["g6e.xlarge"].monthly_usd)
    assert plan["saving"]["monthly_usd"] == pytest.approx(b["monthly_usd"] - r["monthly_usd"])
    assert r["sim"]["tier2"]["requests"] > 0 and r["sim"]["tier2"]["ttft_p50"] > 0.2  # the remote tier's ttft, not a queue's


def test_a_peak_factor_sizes_nodes_for_the_peak_but_tokens_are_paid_on_the_mean():
    cfg = remote_config(**{"traffic.peak_factor": 2.0, "traffic.rps": 3})
    p = Planner(cfg, make_inputs(cfg), progress=False)
    s, _ = p.size(2, 6.0 * 0.15, routed=True)
    assert s.rate == pytest.approx(0.9) and s.mean_rate == pytest.approx(0.45)
    assert s.monthly_usd == pytest.approx(0.45 * 730 * 3600 * (p.mean_prompt[2] * 2.5 + p.mean_output * 10.0) / 1e6)


def test_cascade_with_a_remote_tier_pays_tier1_tokens_of_escalated_requests():
    data = json.loads(small_config().model_dump_json())
    data["tier1"] = {"remote": {**GPT4O, "model": "gpt-4o-mini", "input_usd_per_1m": 0.15, "output_usd_per_1m": 0.6}}
    data["routing"] = {"mode": "cascade", "escalation_share": 0.3}
    cfg = build_config(data)
    p = Planner(cfg, make_inputs(cfg), progress=False)
    plan = p.plan()
    c = plan["cascade"]
    per_req1 = (p.mean_prompt[1] * 0.15 + p.mean_output * 0.6) / 1e6
    assert c["tier1"]["monthly_usd"] == pytest.approx(6 * 730 * 3600 * per_req1)  # every request, escalated ones too
    assert plan["routed"]["tier1"]["monthly_usd"] == pytest.approx(0.85 * 6 * 730 * 3600 * per_req1)
    assert c["tier1"]["nodes"] == 0 and c["tier2"]["nodes"] >= 1 and c["sim"]["escalated"]["requests"] > 0
    from app.plan.cascade import cascade_curves

    curves = cascade_curves(p, plan)  # the PNG's points: a remote tier 1 in every cascade run
    assert len(curves["cost_vs_share"]) == 2 and all(r["ttft_p99"] > 0 for r in curves["latency_vs_load"])
    assert len(p.curves(plan)["latency_vs_load"]) == 2


def test_cli_reports_remote_tiers_side_by_side_and_warns_past_the_rate_limit(tmp_path, capsys):
    import yaml

    data = json.loads(remote_config().model_dump_json())
    data["tier2"]["remote"]["rate_limit"] = {"requests_per_minute": 60, "tokens_per_minute": None}  # 6 req/s = 360/min
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    out, png = tmp_path / "plan.json", tmp_path / "plan.png"
    assert main(["--config", str(path), "--json", str(out), "--plot", str(png), "--no-progress"]) == 0
    plan = json.loads(out.read_text())
    assert plan["all_large"]["tier2"]["at_peak"]["throttled_share"] == pytest.approx(1 - 60 / 360)
    text = capsys.readouterr().out
    assert "remote gpt-4o" in text and "g6e.xlarge" in text and "per 1M" in text
    assert "all-tier-2: tier 2 (gpt-4o): WARNING: over the rate limit" in text and "would be throttled 83% at peak" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(plan["curves"]["cost_vs_share"]) == 2


def test_a_remote_tier_that_misses_the_objective_is_reported_not_sized():
    from app.plan import report

    data = json.loads(remote_config().model_dump_json())
    data["tier2"]["remote"]["ttft_s"] = 3.0  # fixed, over small_config's ttft_s 1.0
    cfg = build_config(data)
    plan = Planner(cfg, make_inputs(cfg), progress=False).plan()
    t2 = plan["routed"]["tier2"]
    assert t2["nodes"] == 0 and "misses the objective" in t2["reason"] and t2["observed_at_slo_percentile"]["ttft"] >= 3.0
    assert plan["routed"]["feasible"]  # still costed
    assert "routed: tier 2 (gpt-4o): WARNING: its latency misses the objective" in report.text(plan)


def test_all_on_a_remote_tier_pays_every_requests_prompt_not_tier_2s_alone():
    from app.plan.tokens import TokenDist

    cfg = remote_config()
    inp = make_inputs(cfg)
    inp.prompt[2] = TokenDist(mean=1500, p95=3000)  # as with --scored: tier 2 gets the long prompts
    p = Planner(cfg, inp, progress=False)
    routed, _ = p.size(2, 0.9, routed=True)
    alone, _ = p.size(2, 6.0, routed=False)
    assert routed.mean_prompt == pytest.approx(p.mean_prompt[2]) and p.mean_prompt[2] > 2 * p.mean_prompt[1]
    assert alone.mean_prompt == pytest.approx(0.85 * p.mean_prompt[1] + 0.15 * p.mean_prompt[2])
