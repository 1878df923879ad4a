"""The Ray Serve graph: embedder, router LLM and vLLM tiers behind an OpenAI-compatible ingress.

Built by :func:`app.serve.graph.build_app` from a validated :class:`app.serve.config.AppConfig`;
the routing decisions themselves come from :mod:`app.routing`.
"""
