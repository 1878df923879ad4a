"""The cascade's pure pieces, without Ray: tier 1's request and answer, log-probabilities read from engine
responses and chunks, SSE re-emission, the direct threshold, the serve-time judge, the cascade config."""

import asyncio
import json

import numpy as np
import pytest
import yaml
from common import local_args
from conftest import ROOT

from app.routing.artifact import load_artifact
from app.routing.controller import ControllerConfig
from app.serve.answers import ChunkReader, Replay, answer_of, reemit, strip_chunk, strip_logprobs, tier1_request, wants_logprobs
from app.serve.cascade import Judge, direct_threshold
from app.serve.config import AppConfig
from app.serve.ray_llm import ChatCompletionRequest, CompletionRequest
from app.serve.responses import tag_sse
from app.verification.artifact import Logit, Pair, VerifierArtifact, VerifierExpert

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


def chat_body(logprobs=True):
    lp = {"content": [{"token": "4", "logprob": -0.1, "bytes": None, "top_logprobs": []}, {"token": ".", "logprob": -2.5, "bytes": None, "top_logprobs": []}]}
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "tier1-small",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4."}, "logprobs": lp if logprobs else None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }  # fmt: skip


def test_tier1_request_turns_logprobs_on_and_caps_the_answer():
    req = ChatCompletionRequest(model="auto", messages=MSGS, max_tokens=100, stream=True, stream_options={"include_usage": True})
    t1, ours = tier1_request(req, "chat", 16, stream=False)
    assert t1.logprobs is True and t1.max_completion_tokens == 16 and ours and not t1.stream and t1.stream_options is None
    assert req.logprobs is False and req.max_tokens == 100 and req.stream  # the client's request is untouched
    t1, ours = tier1_request(req, "chat", 1000, stream=True)
    assert t1.max_completion_tokens == 100 and not ours and t1.stream
    t1, ours = tier1_request(ChatCompletionRequest(model="auto", messages=MSGS), "chat", 8, False)  # no client limit
    assert t1.max_completion_tokens == 8 and ours
    comp = CompletionRequest(model="auto", prompt="x", max_tokens=4)
    t1, ours = tier1_request(comp, "completions", 16, stream=False)
    assert t1.logprobs == 0 and t1.max_tokens == 4 and not ours and not wants_logprobs(comp, "completions")
    assert tier1_request(CompletionRequest(model="auto", prompt="x", logprobs=3), "completions", 16, False)[0].logprobs == 3


def test_answer_and_logprobs_from_unary_responses():
    a = answer_of(chat_body(), "chat")
    assert (a.text, a.logprobs, a.tokens, a.finish_reason, a.usage["completion_tokens"]) == ("4.", [-0.1, -2.5], ["4", "."], "stop", 2)
    comp = {"choices": [{"index": 0, "text": " four", "finish_reason": "length",
                         "logprobs": {"tokens": [" fo", "ur"], "token_logprobs": [-1.0, -0.5], "text_offset": [0, 3], "top_logprobs": [None, None]}}]}  # fmt: skip
    a = answer_of(comp, "completions")
    assert (a.text, a.logprobs, a.tokens, a.finish_reason, a.n_tokens) == (" four", [-1.0, -0.5], [" fo", "ur"], "length", 2)
    assert answer_of({"choices": []}, "chat").text == "" and answer_of(chat_body(False), "chat").logprobs == []
    assert strip_logprobs(chat_body())["choices"][0]["logprobs"] is None


def sse(obj):
    return f"data: {json.dumps(obj)}\n\n"


