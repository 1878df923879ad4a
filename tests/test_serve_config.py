"""Serving configuration: validation, the LLM configs it builds, the cluster
config against Ray's own schema, and that every production deployment fits a
worker type of cluster.yaml."""

import copy
import json
import logging
import os

import pytest
import yaml
from pydantic import ValidationError

from conftest import ROOT

from app.serve.config import AppConfig


def app_args(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / name).read_text())["applications"][0]["args"]


def demand(cpus: float, gpus: float = 0.0) -> dict[str, float]:
    return {"CPU": cpus, "GPU": gpus}


def replica_demands(cfg: AppConfig) -> dict[str, tuple[dict[str, float], str]]:
    """Deployment -> (resources one replica needs on a single node, accelerator)."""
    out = {
        "ingress": (demand(cfg.ingress.replica.num_cpus, cfg.ingress.replica.num_gpus), "cpu"),
        "embedder": (demand(cfg.embedder.replica.num_cpus, cfg.embedder.replica.num_gpus), "L40S" if cfg.embedder.replica.num_gpus else "cpu"),
    }
    for name in ("router_llm", "tier1", "tier2"):
        spec = getattr(cfg, name)
        bundles = spec.bundles()  # STRICT_PACK: all on one node, plus the replica actor
        out[name] = (
            demand(spec.replica.num_cpus + sum(b["CPU"] for b in bundles), sum(b.get("GPU", 0) for b in bundles)),
            spec.accelerator,
        )
    return out


def fits(need: dict[str, float], accel: str, node: dict[str, float]) -> bool:
    if accel != "cpu" and node.get(f"accelerator_type:{accel}", 0) <= 0:
        return False
    return all(node.get(k, 0) >= v for k, v in need.items())


def test_both_configs_validate():
    local, prod = AppConfig.model_validate(app_args("local.yaml")), AppConfig.model_validate(app_args("g6e.yaml"))
    assert {local.tier1.accelerator, local.tier2.accelerator, local.router_llm.accelerator} == {"cpu"}
    assert prod.tier2.tensor_parallel_size == 4 and prod.tier2.accelerator == "L40S"


def test_local_default_fits_two_cores():
    cfg = AppConfig.model_validate(app_args("local.yaml"))
    total = sum(need["CPU"] for need, _ in replica_demands(cfg).values())
    assert total <= 2.0 and all(need["GPU"] == 0 for need, _ in replica_demands(cfg).values())


