"""``tierroute loadtest``: drive an OpenAI-compatible endpoint with a reproducible request mix and report
latency, time to first token, throughput, tokens/s, the tier split and errors, per tier and overall.

A client only: no Ray, nothing of :mod:`app.serve`. One module per concept:

* :mod:`.config`   — the run's settings, validated (errors name the flag);
* :mod:`.mix`      — the request mix from a JSONL file (prompts or messages), shuffled by the seed;
* :mod:`.schedule` — Poisson arrival times (open loop);
* :mod:`.errors`   — what kind of failure a response or exception is;
* :mod:`.client`   — one request over httpx, streaming or not: latency, TTFT, tokens, tier;
* :mod:`.runner`   — one load level: open loop at a rate or closed loop at a concurrency, bounded;
* :mod:`.stats`    — per-tier and overall figures (numpy percentiles);
* :mod:`.capacity` — the router's own cost: ``/v1/route`` vs. ``/healthz``; :mod:`.hostcpu` — the CPU;
* :mod:`.report`, :mod:`.plot` — text tables, JSON and a PNG; :mod:`.cli` — the command.
"""
