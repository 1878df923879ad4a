"""Offline calibration: reading labelled data, fitting each kind's expert and the gate, choosing them
(the one-standard-error rule), the nested evaluation and its report, the threshold, building the
artifact, fitting the router LLM's use, the card (``tierroute show``), ``evaluate``, the routing
metrics (APGR etc.), batch scoring (``tierroute score``) and the ladder's offline half
(``calibrate``/``evaluate --ladder``; the ladder artifact and its serve-time policy are defined in
:mod:`app.routing` and re-exported by ``ladder_artifact``/``ladder_policy``). It may import :mod:`app.routing` (what
it builds must load there), :mod:`app.feedback` (the router LLM's ratings, shadow outcomes),
:mod:`app.files`, :mod:`app.validation` and :mod:`app.traffic`; never :mod:`app.serve` or Ray.
"""
