"""A ladder climbed at serve time: tier k's answer -> P(tier k is not enough), from boundary k of a cascade-mode
ladder artifact (``tierroute calibrate --ladder ... --ladder-mode cascade``; docs/ladder.md).

Boundary k's input row is the verifier's features of tier k's answer (:func:`app.verification.verifier.answer_features`,
text only: the ladder data carry no log-probabilities), in the boundary's ``features`` order: the row the offline
fit read (``Design.matrix``). Tier k is sufficient iff the probability is below the boundary's threshold. The
serving graph climbs with it (:mod:`app.serve.ladder_cascade`); no Ray here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.routing.artifact import ArtifactError
from app.routing.ladder_artifact import LadderArtifact, load_ladder_artifact
from app.verification.verifier import Answer, answer_features

DEFAULT_CASCADE_LADDER = Path(__file__).parent / "artifacts" / "ladder.json"  # Llama-3.1 8B -> 70B -> gpt-4o (make ladder-artifact)


class LadderJudge:
    """A cascade-mode ladder artifact served: (tier k, request, tier k's answer) -> P(tier k is not enough)."""

    def __init__(self, artifact: LadderArtifact):
        artifact.require_mode("cascade")
        for k, b in enumerate(artifact.boundaries):
            if b.embedding:
                raise ArtifactError(f"ladder artifact field 'boundaries.{k}.embedding': a climb reads the answer's text features only")
        self.artifact = artifact
        self.thresholds = artifact.thresholds

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LadderJudge":
        """The judge of the cascade ladder at ``path`` (the shipped one when None)."""
        return cls(load_ladder_artifact(path or DEFAULT_CASCADE_LADDER))

    def score(self, tier: int, request: str, answer: str) -> float:
        """P(tier ``tier`` (1-based, below the top) is not enough), given its ``answer`` to ``request``."""
        b = self.artifact.boundaries[tier - 1]
        feats = answer_features(Answer(request, answer))
        x = np.array([[feats.get(f, 0.0) for f in b.features]], dtype=np.float64)
        return float(b.probability(x)[0])

    def sufficient(self, tier: int, score: float) -> bool:
        return score < float(self.thresholds[tier - 1])
