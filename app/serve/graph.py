"""Compose the serving graph: ``serve run`` / ``serve deploy`` import ``app.serve.graph:build_app``.

    Ingress (FastAPI) --> Embedder (sentence-transformers, @serve.batch; or inside the ingress)
                      --> Router LLM (vLLM, only inside the uncertainty band)
                      --> Tier 1 / Tier 2 / ... (vLLM; or RemoteTier: a remote OpenAI-compatible endpoint),
                          one deployment per tier of the config's ladder (``tier1``/``tier2``, or ``tiers:``)
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import ValidationError
from ray import serve
from ray.serve.config import AutoscalingConfig

from app.routing.artifact import Artifact, load_artifact
from app.validation import describe
from app.serve.auth import load_keys, tier_caps
from app.serve.config import AppConfig, EmbedderServeConfig, Rung, is_remote
from app.serve.ingress import Ingress
from app.serve.llm import llm_deployment
from app.serve.remote import RemoteTier

logger = logging.getLogger("tierroute.config")


@serve.deployment
class EmbedderDeployment:
    """Embeds prompts for the router; concurrent calls are encoded together.

    Used when the embedder is not co-located in the ingress (``embedder.colocate``).
    The loaded model is checked against the artifact's (id and dimension) before
    the replica takes any request.
    """

    def __init__(self, config: dict, artifact: str | None):
        from app.routing.embed import Embedder

        spec = EmbedderServeConfig.model_validate(config)
        self._embedder = Embedder(spec.embedding_model())  # set embedder.num_threads: Ray gives a 0.25-CPU replica one
        load_artifact(artifact).check_embedder(self._embedder.model_id, self._embedder.dim)
        self.embed.set_max_batch_size(spec.max_batch_size)
        self.embed.set_batch_wait_timeout_s(spec.batch_wait_timeout_s)

    @serve.batch  # sizes set from the config in __init__
    async def embed(self, calls: list[list[str]]) -> list[np.ndarray]:
        """Embeddings of a list of texts per call (the ingress sends one call per batch)."""
        # Inline on the event loop: a worker thread would fight the loop for the GIL.
        emb = self._embedder.encode([t for texts in calls for t in texts])
        bounds = np.cumsum([0] + [len(texts) for texts in calls])
        return [emb[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def app_config(args: dict | AppConfig) -> tuple[AppConfig, Artifact]:
    """``args`` validated, with the embedding model and prefix of its artifact (see
    :meth:`AppConfig.with_artifact_embedder`); a ValueError naming the field otherwise."""
    try:
        cfg = args if isinstance(args, AppConfig) else AppConfig.model_validate(args)
    except ValidationError as e:
        raise ValueError(f"tierroute config: {describe(e)}") from None
    for name, replica in replicas(cfg):  # Ray's own rules, where the graph is built (the config has no Ray)
        try:
            AutoscalingConfig(**replica.autoscaling.options())
        except ValidationError as e:
            raise ValueError(f"tierroute config: {name}.replica.autoscaling: {describe(e)}") from None
    artifact = load_artifact(cfg.artifact)
    try:
        cfg = cfg.with_artifact_embedder(artifact)
        check_ladder(cfg)
    except ValueError as e:
        raise ValueError(f"tierroute config: {e}") from None
    return cfg, artifact


def check_ladder(cfg: AppConfig) -> None:
    """``routing.ladder``, when set, fits the config: a route-mode ladder artifact with one tier per configured tier,
    calibrated with the embedder the graph serves; a ValueError naming the field otherwise. A ladder calibrated on
    other models than the configured ones is logged (its thresholds describe those)."""
    if cfg.routing.ladder is None:
        return
    from app.routing.embed import model_id
    from app.routing.ladder import load_ladder_artifact

    try:
        ladder = load_ladder_artifact(cfg.routing.ladder)
    except Exception as e:
        raise ValueError(f"routing.ladder: {e}") from None
    n = len(cfg.ladder)
    if ladder.mode != cfg.routing.mode:
        reads = "each tier's answer" if ladder.mode == "cascade" else "the prompt"
        raise ValueError(
            f"routing.ladder: a {ladder.mode!r} ladder artifact reads {reads}; routing.mode {cfg.routing.mode!r} needs one "
            f"fitted with --ladder-mode {cfg.routing.mode}"
        )
    if len(ladder.tiers) != n:
        raise ValueError(f"routing.ladder: the artifact has {len(ladder.tiers)} tiers, the config {n}")
    e = ladder.embedder if ladder.mode == "route" else None
    if e is not None and (e.model_id != model_id(cfg.embedder.model) or e.prefix != cfg.embedder.prefix):
        raise ValueError(
            f"routing.ladder: calibrated with embedder {e.model_id!r} (prefix {e.prefix!r}); the graph embeds with "
            f"{cfg.embedder.model!r} (prefix {cfg.embedder.prefix!r}), the routing artifact's"
        )
    sources = model_sources(cfg)
    calibrated = [t.model for t in ladder.tiers]
    if [s.rsplit("/", 1)[-1].lower() for s in sources] != [m.lower() for m in calibrated]:
        logger.warning("the ladder artifact was calibrated on %s: its thresholds and figures describe those models", " -> ".join(calibrated))


def model_sources(cfg: AppConfig) -> list[str]:
    """The model each tier serves, cheapest first: an engine's ``model_source``, a remote tier's ``remote.model``."""
    return [r.spec.remote.model if is_remote(r.spec) else r.spec.model_source for r in cfg.ladder]


def warn_if_other_pair(cfg: AppConfig, artifact: Artifact) -> bool:
    """Log a warning when the tiers' ``model_source``s are not the model pair the artifact was calibrated on
    (its threshold and figures then describe other models); True when it warned. The log names the
    artifact's pair only, never the configured sources (they may be local paths)."""
    if len(cfg.ladder) != 2:  # a ladder's artifact is checked by check_ladder
        return False
    if artifact.serves_pair(*model_sources(cfg)) is not False:
        return False
    tier1, tier2 = artifact.pair or ("?", "?")
    logger.warning(
        "tier1/tier2 model_source are not the routing artifact's model pair (%s / %s): its threshold and measured "
        "figures were calibrated on that pair; calibrate on your own models' outcomes (`tierroute calibrate`) for yours",
        tier1, tier2,
    )  # fmt: skip
    return True


