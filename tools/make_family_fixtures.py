"""Reference fixtures for the model families (tests/fixtures/families/).

For each family a tiny random-weight model is built from a config with Hugging Face transformers
(float32, CPU), its weights rounded to fp16 and saved as model.safetensors (so our loader and
transformers use the same values), and its logits on fixed token ids written to golden.json.
Weights are drawn wider than transformers' default init (std 0.02) so that logits spread over a
few units and the family's features (biases, q/k norm, sliding window, fused tensors) change them.

Usage (transformers 5.17, torch 2.13 CPU):
    python tools/make_family_fixtures.py [OUT_DIR]
"""

import json
import math
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/families")
VOCAB = 256
SEQ = 24

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)

FAMILIES = {
    # Sliding window of 8 positions: shorter than the 24-token sequence, so it matters.
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM,
                dict(sliding_window=8, head_dim=16)),
    # q/k/v biases; no sliding window (as Qwen2.5 ships); tied embeddings as the small Qwens.
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(use_sliding_window=False, tie_word_embeddings=True, rope_theta=1000000.0)),
    # Per-head q/k RMSNorm; head_dim (32) differs from hidden / heads (16), as in Qwen3.
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              dict(head_dim=32, tie_word_embeddings=True, rope_theta=1000000.0)),
    # Fused qkv_proj and gate_up_proj; a sliding window as Phi-3-mini-4k has (2047 there).
    "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM,
             dict(sliding_window=12, pad_token_id=0)),
}


def widen(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Weights with spread: linear ~ N(0, 1/fan_in), embeddings ~ N(0, 0.3²), norms ~ 1 ± 0.2."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            # The checkpoint is fp16: the reference computes in fp32 from the same values.
            p.copy_(p.half().float())


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, VOCAB, (SEQ,), generator=gen).tolist()
    for family, (config_cls, model_cls, extra) in FAMILIES.items():
        config = config_cls(**{**COMMON, **extra})
        model = model_cls(config).eval()
        widen(model, gen)
        out = OUT / family
        out.mkdir(parents=True, exist_ok=True)
        config.architectures = [model_cls.__name__]
        config.save_pretrained(out)
        state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, out / "model.safetensors", metadata={"format": "pt"})
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logprobs = torch.log_softmax(logits, dim=-1)
        golden = {
            "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                         "float32 on CPU, fp16-rounded weights",
            "architecture": model_cls.__name__,
            "input_ids": ids,
            "logits": [[round(v, 4) for v in row] for row in logits.tolist()],
            "logprob_next": [logprobs[p, ids[p + 1]].item() for p in range(SEQ - 1)],
        }
        (out / "golden.json").write_text(json.dumps(golden) + "\n")
        print(family, "spread", logits.std().item(), "params", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
