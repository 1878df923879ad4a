"""How the offline tools (label, calibrate --router-llm, loadtest) present an API key to an OpenAI-compatible
endpoint, and how they count the calls to it that failed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Failures:
    """Calls to an endpoint that failed: how many, and the messages of the first ones."""

    failed: int = 0
    failures: list[str] = field(default_factory=list)


def api_key_from_env(var: str | None) -> str | None:
    """The key in environment variable ``var`` (``--api-key-env``); None when no variable is named."""
    if not var:
        return None
    key = os.environ.get(var)
    if not key:
        raise ValueError(f"--api-key-env {var}: the environment variable is not set")
    return key


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``Authorization: Bearer <key>``, or nothing without a key."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}
