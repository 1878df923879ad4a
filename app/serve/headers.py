"""The ``x-tierroute-tier`` header's format, written by the ingress and read by clients (the load test).

No imports beyond the standard library: a client reads it without the serving stack.
"""

from __future__ import annotations


def tier_header(tier: int, name: str) -> str:
    """``x-tierroute-tier``: the tier's index (1 = the cheapest) and name, as a structured header item (RFC 8941),
    e.g. ``2;name="tier2"``; :func:`tier_of_header` reads it back."""
    return f'{tier};name="{name}"'


def tier_of_header(value: str | None) -> tuple[int, str | None] | None:
    """(index, name) of an ``x-tierroute-tier`` value (a bare index, from before names, too); None if unreadable."""
    if not value:
        return None
    head, _, params = value.partition(";")
    try:
        tier = int(head.strip())
    except ValueError:
        return None
    name = None
    for p in params.split(";"):
        k, _, v = p.strip().partition("=")
        if k == "name":
            name = v.strip().strip('"')
    return tier, name