def replicas(cfg: AppConfig):
    """(block name, replica resources) of every deployment ``cfg`` configures."""
    yield "ingress", cfg.ingress.replica
    yield "embedder", cfg.embedder.replica
    if cfg.router_llm is not None:
        yield "router_llm", cfg.router_llm.replica
    for r in cfg.ladder:
        yield field_of(cfg, r), r.spec.replica


def field_of(cfg: AppConfig, r: Rung) -> str:
    """Where tier ``r`` is configured, for messages: ``tier1``/``tier2``, or ``tiers[k]`` (from 0)."""
    return f"tiers[{r.index - 1}]" if cfg.tiers is not None else f"tier{r.index}"


def embedder_deployment(cfg: AppConfig):
    """The Embedder deployment, or None when the config co-locates the model in the ingress."""
    if cfg.embedder.colocate:
        return None
    opts = cfg.embedder.replica.deployment_options()
    return EmbedderDeployment.options(name="Embedder", **opts).bind(cfg.embedder.model_dump(mode="json"), cfg.artifact)


def ingress_app(cfg: AppConfig, tiers: list, router_llm=None):
    """The ingress (and the Embedder deployment unless co-located) over the given tier deployments (cheapest first).

    ``cfg`` comes from :func:`app_config`, so the embedder is the artifact's. API keys are read here
    (a missing or invalid key source fails the build) and reach the replicas as digests only.
    """
    names = {r.name: r.index for r in cfg.ladder}
    try:
        loaded = load_keys(cfg.auth)
        for k in loaded:
            try:
                tier_caps(k.limits, names)
            except ValueError as e:
                raise ValueError(f"auth: key {k.name}: {e}") from None
        keys = [k.dump() for k in loaded]
    except ValueError as e:
        raise ValueError(f"tierroute config: {e}") from None
    return Ingress.options(name="Ingress", **cfg.ingress.replica.deployment_options()).bind(
        cfg.model_dump(mode="json"), embedder_deployment(cfg), tiers, router_llm, keys
    )


def tier_deployment(r: Rung, field: str):
    """The bound deployment of tier ``r`` (configured in block ``field``: tier1, tiers[2], ...), named
    ``Tier<k>:<model_id>``: a vLLM engine, or a :class:`RemoteTier` (CPU only).

    A remote tier's key source is checked here (a ValueError naming the field); its arguments name the
    variable or file only: the replica reads the key itself when it starts."""
    spec, prefix = r.spec, f"Tier{r.index}:"
    if not is_remote(spec):
        return llm_deployment(spec, prefix)
    try:
        spec.remote.check_key_source()
    except ValueError as e:
        raise ValueError(f"tierroute config: {field}.{e}") from None
    opts = spec.replica.deployment_options()
    return RemoteTier.options(name=f"{prefix}{spec.model_id}", **opts).bind(spec.remote.model_dump(mode="json"), spec.model_id)


def build_app(args: dict | AppConfig):
    """Validate ``args`` as :class:`AppConfig` against its artifact and bind every deployment."""
    cfg, artifact = app_config(args)
    warn_if_other_pair(cfg, artifact)
    router_llm = llm_deployment(cfg.router_llm, "RouterLLM:") if cfg.router_llm and cfg.router_llm.enabled else None
    return ingress_app(cfg, [tier_deployment(r, field_of(cfg, r)) for r in cfg.ladder], router_llm)