def test_cluster_yaml_is_valid_for_ray():
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    schema = json.loads((ROOT / os.path.dirname(ray.__file__) / "autoscaler/ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)
    validate_config(prepare_config(cluster))
    assert cluster["provider"]["type"] == "aws"
    types = {t["node_config"]["InstanceType"] for t in cluster["available_node_types"].values()}
    assert {"g6e.xlarge", "g6e.12xlarge"} <= types


def test_every_production_deployment_fits_a_worker_type():
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    nodes = {name: t["resources"] for name, t in cluster["available_node_types"].items()}
    workers = {n: r for n, r in nodes.items() if cluster["available_node_types"][n]["max_workers"] > 0}
    cfg = AppConfig.model_validate(app_args("g6e.yaml"))
    demands = replica_demands(cfg)
    for name, (need, accel) in demands.items():
        assert any(fits(need, accel, r) for r in nodes.values()), f"{name} needs {need} on {accel}: no node type fits"
        if accel != "cpu":
            assert any(fits(need, accel, r) for r in workers.values()), f"{name}: no GPU worker type fits"
    # tier 2 (70B FP8, ~70 GB) cannot fit one 48 GB L40S: it needs the 4-GPU node
    assert demands["tier2"][0]["GPU"] == 4 and not fits(demands["tier2"][0], "L40S", workers["gpu_small"])
    # the config's claim: tier 1, the router LLM and the embedder share one g6e.xlarge
    shared = {k: sum(demands[d][0][k] for d in ("tier1", "router_llm", "embedder")) for k in ("CPU", "GPU")}
    assert fits(shared, "L40S", workers["gpu_small"]), shared
    assert cfg.tier1.engine_kwargs["gpu_memory_utilization"] + cfg.router_llm.engine_kwargs["gpu_memory_utilization"] <= 0.95


@pytest.mark.parametrize(
    "patch,field",
    [
        (lambda a: a.pop("tier1"), "tier1"),
        (lambda a: a["tier1"]["engine_kwargs"].pop("enforce_eager"), "engine_kwargs"),
        (lambda a: a["embedder"].update(max_batch_size=128), "max_ongoing_requests"),
        (lambda a: a["tier2"].update(model_source="models/does-not-exist"), "model_source"),
        (lambda a: a["tier2"].update(model_id=a["tier1"]["model_id"]), "must differ"),
        (lambda a: a["tier1"]["replica"].update(autoscaling={"min_replicas": 3, "max_replicas": 1}), "min_replicas"),
        (lambda a: a.update(artifact="nope.json"), "artifact"),
        (lambda a: a["ingress"].update(colour="blue"), "colour"),
        (lambda a: a.update(controller={"enabled": True, "target_tier2_share": 1.5}), "controller.target_tier2_share"),
        (lambda a: a.update(controller={"enabled": True, "min_threshold": 0.9, "max_threshold": 0.1}), "min_threshold"),
    ],
)
def test_bad_config_fails_early_naming_the_field(patch, field):
    from app.serve.graph import build_app

    args = app_args("local.yaml")
    patch(args)
    with pytest.raises(ValueError, match=field):
        build_app(args)


def test_embedder_is_its_own_deployment_unless_colocated():
    from app.serve.graph import embedder_deployment

    args = app_args("local.yaml")
    for colocate in (False, True):
        args["embedder"]["colocate"] = colocate
        cfg = AppConfig.model_validate(args)
        assert (embedder_deployment(cfg) is None) is colocate


def test_one_builder_of_deployment_options_for_ingress_embedder_and_engines():
    from app.serve.llm import llm_config

    args = app_args("g6e.yaml")
    cfg = AppConfig.model_validate(args)
    a = args["tier1"]["replica"]["autoscaling"]
    engine = llm_config(cfg.tier1).deployment_config
    assert engine == cfg.tier1.replica.deployment_options()
    assert engine["autoscaling_config"] == {**a, "initial_replicas": max(a["min_replicas"], 1)}
    assert engine["ray_actor_options"]["num_cpus"] == args["tier1"]["replica"]["num_cpus"]
    assert engine["max_queued_requests"] == args["tier1"]["replica"]["max_queued_requests"] > 0  # bounded queue
    ingress = cfg.ingress.replica.deployment_options()
    assert ingress["max_ongoing_requests"] == args["ingress"]["replica"]["max_ongoing_requests"]
    assert ingress["autoscaling_config"]["max_replicas"] == args["ingress"]["replica"]["autoscaling"]["max_replicas"]
    quiet = AppConfig.model_validate(app_args("local.yaml")).embedder.replica.deployment_options()
    assert quiet["logging_config"] == {"enable_access_log": False}


def test_llm_configs_for_cpu_and_gpu():
    from app.serve.llm import SkipLocalDownload, llm_config

    local, prod = AppConfig.model_validate(app_args("local.yaml")), AppConfig.model_validate(app_args("g6e.yaml"))
    cpu = llm_config(local.tier1)
    acc = cpu.accelerator_config
    assert (acc["kind"] if isinstance(acc, dict) else acc.kind) == "cpu"
    assert cpu.runtime_env["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert cpu.engine_kwargs["enforce_eager"] is True and os.path.isdir(cpu.model_loading_config.model_source)
    gpu = llm_config(prod.tier2)
    assert gpu.accelerator_type == "L40S" and gpu.engine_kwargs["tensor_parallel_size"] == 4
    assert gpu.placement_group_config["bundles"] == [{"CPU": 4.0, "GPU": 1.0}] * 4
    assert gpu.placement_group_config["strategy"] == "STRICT_PACK"
    assert gpu.callback_config.callback_class is SkipLocalDownload


def test_a_missing_key_source_fails_the_build_naming_it(monkeypatch):
    from app.serve.graph import ingress_app

    monkeypatch.delenv("TIERROUTE_NO_SUCH_KEYS", raising=False)
    args = app_args("local.yaml")
    args["auth"] = {"keys_env": "TIERROUTE_NO_SUCH_KEYS"}
    with pytest.raises(ValueError, match=r"auth.keys_env \(\$TIERROUTE_NO_SUCH_KEYS\): the environment variable is not set"):
        ingress_app(AppConfig.model_validate(args), [None, None])
    args["auth"] = {"keys_file": "/nonexistent/keys.json"}
    with pytest.raises(ValueError, match="auth.keys_file"):
        ingress_app(AppConfig.model_validate(args), [None, None])


def test_the_old_nested_embedder_block_still_loads_with_a_deprecation_warning(caplog):
    """``embedder: {embedder: {model: ...}}`` (before the rename) is the same config as ``embedder: {model: ...}``."""
    new = app_args("local.yaml")
    old = app_args("local.yaml")
    model_fields = {f: old["embedder"].pop(f) for f in ("model", "device", "backend", "precision", "num_threads")}
    old["embedder"]["embedder"] = model_fields
    with caplog.at_level(logging.WARNING, logger="tierroute.config"), pytest.warns(DeprecationWarning, match=r"embedder\.embedder\.model -> embedder\.model"):
        cfg = AppConfig.model_validate(old)
    assert any("embedder.embedder" in r.getMessage() for r in caplog.records)
    assert cfg == AppConfig.model_validate(new) and cfg.embedder.model_fields_set == AppConfig.model_validate(new).embedder.model_fields_set
    assert cfg.embedder.embedding_model().num_threads == 2
    old["embedder"]["num_threads"] = 1  # set in both places: ambiguous
    with pytest.warns(DeprecationWarning), pytest.raises(ValidationError, match="num_threads"):
        AppConfig.model_validate(old)


def test_the_modules_that_say_no_ray_import_no_ray():
    """config, errors, responses, fallback, auth, shadow, decision_log, calls: unit-testable without Ray."""
    import subprocess
    import sys

    mods = ", ".join(f"app.serve.{m}" for m in ("config", "errors", "responses", "fallback", "auth", "shadow", "decision_log", "calls"))
    code = f"import sys, {mods}; print(any(m == 'ray' or m.startswith('ray.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"



# --- a ladder of tiers (tiers:) --------------------------------------------------------------


def ladder_error(args: dict) -> str:
    from app.serve.graph import app_config

    with pytest.raises(ValueError) as e:
        app_config(args)
    return str(e.value)


def test_the_local_ladder_config_loads_with_names_prices_and_its_artifact():
    from app.serve.graph import app_config

    cfg, _ = app_config(app_args("local-ladder.yaml"))
    rungs = cfg.ladder
    assert [(r.index, r.name, r.spec.model_id) for r in rungs] == [(1, "small", "tier1-small"), (2, "medium", "tier2-medium"), (3, "large", "tier3-large")]
    assert rungs[2].price.output_per_mtok == 10.0 and cfg.top == 3 and cfg.tier1 is None
    assert AppConfig.model_validate(cfg.model_dump(mode="json")) == cfg  # what the ingress replica re-reads
    pair = AppConfig.model_validate(app_args("local.yaml"))  # two tiers: tier1/tier2, named and priced by default
    assert [(r.name, r.price.input_per_mtok) for r in pair.ladder] == [("tier1", 0.10), ("tier2", 0.90)] and pair.top == 2
    listed = app_args("local.yaml")  # the same pair as a list
    listed["tiers"] = [listed.pop("tier1"), listed.pop("tier2")]
    assert [r.spec for r in AppConfig.model_validate(listed).ladder] == [r.spec for r in pair.ladder]


def _ladder(**change) -> dict:
    args = app_args("local-ladder.yaml")
    for path, value in change.items():  # a__b__0__c: the path, list indices as numbers
        *parents, leaf = path.split("__")
        node = args
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is None:
            node.pop(leaf)
        elif leaf.isdigit():
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return args


@pytest.mark.parametrize(
    "change,where",
    [
        ({"routing__ladder": None}, "routing.ladder: a ladder of 3 tiers needs a ladder artifact"),
        ({"routing__mode": "cascade"}, "routing.ladder: a 'route' ladder artifact reads the prompt; routing.mode 'cascade' needs one fitted with --ladder-mode cascade"),
        ({"routing__mode": "cascade_routing"}, "routing.mode: 'cascade_routing' serves two tiers"),
        ({"routing__mode": "cascade", "routing__ladder": "app/verification/artifacts/ladder.json", "routing__cascade": {"stream": "early"}}, "routing.cascade.stream"),
        ({"routing__mode": "cascade", "routing__ladder": "app/verification/artifacts/ladder.json", "controller__enabled": True}, "controller.enabled: the share controller"),
        ({"ingress__degraded_tier": 4}, "ingress.degraded_tier: 4, but there are 3 tiers"),
        ({"tiers__1__name": "small"}, "tiers[].name"),
        ({"tiers__1__name": "has space"}, "tiers[1].name: String should match pattern"),
        ({"tiers__2__model_id": "tier1-small"}, "tiers[].model_id"),
        ({"tiers__2__remote": {"base_url": "ftp://x"}}, "tiers[2]."),
        ({"tiers__2": {"model_id": "big", "remote": {"base_url": "ftp://x", "model": "m"}}}, "tiers[2].remote.base_url"),
        ({"tier2": {"model_id": "x", "remote": {"base_url": "http://h/v1", "model": "m"}}}, "tiers: set either tiers"),
        ({"tiers": None}, "tier1 and tier2: required"),
        ({"controller__enabled": True, "controller__target_shares": [0.5, 0.5]}, "target_shares"),
        ({"controller__enabled": True, "controller__target_shares": None}, "controller.target_shares: a ladder's controller"),
        ({"router_llm": {"model_id": "r", "model_source": "models/tiny-chat-small", "engine_kwargs": {"enforce_eager": True, "max_model_len": 512}}}, "router_llm: a ladder"),
        ({"shadow": {"enabled": True}}, "shadow.enabled"),
        ({"tiers": [{"model_id": "a", "model_source": "models/tiny-chat-small", "engine_kwargs": {"enforce_eager": True, "max_model_len": 512}}] * 1}, "tiers"),
    ],
)
def test_ladder_config_errors_name_the_field(change, where):
    assert where in ladder_error(_ladder(**change))


def test_a_ladder_artifact_must_fit_the_configured_tiers(tmp_path):
    art = json.loads((ROOT / "app/routing/artifacts/ladder.json").read_text())
    four = _ladder()
    four["tiers"].append({**four["tiers"][2], "name": "huge", "model_id": "tier4-huge"})
    four["controller"]["target_shares"] = [0.4, 0.3, 0.2, 0.1]
    assert "routing.ladder: the artifact has 3 tiers, the config 4" in ladder_error(four)
    cascade = copy.deepcopy(art) | {"mode": "cascade", "embedder": None}
    for b in cascade["boundaries"]:
        n = len(b["features"])
        b["reads"], b["embedding"] = "answer", False
        b["model"] = {k: (v[:n] if isinstance(v, list) else v) for k, v in b["model"].items()}
    path = tmp_path / "cascade.json"
    path.write_text(json.dumps(cascade))
    assert "routing.ladder: a 'cascade' ladder artifact reads each tier's answer; routing.mode 'route'" in ladder_error(_ladder(routing__ladder=str(path)))
    cfg, _ = __import__("app.serve.graph", fromlist=["app_config"]).app_config(
        _ladder(routing__mode="cascade", routing__ladder="app/verification/artifacts/ladder.json")
    )  # the shipped climb: a cascade ladder of as many tiers, no embedder to match
    assert cfg.routing.mode == "cascade" and cfg.top == 3
    other = dict(art, embedder=dict(art["embedder"], model_id="sentence-transformers/all-mpnet-base-v2", dim=768))
    path.write_text(json.dumps(other))
    assert "routing.ladder: calibrated with embedder 'sentence-transformers/all-mpnet-base-v2'" in ladder_error(_ladder(routing__ladder=str(path)))


def test_per_key_tier_caps_must_name_a_configured_tier(monkeypatch):
    from app.serve.graph import app_config, ingress_app

    monkeypatch.setenv("TIERROUTE_TEST_LADDER_KEYS", json.dumps([{"name": "a", "key": "k" * 20, "max_tier_shares": {"giant": 0.1}}]))
    cfg, _ = app_config(_ladder(auth={"keys_env": "TIERROUTE_TEST_LADDER_KEYS"}))
    with pytest.raises(ValueError, match="auth: key a: max_tier_shares.giant: no tier is named 'giant'"):
        ingress_app(cfg, [None, None, None])
