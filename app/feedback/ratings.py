"""The router LLM's ratings of calibration prompts, through an OpenAI-compatible endpoint, cached.

``tierroute calibrate --router-llm MODEL --endpoint URL`` rates prompts with exactly the request the
serving path sends (:func:`app.routing.scorers.rating_request`: the same prompt, 0-10 constrained
choice, expected value over the choices' log-probabilities) and parses the answer the same way
(:func:`app.routing.scorers.rating_of_choice`). Ratings are appended to a JSONL cache as they come,
keyed by model, prompt version and text, so a rerun (or another calibration on the same prompts)
asks only for what is missing.

The same client asks the router LLM's other question, the verifier's check of tier 1's answer
(``calibrate --verifier-check-llm``; :data:`CHECK`, :mod:`app.verification.check`): an :class:`Ask` says
what one item's request is, how the reply is parsed, and which prompt version the cache names.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.feedback.endpoint import Failures, auth_headers
from app.routing.scorers import RATING_PROMPT_VERSION, rating_of_choice, rating_request
from app.verification.check import CHECK_PROMPT_VERSION, check_key, check_request, p_no_of_choice


@dataclass(frozen=True)
class Ask:
    """One question to the router LLM: ``request(model, item)`` (the serving request), ``parse(choice)``
    (the serving parse, to a number in [0, 1]), ``key(item)`` (the cached text) and the prompt version."""

    version: str
    request: Callable[[str, Any], dict]
    parse: Callable[[Mapping], float]
    key: Callable[[Any], str] = str


RATING = Ask(RATING_PROMPT_VERSION, rating_request, rating_of_choice)  # items: prompts
CHECK = Ask(CHECK_PROMPT_VERSION, lambda model, ra: check_request(model, *ra), p_no_of_choice, lambda ra: check_key(*ra))  # items: (request, answer)


def cache_key(model: str, text: str, version: str = RATING_PROMPT_VERSION) -> str:
    return hashlib.sha256(f"{model}\n{version}\n{text}".encode()).hexdigest()[:24]


class RatingCache:
    """``key -> rating`` in a JSONL file; a torn last line (a killed run) is ignored."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ratings: dict[str, float] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.ratings[row["key"]] = float(row["rating"])
                except (ValueError, KeyError, TypeError):
                    continue
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def get(self, model: str, text: str, version: str = RATING_PROMPT_VERSION) -> float | None:
        return self.ratings.get(cache_key(model, text, version))

    def add(self, f, model: str, text: str, rating: float, version: str = RATING_PROMPT_VERSION) -> None:
        key = cache_key(model, text, version)
        self.ratings[key] = rating
        f.write(json.dumps({"key": key, "model": model, "prompt_version": version, "rating": rating}) + "\n")
        f.flush()


@dataclass
class RatingReport(Failures):
    cached: int = 0
    rated: int = 0


async def rate_texts(
    texts: list,
    model: str,
    endpoint: str,
    cache: RatingCache,
    api_key: str | None = None,
    concurrency: int = 4,
    timeout_s: float = 60.0,
    progress=None,
    transport: httpx.AsyncBaseTransport | None = None,
    ask: Ask = RATING,
) -> tuple[list[float | None], RatingReport]:
    """Each text's rating in [0, 1] (None where the endpoint failed), and what was cached, rated, failed.
    ``ask``: the question (default the 0-10 rating of a prompt; :data:`CHECK`: items are (request, answer))."""
    report = RatingReport()
    out: list[float | None] = [cache.get(model, ask.key(t), ask.version) for t in texts]
    report.cached = sum(r is not None for r in out)
    if progress is not None:
        progress.update(report.cached)
    todo = [i for i, r in enumerate(out) if r is None]
    sem = asyncio.Semaphore(concurrency)
    headers = auth_headers(api_key)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=endpoint, timeout=timeout_s, headers=headers, transport=transport) as client:
        with cache.path.open("a", encoding="utf-8") as f:

            async def one(i: int) -> None:
                async with sem:
                    try:
                        r = await client.post("/v1/chat/completions", json=ask.request(model, texts[i]))
                        if r.status_code != 200:
                            raise RuntimeError(f"HTTP {r.status_code}")
                        out[i] = ask.parse(r.json()["choices"][0])
                    except (httpx.HTTPError, RuntimeError, KeyError, IndexError, ValueError, TypeError) as e:
                        report.failed += 1
                        if len(report.failures) < 10:
                            report.failures.append(f"prompt {i}: {type(e).__name__}: {e}")
                        return
                    finally:
                        if progress is not None:
                            progress.update(1)
                    cache.add(f, model, ask.key(texts[i]), out[i], ask.version)
                    report.rated += 1

            await asyncio.gather(*(one(i) for i in todo))
    return out, report
