"""What each tier of a ladder costs: prices per 1M input/output tokens, and each prompt's cost per model.

Default prices (USD per 1M tokens, input / output) are list prices, as recalled from the providers' public
price pages (OpenAI's API pricing for gpt-4o-2024-08-06 and gpt-4o-mini-2024-07-18; Together AI's serverless
"Turbo"/reference prices for the open models, 2024-2025); they were not re-checked online from this
machine. Self-hosting has other economics (``tierroute plan`` prices nodes); override any price with
``--prices model=IN/OUT,...``.

A prompt's tokens are estimated from the texts (:func:`app.routing.text.estimate_tokens`, 4 characters a
token): input = the prompt (the same for every model; templates and few-shot context are not counted),
output = that model's answer where the data has it, else ``default_output_tokens``.
"""

from __future__ import annotations

import numpy as np

from app.routing.ladder_artifact import Price  # defined beside the artifact's Tier, which a replica reads
from app.routing.text import estimate_tokens

__all__ = ["DEFAULT_OUTPUT_TOKENS", "DEFAULT_PRICES", "Price", "parse_prices", "prices_for", "row_costs"]


DEFAULT_PRICES: dict[str, Price] = {
    "llama-3.1-8b": Price(input=0.18, output=0.18),  # Together AI, Meta-Llama-3.1-8B-Instruct-Turbo
    "llama-3.1-70b": Price(input=0.88, output=0.88),  # Together AI, Meta-Llama-3.1-70B-Instruct-Turbo
    "gpt-4o-mini": Price(input=0.15, output=0.60),  # OpenAI, gpt-4o-mini-2024-07-18
    "gpt-4o": Price(input=2.50, output=10.00),  # OpenAI, gpt-4o-2024-08-06
    "qwen2-7b": Price(input=0.20, output=0.20),  # Together AI, up to 8B parameters
    "qwen2-72b": Price(input=0.90, output=0.90),  # Together AI, Qwen2-72B-Instruct
    "qwen1.5-7b": Price(input=0.20, output=0.20),  # Together AI, up to 8B parameters
    "qwen1.5-72b": Price(input=0.90, output=0.90),  # Together AI, 41B-80B parameters
    "mistral-7b": Price(input=0.20, output=0.20),  # Together AI, Mistral-7B-Instruct-v0.2
    "mixtral-8x7b": Price(input=0.60, output=0.60),  # Together AI, Mixtral-8x7B-Instruct-v0.1
}
DEFAULT_OUTPUT_TOKENS = 256


def parse_prices(text: str | None) -> dict[str, Price]:
    """``--prices model=IN/OUT,model=IN/OUT`` over the defaults; an error names the bad item."""
    out = dict(DEFAULT_PRICES)
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        model, _, value = item.partition("=")
        inp, _, outp = value.partition("/")
        try:
            out[model.strip()] = Price(input=float(inp), output=float(outp))
        except ValueError:
            raise ValueError(f"--prices: {item!r} is not model=INPUT/OUTPUT (USD per 1M tokens, e.g. gpt-4o=2.5/10)") from None
    return out


def prices_for(models: list[str], prices: dict[str, Price]) -> list[Price]:
    missing = [m for m in models if m not in prices]
    if missing:
        raise ValueError(f"--prices: no price for {missing} (give model=IN/OUT per 1M tokens)")
    return [prices[m] for m in models]


def row_costs(rows, models: list[str], prices: dict[str, Price], default_output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> np.ndarray:
    """USD per prompt per model (rows x models): the prompt's tokens at the input price, the model's answer's at the output price."""
    ps = prices_for(models, prices)
    out = np.zeros((len(rows), len(models)))
    for i, r in enumerate(rows):
        tin = estimate_tokens(r.prompt)
        for k, (m, p) in enumerate(zip(models, ps)):
            tout = estimate_tokens(r.answers[m]) if m in r.answers else default_output_tokens
            out[i, k] = (tin * p.input + tout * p.output) / 1e6
    return out