def test_chunk_reader_and_stripping():
    chunks = [
        sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}], "usage": {"prompt_tokens": 5, "completion_tokens": 0}}),
        sse({"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": [{"token": "Hi", "logprob": -0.3}]}, "finish_reason": None}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}),
        sse({"choices": [{"index": 1, "delta": {"content": "other choice"}, "logprobs": {"content": [{"token": "o", "logprob": -9}]}}]}),
        sse({"choices": [{"index": 0, "delta": {"content": "!"}, "logprobs": {"content": [{"token": "!", "logprob": -1.2}]}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
        sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
    ]
    r = ChunkReader("chat")
    for c in chunks + ["data: [DONE]\n\n", object()]:
        r.add(c)
    assert (r.answer.text, r.answer.logprobs, r.answer.finish_reason, r.answer.usage["completion_tokens"]) == ("Hi!", [-0.3, -1.2], "stop", 2)
    stripped = [strip_chunk(c, logprobs=True, usage=True) for c in chunks]
    assert stripped[-1] == "" and all('"logprob": ' not in c and '"usage": {' not in c for c in stripped)
    assert strip_chunk(chunks[1], logprobs=False, usage=False) == chunks[1] and strip_chunk("data: [DONE]\n\n") == "data: [DONE]\n\n"


async def relay(first):
    return [c async for c in tag_sse(first, Replay(), {"path": "tier1"}, "rid", 5.0)]


def test_reemitted_answer_is_an_openai_stream():
    out = asyncio.run(relay(reemit(strip_logprobs(chat_body()), "chat", include_usage=True)))
    assert out[-1] == "data: [DONE]\n\n" and out.count("data: [DONE]\n\n") == 1
    chunks = [json.loads(c[6:]) for c in out[:-1]]
    assert chunks[0]["tierroute"] == {"path": "tier1"} and all("tierroute" not in c for c in chunks[1:])
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" and c["model"] == "tier1-small" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "4."} and chunks[0]["choices"][0]["logprobs"] is None
    assert chunks[1]["choices"][0]["finish_reason"] == "stop" and chunks[2]["choices"] == [] and chunks[2]["usage"]["total_tokens"] == 9
    comp = {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "text": "x", "finish_reason": "length"}], "usage": {"completion_tokens": 1}}
    chunks = [json.loads(c[6:]) for c in reemit(comp, "completions", include_usage=False)]
    assert [c["object"] for c in chunks] == ["text_completion"] * 2 and chunks[0]["choices"][0]["text"] == "x" and "usage" not in chunks[-1]


def test_direct_threshold_is_the_score_at_the_quantile():
    art = load_artifact(None)
    for q in (0.0, 0.5, 0.9, 1.0):
        assert float(art.quantile_of(direct_threshold(art, q))) == pytest.approx(q, abs=1e-6)


def embedding_verifier(tmp_path, dim=8):
    anchor = np.zeros(dim)
    anchor[0] = 1.0
    logit = Logit(coef=[0.0, *(20 * anchor)], intercept=-10.0, mean=[0.0] * (dim + 1), scale=[1.0] * (dim + 1))
    expert = VerifierExpert(candidate="t", features=["log_chars"], embedding="answer", model=logit)
    art = VerifierArtifact(pair=Pair(tier1="a", tier2="b"), embedder={"model_id": "test/fake-embedder", "dim": dim}, experts={"all": expert}, threshold=0.5)
    return str(art.save(tmp_path / "v.json"))


def test_judge_embeds_the_verifier_texts_with_the_routers_embed(tmp_path, fake_embedder):
    from app.serve.answers import Tier1Answer

    cfg = AppConfig.model_validate({**local_args(), "routing": {"mode": "cascade", "cascade": {"verifier": embedding_verifier(tmp_path)}}})
    seen = []

    async def embed(texts):
        seen.extend(texts)
        return fake_embedder.encode(texts)

    judge = Judge(cfg, embed, "test/fake-embedder")
    hard, easy = asyncio.run(judge("q", Tier1Answer("let me derive it"))), asyncio.run(judge("q", Tier1Answer("Paris")))
    assert seen == ["let me derive it", "Paris"]  # the expert embeds the answer's end
    assert hard.escalate and hard.score > 0.5 and not easy.escalate and easy.score < 0.5
    with pytest.raises(ValueError, match="embeds with test/fake-embedder"):
        Judge(cfg, embed, "sentence-transformers/all-MiniLM-L6-v2")

    async def broken(texts):
        raise RuntimeError("down")

    assert asyncio.run(Judge(cfg, broken)("q", Tier1Answer("x"))) is None  # the cascade degrades


def test_judge_with_the_shipped_text_verifier_and_the_escalation_controller():
    from app.serve.answers import Tier1Answer

    ctl = ControllerConfig(enabled=True, target_tier2_share=0.5, window=50, warmup=20)
    cfg = AppConfig.model_validate({**local_args(), "routing": {"mode": "cascade"}, "controller": ctl.model_dump()})

    async def no_embed(texts):
        raise AssertionError("a text-only verifier embeds nothing")

    judge = Judge(cfg, no_embed)
    start = judge.threshold
    answers = ["The answer is 4." + " so" * (i % 30) + (" maybe, not sure" * (i % 3)) for i in range(150)]
    verdicts = [asyncio.run(judge("What is 2+2?", Tier1Answer(a))) for a in answers]
    assert all(0 <= v.score <= 1 for v in verdicts) and len({round(v.score, 4) for v in verdicts}) > 10
    assert judge.threshold != start and judge.controller.state()["window"] == 50
    share = np.mean([v.escalate for v in verdicts[50:]])
    assert 0.2 <= share <= 0.8  # held near the target escalation share


def test_judge_runs_the_execution_check_of_the_shipped_verifier_unless_the_config_turns_it_off():
    from app.serve.answers import Tier1Answer

    request = ("You are given a Python function and an assertion containing an input to the function. Complete the assertion "
               "with a literal.\n\n[PYTHON]\ndef f(nums):\n    return sorted(nums)[::-1]\nassert f([2, 7, 1]) == ??\n[/PYTHON]")  # fmt: skip
    answer = '{{"reasoning": "The function sorts the list in descending order.", "answer": "{}"}}'
    right, wrong = Tier1Answer(answer.format("[7, 2, 1]")), Tier1Answer(answer.format("[1, 2, 7]"))

    def judge(execute: bool):
        cfg = AppConfig.model_validate({**local_args(), "routing": {"mode": "cascade", "cascade": {"execute_code": execute}}})
        return Judge(cfg, None)

    on = judge(True)
    ok, bad = asyncio.run(on(request, right)), asyncio.run(on(request, wrong))
    assert (ok.kind, ok.signals["exec_verdict"], bad.signals["exec_verdict"]) == ("crux", 1.0, -1.0)
    assert bad.escalate and not ok.escalate and bad.score > ok.score + 0.2
    off = judge(False)
    assert asyncio.run(off(request, wrong)).signals["exec_verdict"] == 0.0
    assert asyncio.run(off(request, wrong)).score == pytest.approx(asyncio.run(off(request, right)).score, abs=0.05)


def test_judge_embeds_the_request_for_the_shipped_mmlu_pro_expert_only():
    from app.serve.answers import Tier1Answer

    cfg = AppConfig.model_validate({**local_args(), "routing": {"mode": "cascade"}})
    seen = []

    async def embed(texts):
        seen.extend(texts)
        return np.full((len(texts), 384), 1 / np.sqrt(384))

    judge = Judge(cfg, embed, "sentence-transformers/all-MiniLM-L6-v2")
    q = "Which gas do plants take in?\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen\nD. Helium"
    v = asyncio.run(judge(q, Tier1Answer("Plants take in carbon dioxide for photosynthesis. The answer is (B).")))
    assert v.kind == "mmlu_pro" and seen == [q] and 0 < v.score < 1  # the request, as the router embeds it
    asyncio.run(judge("What is 2+2?", Tier1Answer("The answer is 4.")))
    assert seen == [q]  # an answer another kind's expert judges embeds nothing
    with pytest.raises(ValueError, match="embeds with sentence-transformers/all-MiniLM-L6-v2"):
        Judge(cfg, embed, "sentence-transformers/all-mpnet-base-v2")


def test_local_cascade_config_differs_from_local_in_the_routing_mode_only():
    load = lambda name: yaml.safe_load((ROOT / "configs" / name).read_text())  # noqa: E731
    local, cascade = load("local.yaml"), load("local-cascade.yaml")
    assert local["applications"][0]["args"]["routing"]["mode"] == "route"
    assert cascade["applications"][0]["args"]["routing"].pop("mode") == "cascade_routing"
    local["applications"][0]["args"]["routing"].pop("mode")
    assert local == cascade
    for cfg in (local, cascade):
        AppConfig.model_validate(cfg["applications"][0]["args"])
