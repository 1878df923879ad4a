"""The ladder artifact, re-exported for the offline code: it is defined at serve time, in
:mod:`app.routing.ladder_artifact` (a replica reads it without importing calibration)."""

from app.routing.ladder_artifact import DEFAULT_LADDER, FORMAT, VERSION, Boundary, LadderArtifact, Price, Tier, load_ladder_artifact

__all__ = ["DEFAULT_LADDER", "FORMAT", "VERSION", "Boundary", "LadderArtifact", "Price", "Tier", "load_ladder_artifact"]
