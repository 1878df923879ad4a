"""Pure routing logic: text policy, embeddings, scorers, calibration, metrics.

Nothing in this package imports Ray, so it can be used, tested and reused
without a cluster; the Ray Serve deployments call into it.
"""
