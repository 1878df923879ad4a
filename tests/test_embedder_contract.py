"""An artifact is served and used only with the embedding model (and prefix) it was calibrated with:
at build time (build_app, both embedder placements), where a model is loaded (the co-located
ingress, the Embedder deployment) and on the command line."""

import json

import pytest
from common import local_args

from app.routing.artifact import DEFAULT_ARTIFACT, ArtifactError, load_artifact

SHIPPED = load_artifact().embedder.model_id
OTHER = "sentence-transformers/paraphrase-MiniLM-L3-v2"  # also 384-dimensional: would mis-route silently


def artifact_with(tmp_path, **embedder) -> str:
    """The shipped artifact, its embedder record changed (e.g. a dimension the model does not have)."""
    raw = json.loads(DEFAULT_ARTIFACT.read_text())
    raw["embedder"].update(embedder)
    path = tmp_path / "artifact.json"
    path.write_text(json.dumps(raw))
    return str(path)


@pytest.mark.parametrize("colocate", [True, False], ids=["co-located", "embedder deployment"])
def test_build_app_rejects_another_embedding_model_naming_both(colocate):
    from app.serve.graph import build_app

    args = local_args()
    args["embedder"]["colocate"] = colocate
    args["embedder"]["model"] = OTHER
    with pytest.raises(ValueError, match=r"embedder\.model") as e:
        build_app(args)
    assert OTHER in str(e.value) and SHIPPED in str(e.value)


@pytest.mark.parametrize("colocate", [True, False], ids=["co-located", "embedder deployment"])
def test_build_app_rejects_another_prefix_and_takes_model_and_prefix_from_the_artifact(tmp_path, colocate):
    from app.serve.graph import app_config, build_app

    args = local_args()
    args["embedder"]["colocate"] = colocate
    args["embedder"]["prefix"] = "query: "
    with pytest.raises(ValueError, match=r"embedder\.prefix"):
        build_app(args)

    args = local_args()
    args["embedder"]["colocate"] = colocate
    del args["embedder"]["model"]
    args["artifact"] = artifact_with(tmp_path, prefix="classification: ")
    cfg, art = app_config(args)
    assert cfg.embedder.model == SHIPPED and cfg.embedder.prefix == "classification: "
    assert art.embedder.prefix == "classification: "


@pytest.mark.slow
def test_co_located_ingress_fails_to_start_on_a_mismatched_model(tmp_path):
    """A config that bypassed build_app's check still fails where the model is loaded."""
    from app.serve.config import AppConfig
    from app.serve.router_service import router_service

    args = local_args()
    args["artifact"] = artifact_with(tmp_path, dim=768)
    with pytest.raises(ArtifactError, match="dim 768.*dim 384"):
        router_service(AppConfig.model_validate(args))


@pytest.mark.slow
def test_embedder_deployment_fails_to_start_on_a_mismatched_model(tmp_path):
    from app.serve.graph import EmbedderDeployment
    from app.serve.config import AppConfig

    args = local_args()
    cfg = AppConfig.model_validate(args)
    with pytest.raises(ArtifactError, match=f"{SHIPPED}.*dim 768.*{SHIPPED}.*dim 384"):
        EmbedderDeployment.func_or_class(cfg.embedder.model_dump(mode="json"), artifact_with(tmp_path, dim=768))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["route", "score", "demo", "evaluate"])
def test_cli_refuses_an_artifact_its_model_does_not_match(tmp_path, capsys, command):
    from app.cli import main

    art = artifact_with(tmp_path, dim=768)
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"prompt": "What is 2 + 2?", "weak": True, "strong": True}) + "\n")
    argv = {
        "route": ["route", "What is 2 + 2?"],
        "score": ["score", "--input", str(data), "--output", str(tmp_path / "out.jsonl")],
        "demo": ["demo"],
        "evaluate": ["evaluate", "--data", str(data), "--plot-dir", str(tmp_path)],
    }[command]
    assert main([*argv, "--artifact", art]) == 2
    err = capsys.readouterr().err
    assert "dim 768" in err and "dim 384" in err and SHIPPED in err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_cli_embeds_with_the_artifacts_prefix(tmp_path, capsys):
    from app.cli import main

    prompt = "Summarise the plot of Hamlet in two sentences."
    scores = []
    for art in (str(DEFAULT_ARTIFACT), artifact_with(tmp_path, prefix="classification: ")):
        assert main(["route", prompt, "--artifact", art]) == 0
        scores.append(json.loads(capsys.readouterr().out)["signals"]["embedding"])
    assert scores[0] != pytest.approx(scores[1], abs=1e-6)
