"""The Ray Serve graph: embedder, router LLM and vLLM tiers behind an OpenAI-compatible ingress.

Built by :func:`app.serve.graph.build_app` from a validated :class:`app.serve.config.AppConfig`; the
routing decisions themselves come from :mod:`app.routing` (serve-time routing), and shadow evaluation
judges with the outcome tools' prompt. Nothing here is imported by :mod:`app.routing`.

A request's path, one module per concept: :mod:`~app.serve.ingress` (the endpoints) ->
:mod:`~app.serve.requests` (one parse step per endpoint) -> :mod:`~app.serve.router_service`
(the decision) -> :mod:`~app.serve.tiers` (the engine calls; :mod:`~app.serve.fallback` when one fails)
-> :mod:`~app.serve.responses` (how the answer says it was routed). Errors: :mod:`~app.serve.errors`;
keys: :mod:`~app.serve.auth`; metrics: :mod:`~app.serve.prometheus`; decision lines:
:mod:`~app.serve.decision_log`; shadow evaluation: :mod:`~app.serve.shadow`. Without Ray: config,
errors, responses, fallback, auth, shadow, decision_log, calls. Ray Serve LLM's private internals:
:mod:`~app.serve.ray_llm` only.
"""
