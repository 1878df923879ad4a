"""Compose the serving graph: ``serve run`` / ``serve deploy`` import ``app.serve.graph:build_app``.

    Ingress (FastAPI) --> Embedder (sentence-transformers, @serve.batch)
                      --> Router LLM (vLLM, only inside the uncertainty band)
                      --> Tier 1 / Tier 2 (vLLM)
"""

from __future__ import annotations

import numpy as np
from pydantic import ValidationError
from ray import serve

from app.serve.config import AppConfig, EmbedderSpec, Resources
from app.serve.ingress import Ingress
from app.serve.llm import llm_deployment


@serve.deployment
class EmbedderDeployment:
    """Embeds prompts for the router; concurrent calls are encoded together.

    Used when the embedder is not co-located in the ingress (``embedder.colocate``).
    """

    def __init__(self, config: dict):
        from app.routing.embed import Embedder

        spec = EmbedderSpec.model_validate(config)
        self._embedder = Embedder(spec.embedder)  # set embedder.num_threads: Ray gives a 0.25-CPU replica one
        self.embed.set_max_batch_size(spec.max_batch_size)
        self.embed.set_batch_wait_timeout_s(spec.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def embed(self, calls: list[list[str]]) -> list[np.ndarray]:
        """Embeddings of a list of texts per call (the ingress sends one call per batch)."""
        # Inline on the event loop: a worker thread would fight the loop for the GIL.
        emb = self._embedder.encode([t for texts in calls for t in texts])
        bounds = np.cumsum([0] + [len(texts) for texts in calls])
        return [emb[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _options(r: Resources) -> dict:
    a = r.autoscaling
    return {
        "ray_actor_options": {"num_cpus": r.num_cpus, "num_gpus": r.num_gpus},
        "logging_config": {"enable_access_log": r.access_log},
        "max_ongoing_requests": r.max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
        },
    }


def embedder_deployment(cfg: AppConfig):
    """The Embedder deployment, or None when the config co-locates the model in the ingress."""
    if cfg.embedder.colocate:
        return None
    opts = _options(cfg.embedder.replica)
    return EmbedderDeployment.options(name="Embedder", **opts).bind(cfg.embedder.model_dump(mode="json"))


def ingress_options(cfg: AppConfig) -> dict:
    return _options(cfg.ingress.replica)


def build_app(args: dict | AppConfig):
    """Validate ``args`` as :class:`AppConfig` and bind every deployment."""
    try:
        cfg = args if isinstance(args, AppConfig) else AppConfig.model_validate(args)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"tierroute config: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    embedder = embedder_deployment(cfg)
    router_llm = llm_deployment(cfg.router_llm, "RouterLLM:") if cfg.router_llm and cfg.router_llm.enabled else None
    tier1 = llm_deployment(cfg.tier1, "Tier1:")
    tier2 = llm_deployment(cfg.tier2, "Tier2:")
    return Ingress.options(name="Ingress", **ingress_options(cfg)).bind(
        cfg.model_dump(mode="json"), embedder, tier1, tier2, router_llm
    )
