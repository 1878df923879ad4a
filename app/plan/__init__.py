"""Capacity and cost planner (``tierroute plan``): an offline tool, no Ray.

Modules, one concept each: ``config`` (the validated inputs and their documented
defaults), ``tokens`` (token-count distributions), ``fit`` (does a model fit a
node type, and how many sequences its KV cache holds), ``roofline`` (time of one
engine step), ``sim`` (the simpy discrete-event simulation of a serving
topology), ``sizing`` (fewest replicas that meet the latency objective),
``planner`` (puts these together), ``report`` and ``plot`` (outputs), ``cli``.
"""
