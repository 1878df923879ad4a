"""`tierroute evaluate --cascade`: the nested verifier's quality-vs-cost curve per source beside answer length,
prompt length and random, one PNG each; with --verifier-embedding the verifier may read the request's embedding."""

import numpy as np
from test_verification import topic_embed, topic_rows, write_rows

from app.calibration import cascade_eval, verifier_fit
from app.cli import main


def curves(out: str) -> dict[tuple[str, str], float]:
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[0] == "mc" and parts[-3].replace(".", "").isdigit():
            got[(parts[0], " ".join(parts[1:-3]))] = float(parts[-3])
    return got


def test_cascade_curves_per_source_with_and_without_the_requests_embedding(tmp_path, capsys, monkeypatch):
    data = write_rows(tmp_path / "answers.jsonl", topic_rows(240))
    args = ["evaluate", "--cascade", "--data", str(data), "--folds", "3", "--plot-dir", str(tmp_path / "plots")]
    assert main(args) == 0
    plain = curves(capsys.readouterr().out)
    assert (tmp_path / "plots" / "cascade-mc.png").stat().st_size > 10_000
    assert set(plain) == {("mc", n) for n in ("cascade: verifier (nested)", "cascade: answer length", "route: prompt length", "route: random")}
    monkeypatch.setattr(cascade_eval, "cached_embedder", lambda: (topic_embed, None))
    monkeypatch.setattr(verifier_fit, "MIN_EMBEDDING_ROWS", 100)
    assert main([*args, "--verifier-embedding"]) == 0
    embedded = curves(capsys.readouterr().out)
    # tier 2 is right only on the topic the request names: the embedding lets the verifier see it
    assert embedded[("mc", "cascade: verifier (nested)")] > plain[("mc", "cascade: verifier (nested)")] + 0.02
    assert np.isfinite(list(embedded.values())).all()
