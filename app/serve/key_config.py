"""The ``auth:`` block: API keys and their limits (per key: requests per minute, caps on the share of requests
at a tier or above). No Ray here; the keys themselves are read by :func:`app.serve.auth.load_keys`, never from
this config. Re-exported by :mod:`app.serve.config`.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from app.serve.tier_config import Strict


class KeyLimits(Strict):
    """Limits of one API key (per ingress replica: N replicas allow up to N times these)."""

    requests_per_minute: int | None = Field(None, ge=1)
    max_tier2_share: float | None = Field(
        None, ge=0, le=1, description="past this share of its recent routed requests on tier 2 or above, a key's requests go to tier 1"
    )
    max_tier_shares: dict[str, float] | None = Field(
        None, description="a ladder's caps, per tier name: past this share of its recent routed requests on that tier or above, "
        "a key's requests go to the tier below it"
    )
    tier2_window: int = Field(100, ge=10, description="recent routed requests the shares are measured over")

    @field_validator("max_tier_shares")
    @classmethod
    def _shares(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for name, share in (v or {}).items():
            if not 0 <= share <= 1:
                raise ValueError(f"max_tier_shares.{name}: {share} is not a share in [0, 1]")
        return v


class ApiKeyConfig(KeyLimits):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    key: str = Field(min_length=16, repr=False)


class AuthConfig(Strict):
    """Optional API keys. Keys come from an environment variable and/or a file, never from this config."""

    keys_env: str | None = Field(
        None, description="environment variable holding a JSON list of {name, key, ...limits} or 'name:key,name:key'"
    )
    keys_file: str | None = Field(None, description="JSON file: a list of {name, key, requests_per_minute?, max_tier2_share?}")
    default_limits: KeyLimits = Field(KeyLimits(), description="limits of keys that set none of their own")

    @property
    def enabled(self) -> bool:
        return bool(self.keys_env or self.keys_file)
