"""A logistic model over an input row, as artifacts store it: the verifier's experts
(:mod:`app.verification.artifact`) and the ladder's boundaries (:mod:`app.routing.ladder_artifact`)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from app.routing.scorers import sigmoid


class Logit(BaseModel):
    """sigmoid(coef . (x - mean) / scale + intercept) over an expert's input row."""

    model_config = ConfigDict(extra="forbid")
    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _lengths(self):
        if not len(self.coef) == len(self.mean) == len(self.scale):
            raise ValueError(f"coef, mean and scale differ in length ({len(self.coef)}, {len(self.mean)}, {len(self.scale)})")
        return self


def probability(m: Logit, x: np.ndarray) -> np.ndarray:
    """``m``'s probability for an input row (a float array) or for each row of a matrix."""
    return sigmoid(((x - np.asarray(m.mean)) / np.asarray(m.scale)) @ np.asarray(m.coef) + m.intercept)
