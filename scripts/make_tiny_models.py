"""Generate the tiny chat models that the local default serves, offline, in seconds.

No model hub is reachable here, so the local default serves small random-weight
Qwen2-architecture chat models made on the spot: a byte-level BPE tokenizer
trained on text that ships with the project, a ChatML chat template, and random
weights (seeded, so the same files come out every time). They emit junk text;
they exist so that the real vLLM engine, Ray Serve LLM and the OpenAI protocol
can run end to end on a CPU. Point a config at real checkpoints for real answers.

Usage: python scripts/make_tiny_models.py [--out models]   (idempotent)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# name -> (hidden size, layers, heads, seed)
MODELS = {"tiny-chat-small": (256, 2, 4, 1), "tiny-chat-medium": (256, 3, 4, 3), "tiny-chat-large": (384, 3, 6, 2)}
VOCAB = 4096


def corpus() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("**/*.md")) if ".venv" not in p.parts]
    for line in (ROOT / "app/calibration/exemplars/exemplars.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["prompt"])
    texts += [str(i) for i in range(1000)]
    return texts


def make_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


def make_model(out: Path, hidden: int, layers: int, heads: int, seed: int, tok) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "models"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    for name, (hidden, layers, heads, seed) in MODELS.items():
        out = Path(args.out) / name
        if (out / "config.json").is_file() and (out / "tokenizer.json").is_file() and not args.force:
            continue
        out.mkdir(parents=True, exist_ok=True)
        tok = make_tokenizer(out)
        make_model(out, hidden, layers, heads, seed, tok)
        print(f"made {out}")


if __name__ == "__main__":
    main()
