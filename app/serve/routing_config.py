"""The ``routing:`` block: how requests reach the tiers -- route before generation, or cascade.

* ``route`` -- the pre-generation score decides (the router artifact's threshold, or the share controller's);
* ``cascade`` -- every request goes to tier 1 first; the verifier (:mod:`app.verification`) judges its
  answer and the unsure are escalated to tier 2 before the client sees anything;
* ``cascade_routing`` -- requests whose pre-generation score is clearly high (at or above
  ``cascade.direct_quantile`` of calibration traffic) go straight to tier 2; the rest cascade.

See docs/cascade.md. No Ray here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OPT_OUT_HEADER = "x-tierroute-cascade"  # "off": this request is routed before generation, not cascaded


def project_file(v: str | None, field: str) -> str | None:
    """A file field's value as an absolute path (relative: to the project root); ValueError if no such file."""
    if v is None:
        return v
    p = Path(v) if Path(v).is_absolute() else PROJECT_ROOT / v
    if not p.is_file():
        raise ValueError(f"{field} {v!r}: no such file")
    return str(p)


def _project_file_field(v: str | None, info: ValidationInfo) -> str | None:
    return project_file(v, info.field_name)


ProjectFile = Annotated[str | None, AfterValidator(_project_file_field)]  # a file field: see project_file


class CascadeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verifier: ProjectFile = Field(None, description="verifier artifact; default: the shipped one (Llama-3.1 8B -> 70B)")
    threshold: float | None = Field(None, ge=0, le=1, description="escalate at or above this verifier score; default: the verifier's")
    direct_quantile: float = Field(
        0.9, ge=0, le=1, description="cascade_routing: a pre-generation score at or above this quantile of calibration traffic goes straight to tier 2"
    )
    stream: Literal["buffer", "early"] = Field(
        "buffer", description="buffer: verify tier 1's whole answer, then stream the winner; early: decide after early_tokens tokens"
    )
    early_tokens: int = Field(16, ge=1, le=512, description="early streaming: tokens of tier 1's answer the verifier sees before deciding")
    max_tier1_tokens: int = Field(
        1024, ge=1, description="tier 1's answer is capped here; an answer cut at the cap is escalated (its tokens are charged)"
    )
    allow_opt_out: bool = Field(True, description=f"a request with header {OPT_OUT_HEADER}: off is routed before generation instead")
    execute_code: bool = Field(
        True, description="the execution check: where a request asks what its Python code returns (`assert f(x) == ??`), run that code "
        "in a sandbox and compare with tier 1's answer (docs/verifier.md#the-execution-check); off: the verifier does without"
    )


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["route", "cascade", "cascade_routing"] = Field("route", description="route, cascade or cascade_routing (docs/cascade.md)")
    cascade: CascadeConfig = CascadeConfig()
    ladder: ProjectFile = Field(
        None, description="route mode: a ladder artifact (`tierroute calibrate --ladder ... --ladder-mode route`) choosing among the tiers "
        "(required for three or more; docs/ladder.md); default for two tiers: the routing artifact"
    )
