"""Verification: is tier 1's answer good enough, or should the request go to tier 2?

Serve-time and offline (``tierroute verify``) share this code. A verifier artifact (:mod:`.artifact`)
holds, per kind of request, a calibrated model over features of tier 1's *answer* (:mod:`.features`:
its text, and its token log-probabilities where the engine returned them; where the request asks what its
code returns, the execution check, :mod:`.execution`, which runs that code in a sandbox) and, where it paid
in nested cross-validation, embeddings (the request's, read by the model of tier 2 being right). :class:`.verifier.Verifier` turns
(request, answer, log-probabilities) into a score -- the probability that tier 2 would do better -- and
the escalation decision. Its experts' logistic model (``Logit``) is defined in :mod:`app.routing.logit`,
which the ladder artifact shares.

May import :mod:`app.routing` (the embedder, text helpers) and neutral helpers; never calibration,
feedback, serve or Ray (``tests/test_layers.py``).
"""
