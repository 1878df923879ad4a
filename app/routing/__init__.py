"""Serve-time routing: what a replica loads to decide a prompt's tier -- the text policy, the
embedder, the experts (scorers), the router, the artifact it reads (and the shipped ones in
``artifacts/``), the share controllers, a ladder of N tiers in route mode (its artifact,
:mod:`.ladder_artifact`, and :class:`.ladder.LadderRouter`; the logistic model it stores,
:mod:`.logit`) -- and the ``route``/``demo`` commands. It may import
:mod:`app.files`, :mod:`app.validation` and third-party libraries, but nothing from
:mod:`app.calibration`, :mod:`app.feedback` or :mod:`app.serve`, and no Ray, so a replica loads only
this and it can be used and tested without a cluster (``tests/test_layers.py`` checks it).
"""
