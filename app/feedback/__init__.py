"""Collecting outcomes: labelling a traffic sample with your own tiers and a judge (``tierroute
label``), the router LLM's ratings of calibration prompts, reading the shadow evaluation's outcome
logs, and the API-key helper of the HTTP clients (httpx) that talk to an OpenAI-compatible
endpoint. It may import :mod:`app.routing` (text, the rating request), :mod:`app.files`,
:mod:`app.validation` and :mod:`app.traffic`; never :mod:`app.calibration`, :mod:`app.serve` or Ray
(:mod:`app.serve` imports it: the shadow judges as ``label`` does).
"""
