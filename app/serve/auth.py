"""Optional API keys and their limits (no Ray calls: unit-testable alone).

Keys are read where the app is built (:func:`load_keys`: an environment variable and/or a file,
never the Serve config) and reach the ingress replicas only as SHA-256 digests with their names and
limits. A presented key is hashed and compared with every digest in constant time
(``hmac.compare_digest``, no early exit), so the time taken says nothing about which key or how
much of it matched. Key text is never logged; decisions name the key by its name.

Per key (:class:`KeyQuota`, per ingress replica): requests per minute (429 ``rate_limit_exceeded``
with ``Retry-After``) and a cap on the share of its recent routed requests served by tier 2: past
it, a request scored for tier 2 goes to tier 1 and the decision says ``over-cap``. That caps what a
key gains from prompts crafted to look complex (arXiv 2501.01818, "Rerouting LLM Routers").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from app.validation import first_error
from app.serve.config import ApiKeyConfig, AuthConfig, KeyLimits
from app.serve.errors import APIError

_Keys = TypeAdapter(list[ApiKeyConfig])


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class Key:
    name: str
    digest: bytes = field(repr=False)
    limits: KeyLimits

    def dump(self) -> dict:
        """For a replica's init arguments: the digest, never the key."""
        return {"name": self.name, "digest": self.digest.hex(), "limits": self.limits.model_dump()}

    @classmethod
    def load(cls, d: dict) -> "Key":
        return cls(d["name"], bytes.fromhex(d["digest"]), KeyLimits.model_validate(d["limits"]))


def _entries(text: str, where: str) -> list:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: not a JSON list of keys") from None
    out = []
    for i, item in enumerate(p for p in text.split(",") if p.strip()):
        name, sep, key = item.strip().partition(":")
        if not sep:
            raise ValueError(f"{where}: entry {i} is not 'name:key'")
        out.append({"name": name, "key": key})
    return out


def load_keys(spec: AuthConfig, environ: Mapping[str, str] = os.environ) -> list[Key]:
    """The configured keys; [] when auth is off. A ValueError naming the source and field otherwise
    (the message never contains a key)."""
    raw: list[tuple[str, list]] = []
    if spec.keys_env:
        where = f"auth.keys_env (${spec.keys_env})"
        if not environ.get(spec.keys_env, "").strip():
            raise ValueError(f"{where}: the environment variable is not set or empty")
        raw.append((where, _entries(environ[spec.keys_env], where)))
    if spec.keys_file:
        where = f"auth.keys_file ({spec.keys_file})"
        try:
            text = Path(spec.keys_file).read_text()
        except OSError:
            raise ValueError(f"{where}: cannot read the file") from None
        raw.append((where, _entries(text, where)))
    keys: list[Key] = []
    for where, entries in raw:
        try:
            specs = _Keys.validate_python(entries)
        except ValidationError as e:
            loc, msg = first_error(e)
            raise ValueError(f"{where}: {loc}: {msg}") from None
        for s in specs:
            own = s.model_fields_set & set(KeyLimits.model_fields)
            limits = spec.default_limits.model_copy(update={f: getattr(s, f) for f in own})
            keys.append(Key(s.name, digest(s.key), limits))
    if spec.enabled and not keys:
        raise ValueError("auth: no keys configured")
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ValueError(f"auth: key names must be unique, got {sorted(n for n in set(names) if names.count(n) > 1)}")
    if len({k.digest for k in keys}) != len(keys):
        raise ValueError("auth: the same key is configured twice")
    return keys


class KeyRing:
    def __init__(self, keys: list[Key]):
        self.keys = keys

    def authenticate(self, authorization: str | None) -> Key:
        """The key of an ``Authorization: Bearer <key>`` header; 401 in OpenAI's shape otherwise."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        d = digest(given.strip())
        match = None
        for k in self.keys:  # every digest compared: no early exit
            if hmac.compare_digest(d, k.digest):
                match = k
        if match is None:
            raise APIError(401, "invalid API key", code="invalid_api_key")
        return match


class KeyQuota:
    """One key's limits in one ingress replica."""

    def __init__(self, limits: KeyLimits, clock: Callable[[], float] = time.monotonic, tier_index: dict[str, int] | None = None):
        """``tier_index``: tier name -> index (1 = the cheapest), to read ``limits.max_tier_shares``."""
        self.limits, self.clock = limits, clock
        self._times: deque[float] = deque()
        self._tiers: deque[int] = deque(maxlen=limits.tier2_window)
        self.caps = tier_caps(limits, tier_index or {"tier1": 1, "tier2": 2})

    def admit(self) -> None:
        """Count a request; 429 with Retry-After past ``requests_per_minute`` in the last 60 s."""
        rpm = self.limits.requests_per_minute
        if rpm is None:
            return
        now = self.clock()
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        if len(self._times) >= rpm:
            wait = max(1, math.ceil(60.0 - (now - self._times[0])))
            raise APIError(429, f"rate limit: {rpm} requests per minute for this key", "rate_limit_error", code="rate_limit_exceeded", retry_after=wait)
        self._times.append(now)

    def share_from(self, tier: int) -> float:
        """The share of this key's recent routed requests served at ``tier`` or above."""
        return sum(t >= tier for t in self._tiers) / len(self._tiers) if self._tiers else 0.0

    def tier2_share(self) -> float:
        return self.share_from(2)

    def cap(self, tier: int, record: bool = True) -> tuple[int, bool]:
        """(tier to use, capped): a decision at or above a capped tier whose share is past its cap goes to the tier
        below the lowest such tier (two tiers: a tier-2 decision past ``max_tier2_share`` becomes tier 1). Records
        the result unless ``record`` is False (a ladder's climb asks before each rung, and records where it ends)."""
        over = [c for c, share in self.caps.items() if c <= tier and (share == 0 or self.share_from(c) >= share)]
        capped = bool(over)
        tier = min(over) - 1 if capped else tier
        if record:
            self._tiers.append(tier)
        return tier, capped


def tier_caps(limits: KeyLimits, tier_index: dict[str, int]) -> dict[int, float]:
    """A key's caps as tier index -> the most share of its requests at that tier or above: ``max_tier2_share``
    (tier 2) and ``max_tier_shares`` (by tier name; the lower of two caps on one tier wins). A ValueError names
    a tier that is not configured, or the cheapest (nothing is below it)."""
    caps = {} if limits.max_tier2_share is None else {2: limits.max_tier2_share}
    for name, share in (limits.max_tier_shares or {}).items():
        if name not in tier_index:
            raise ValueError(f"max_tier_shares.{name}: no tier is named {name!r} (tiers: {sorted(tier_index, key=tier_index.get)})")
        k = tier_index[name]
        if k == 1:
            raise ValueError(f"max_tier_shares.{name}: the cheapest tier cannot be capped (no tier is below it)")
        caps[k] = min(share, caps.get(k, 1.0))
    return caps
