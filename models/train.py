"""Trains the bundled models sotu-llama and sotu-llama-draft and writes reference fixtures.

Needs PyTorch, transformers 5.x, tokenizers and matplotlib; a CUDA GPU for training
(fixtures are computed on the CPU in fp32). Input: the files written by
models/extract_data.mjs. Usage (from the repository root):

    python3 models/train.py --data .train/data --eval-dir models/sotu-llama/eval --out OUT

Writes OUT/sotu-llama/, OUT/sotu-llama-draft/ and OUT/fixtures/sotu-llama/.
`--sweep` instead trains several short variants of the main model and prints their
validation losses (used to choose the hyperparameters below); `--smoke` runs the whole
pipeline with a handful of steps.
"""

import argparse
import copy
import csv
import hashlib
import inspect
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import tokenizers
import transformers
from tokenizers import ByteLevelBPETokenizer, Tokenizer
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

SEED = 1234
VOCAB = 4096
EOT = "<|endoftext|>"  # id 0: BOS, EOS and padding
T_TRAIN = 512  # training context (= max_position_embeddings)

MAIN_ARCH = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=8,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=64)
DRAFT_ARCH = dict(hidden_size=128, intermediate_size=320, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=64)

# Training hyperparameters (chosen with --sweep on the validation split).
MAIN_HP = dict(lr=2e-3, epochs=50.0, dropout=0.3, weight_decay=0.3, batch=64, warmup_frac=0.05,
               eval_every_epochs=0.25, patience_evals=12, budget_s=390)
DRAFT_HP = dict(lr=3e-3, epochs=25.0, dropout=0.1, weight_decay=0.1, batch=64, warmup_frac=0.05,
                eval_every_epochs=0.5, patience_evals=6, budget_s=100)

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(texts, out_dir):
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts, vocab_size=VOCAB, min_frequency=2, special_tokens=[EOT],
                            show_progress=False)
    tok = bpe._tokenizer
    assert tok.token_to_id(EOT) == 0 and tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    # tokenizer_config.json so that AutoTokenizer knows the special tokens.
    try:
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT,
            model_max_length=T_TRAIN)
        fast.save_pretrained(out_dir)
    except Exception as e:  # noqa: BLE001
        log("tokenizer_config.json not written:", repr(e))
    # save_pretrained rewrites tokenizer.json; keep the plain one (identical content).
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    return Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))


def encode_docs(tok, docs):
    """Each document becomes [BOS] + tokens; documents are concatenated."""
    encs = tok.encode_batch([d["text"] for d in docs], add_special_tokens=False)
    ids = []
    for e in encs:
        ids.append(0)
        ids.extend(e.ids)
    return torch.tensor(ids, dtype=torch.long)


# --------------------------------------------------------------------------------------
# Model


def make_config(arch):
    kw = dict(vocab_size=VOCAB, max_position_embeddings=T_TRAIN, rms_norm_eps=1e-5,
              hidden_act="silu", tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
              bos_token_id=0, eos_token_id=0, pad_token_id=0, initializer_range=0.02, **arch)
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    else:
        kw["rope_theta"] = 10000.0
    return LlamaConfig(**kw)


def n_params(model):
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def add_residual_dropout(model, p):
    """Dropout on the embedding output and on each residual branch (training only)."""
    if p <= 0:
        return []

    def hook(mod, inp, out):
        return F.dropout(out, p, mod.training)

    hs = [model.model.embed_tokens.register_forward_hook(hook)]
    for layer in model.model.layers:
        hs.append(layer.self_attn.o_proj.register_forward_hook(hook))
        hs.append(layer.mlp.down_proj.register_forward_hook(hook))
    return hs


def lm_loss(model, x, y):
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def eval_loss(model, ids, T, batch=64):
    """Mean next-token loss over non-overlapping windows of T inputs (all positions scored)."""
    model.eval()
    n = (len(ids) - 1) // T
    x = ids[: n * T].view(n, T)
    y = ids[1: n * T + 1].view(n, T)
    tot, cnt = 0.0, 0
    for i in range(0, n, batch):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[i:i + batch]).logits
        tot += F.cross_entropy(logits.float().reshape(-1, VOCAB), y[i:i + batch].reshape(-1),
                               reduction="sum").item()
        cnt += y[i:i + batch].numel()
    model.train()
    return tot / cnt


def train_model(name, arch, hp, train_ids, val_ids, train_probe_ids, device, smoke=False):
    seed_all(SEED)
    config = make_config(arch)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).to(device)
    hooks = add_residual_dropout(model, hp["dropout"])
    B, T = hp["batch"], T_TRAIN
    steps_per_epoch = len(train_ids) / (B * T)
    total = max(1, int(round(hp["epochs"] * steps_per_epoch)))
    if smoke:
        total = 12
    warmup = max(1, int(hp["warmup_frac"] * total))
    eval_every = max(1, int(round(hp["eval_every_epochs"] * steps_per_epoch)))
    if smoke:
        eval_every = 4
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(0.9, 0.95), eps=1e-8, fused=True)

    def lr_at(s):
        if s < warmup:
            return hp["lr"] * (s + 1) / warmup
        q = (s - warmup) / max(1, total - warmup)
        return hp["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))

    gen = torch.Generator(device=device)
    gen.manual_seed(SEED)
    train_ids = train_ids.to(device)
    val_ids = val_ids.to(device)
    train_probe_ids = train_probe_ids.to(device)
    offs = torch.arange(T + 1, device=device)
    log(f"{name}: params={n_params(model)} steps={total} ({total / steps_per_epoch:.2f} epochs) "
        f"steps/epoch={steps_per_epoch:.1f} warmup={warmup} eval_every={eval_every} hp={hp}")
    curve = []
    best = (float("inf"), -1, None)
    bad = 0
    t_start = time.time()
    stopped = "completed"
    model.train()
    for step in range(total):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, len(train_ids) - T - 1, (B,), device=device, generator=gen)
        chunk = train_ids[starts[:, None] + offs]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = lm_loss(model, chunk[:, :-1], chunk[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % eval_every == 0 or step == total - 1:
            vl = eval_loss(model, val_ids, T)
            tl = eval_loss(model, train_probe_ids, T)
            point = dict(step=step + 1, epoch=(step + 1) / steps_per_epoch,
                         tokens=(step + 1) * B * T, lr=lr_at(step), train_batch_loss=loss.item(),
                         train_loss=tl, val_loss=vl, time_s=time.time() - t_start)
            curve.append(point)
            improved = vl < best[0]
            if improved:
                best = (vl, step + 1, {k: v.detach().float().cpu().clone()
                                       for k, v in model.state_dict().items()})
                bad = 0
            else:
                bad += 1
            log(f"{name} step {step + 1}/{total} ep {point['epoch']:.2f} lr {point['lr']:.2e} "
                f"batch {loss.item():.4f} train {tl:.4f} val {vl:.4f} (ppl {math.exp(vl):.1f})"
                f"{' *' if improved else ''}")
            if bad >= hp["patience_evals"]:
                stopped = f"early stop: no val improvement in {bad} evals"
                break
            if time.time() - t_start > hp["budget_s"]:
                stopped = f"time budget {hp['budget_s']} s reached"
                break
    for h in hooks:
        h.remove()
    elapsed = time.time() - t_start
    log(f"{name}: {stopped}; best val {best[0]:.4f} at step {best[1]}; {elapsed:.1f} s")
    model.load_state_dict(best[2])
    summary = dict(stopped=stopped, steps_run=curve[-1]["step"] if curve else 0,
                   steps_planned=total, best_step=best[1], best_epoch=best[1] / steps_per_epoch,
                   best_tokens=best[1] * B * T, best_val_loss=best[0],
                   best_val_ppl=math.exp(best[0]), steps_per_epoch=steps_per_epoch,
                   train_tokens=len(train_ids), val_tokens=len(val_ids), batch=B, context=T,
                   warmup_steps=warmup, eval_every_steps=eval_every, train_time_s=elapsed,
                   hyperparameters=hp, params=n_params(model))
    return model, curve, summary


def save_model(model, out_dir, tok_dir):
    os.makedirs(out_dir, exist_ok=True)
    model = copy.deepcopy(model).to("cpu").half().eval()
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model.save_pretrained(out_dir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(tok_dir, f)
        if os.path.exists(src) and os.path.abspath(src) != os.path.abspath(os.path.join(out_dir, f)):
            with open(src, "rb") as a, open(os.path.join(out_dir, f), "wb") as b:
                b.write(a.read())
    sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
    log(f"saved {out_dir}: {sizes} total {sum(sizes.values())} bytes")
    return sizes


def load_shipped(model_dir):
    """The shipped fp16 weights, loaded in fp32 with eager attention (reference setting)."""
    m = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    return m.eval()


# --------------------------------------------------------------------------------------
# Evaluation on the shipped weights (CPU, fp32)


@torch.no_grad()
def sliding_ppl(model, ids, window=256, stride=128):
    """HF sliding-window perplexity: every token after ids[0] is scored exactly once, with
    as much left context inside its window as the window allows."""
    ids = torch.tensor(ids, dtype=torch.long)
    n = len(ids)
    nll_sum, scored, prev_end, windows = 0.0, 0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        trg_len = end - prev_end  # tokens not scored before
        x = ids[begin:end][None]
        logits = model(input_ids=x).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        # position j in the window predicts token begin+j+1
        first_target = max(prev_end, begin + 1)
        for t in range(first_target, end):
            nll_sum -= logp[t - 1 - begin, ids[t]].item()
            scored += 1
        windows += 1
        prev_end = end
        if end == n:
            break
    assert scored == n - 1, (scored, n)
    return dict(window=window, stride=stride, n_windows=windows, n_scored=scored,
                nll_sum=nll_sum, mean_nll=nll_sum / scored, ppl=math.exp(nll_sum / scored))


def sig(x, digits=5):
    return float(f"{x:.{digits - 1}e}")


@torch.no_grad()
def golden_fixture(model, tok, text):
    ids = [0] + tok.encode(text, add_special_tokens=False).ids
    n = len(ids)
    captured = {}

    def cap(i):
        def hook(mod, inp, out):
            captured[i] = (out[0] if isinstance(out, tuple) else out)[0].clone()
        return hook

    hs = [layer.register_forward_hook(cap(i)) for i, layer in enumerate(model.model.layers)]
    emb = model.model.embed_tokens(torch.tensor([ids]))[0]
    logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    for h in hs:
        h.remove()
    lse = torch.logsumexp(logits, -1)
    logp_next = [float(logits[i, ids[i + 1]] - lse[i]) for i in range(n - 1)]
    top = torch.topk(logits, 5, dim=-1)
    mid = n // 2
    full_pos = [0, mid, n - 1]
    nll = -sum(logp_next) / len(logp_next)
    probe = []
    for name, h in [("embeddings", emb)] + [(f"layer{i}", captured[i]) for i in sorted(captured)]:
        probe.append(dict(name=name, positions=full_pos,
                          first8=[[sig(v) for v in h[p, :8].tolist()] for p in full_pos],
                          l2=[sig(h[p].norm().item()) for p in full_pos]))
    return dict(
        text=text, bos_prepended=True, bos_id=0, n_tokens=n, input_ids=ids,
        note=("input_ids are exactly the ids fed to the model: [BOS=0] + tokenizer ids of text "
              "(no special tokens added by the tokenizer). Position i's logits predict "
              "input_ids[i+1]. Reference: shipped fp16 weights loaded in fp32, eager attention, "
              "CPU, float64 log-softmax."),
        logprob_next=[sig(v, 7) for v in logp_next],
        logsumexp=[sig(v, 7) for v in lse.tolist()],
        top5_ids=top.indices.tolist(),
        top5_logits=[[sig(v, 6) for v in r] for r in top.values.tolist()],
        full_logits=dict(positions=full_pos,
                         logits=[[sig(v) for v in logits[p].tolist()] for p in full_pos]),
        mean_nll=nll, ppl=math.exp(nll),
        hidden_probe=dict(note=("output of the embedding and of each decoder layer (residual "
                                "stream, before the final norm) at the full-logit positions: "
                                "first 8 values and L2 norm"), entries=probe),
    )


@torch.no_grad()
def outlier_stats(model, ids, window=256, threshold=6.0):
    """max |x| and hidden dims with |x| >= threshold at the inputs of each layer's linears."""
    sites = {}

    def hook(key):
        def f(mod, inp):
            x = inp[0][0]  # [T, d]
            sites.setdefault(key, []).append(x.clone())
        return f

    hs = []
    for i, layer in enumerate(model.model.layers):
        hs.append(layer.self_attn.q_proj.register_forward_pre_hook(hook((i, "attn_in"))))
        hs.append(layer.self_attn.o_proj.register_forward_pre_hook(hook((i, "o_proj_in"))))
        hs.append(layer.mlp.gate_proj.register_forward_pre_hook(hook((i, "mlp_in"))))
        hs.append(layer.mlp.down_proj.register_forward_pre_hook(hook((i, "down_proj_in"))))
    n = len(ids) // window
    for w in range(n):
        model(input_ids=torch.tensor([ids[w * window:(w + 1) * window]]))
    for h in hs:
        h.remove()
    layers = []
    L = len(model.model.layers)
    names = ["attn_in", "o_proj_in", "mlp_in", "down_proj_in"]
    for i in range(L):
        entry = {"layer": i}
        for nm in names:
            xs = torch.stack(sites[(i, nm)])  # [W, T, d]
            a = xs.abs()
            rest = a[:, 1:, :]
            flat = a.reshape(-1, a.shape[-1])
            hit = flat >= threshold
            dims = torch.nonzero(hit.any(0)).flatten().tolist()
            per_dim = sorted(((d, int(hit[:, d].sum()), float(flat[:, d].max())) for d in dims),
                             key=lambda r: (-r[1], r[0]))
            entry[nm] = dict(
                dim=a.shape[-1],
                max_abs=float(a.max()),
                max_abs_excl_pos0=float(rest.max()),
                n_dims_ge_threshold=len(dims),
                n_dims_ge_threshold_excl_pos0=int((rest.reshape(-1, a.shape[-1]) >= threshold)
                                                  .any(0).sum()),
                frac_tokens_with_any_ge_threshold=float(hit.any(1).float().mean()),
                top_dims=[dict(dim=d, n_tokens=c, max_abs=round(m, 3)) for d, c, m in per_dim[:12]],
                mean_abs=float(a.mean()),
            )
        layers.append(entry)
    # LLM.int8() criterion: a dim is systematic if it reaches the threshold in >=25% of the
    # layers and in >=6% of the tokens (for a given input site).
    systematic = {}
    n_tok = n * window
    for nm in names:
        counts = {}
        for i in range(L):
            for r in layers[i][nm]["top_dims"]:
                if r["n_tokens"] >= 0.06 * n_tok:
                    counts[r["dim"]] = counts.get(r["dim"], 0) + 1
        systematic[nm] = sorted(d for d, c in counts.items() if c >= 0.25 * L)
    return dict(threshold=threshold, window=window, n_windows=n, n_tokens=n_tok,
                method=("tokens of models/sotu-llama/eval/sotu-heldout.txt with BOS prepended, cut "
                        "into consecutive non-overlapping windows of `window` tokens, each fed "
                        "independently (so position 0 of each window is a fresh start); shipped fp16 "
                        "weights in fp32, eager attention, CPU. Sites: attn_in = input of q/k/v_proj "
                        "(after input_layernorm), o_proj_in, mlp_in = input of gate/up_proj (after "
                        "post_attention_layernorm), down_proj_in. top_dims lists at most 12 dims "
                        "with |x| >= threshold, by number of tokens."),
                systematic_dims_llm_int8=systematic, layers=layers)


def tokenizer_cases(tok, model_dir):
    texts = [
        "Hello, world!",
        "The State of the Union is strong.",
        "Mr. Speaker, Mr. Vice President, Members of Congress, my fellow Americans:",
        "We can't, we won't, and they'll see it's done; I'm sure we've tried.",
        "In 1776, 1865 and 2021: $3.5 billion (42%) -- not 3,000,000,000.",
        "  multiple   spaces\tand\ttabs\n\nnew lines\r\n end ",
        "café — naïve 日本",
        "emoji 🦅🇺🇸 and ünïcödé ẞ Ω ≈ ∑",
        "<|endoftext|>The text after a special token.",
        "",
    ]
    try:
        auto = transformers.AutoTokenizer.from_pretrained(model_dir)
    except Exception as e:  # noqa: BLE001
        auto = None
        log("AutoTokenizer failed:", repr(e))
    cases = []
    for t in texts:
        e = tok.encode(t, add_special_tokens=False)
        c = dict(text=t, ids=e.ids, tokens=e.tokens, decoded=tok.decode(e.ids, skip_special_tokens=False))
        if auto is not None:
            a = auto(t, add_special_tokens=False)["input_ids"]
            assert a == e.ids, (t, a, e.ids)
        cases.append(c)
    default_ids = auto("Hello")["input_ids"] if auto is not None else None
    return dict(
        tokenizer="models/sotu-llama/tokenizer.json",
        note=("ids from tokenizers.Tokenizer.encode(text, add_special_tokens=False); the tokenizer "
              "itself adds no BOS/EOS (no template post-processor). '<|endoftext|>' written in the "
              "text is matched as the special token id 0. decoded = decode(ids, "
              "skip_special_tokens=False)."),
        vocab_size=tok.get_vocab_size(), special_tokens={EOT: 0},
        autotokenizer_hello_default=default_ids, cases=cases)


@torch.no_grad()
def samples(model, tok, prompts, device):
    model = model.to(device)
    out = []
    for p in prompts:
        ids = torch.tensor([[0] + tok.encode(p, add_special_tokens=False).ids], device=device)
        g = model.generate(ids, max_new_tokens=60, do_sample=False, pad_token_id=0)
        rec = dict(prompt=p, greedy=tok.decode(g[0, ids.shape[1]:].tolist()), sampled=[])
        for k in range(2):
            torch.manual_seed(SEED + k)
            s = model.generate(ids, max_new_tokens=60, do_sample=True, temperature=0.8, top_k=40,
                               top_p=1.0, pad_token_id=0)
            rec["sampled"].append(tok.decode(s[0, ids.shape[1]:].tolist()))
        out.append(rec)
    model.to("cpu")
    return dict(settings=dict(bos_prepended=True, max_new_tokens=60, greedy="do_sample=False",
                              sampled="do_sample=True, temperature=0.8, top_k=40, seeds "
                                      f"{SEED} and {SEED + 1} (torch.manual_seed before each)",
                              weights="shipped fp16 weights loaded in fp32"),
                samples=out)


def write_curves(curves, out_dir):
    with open(os.path.join(out_dir, "loss_curve.json"), "w") as f:
        json.dump(curves, f, indent=1)
    with open(os.path.join(out_dir, "loss_curve.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "step", "epoch", "tokens", "lr", "train_loss", "val_loss",
                    "train_batch_loss"])
        for name, pts in curves.items():
            for p in pts:
                w.writerow([name, p["step"], f"{p['epoch']:.4f}", p["tokens"], f"{p['lr']:.3e}",
                            f"{p['train_loss']:.5f}", f"{p['val_loss']:.5f}",
                            f"{p['train_batch_loss']:.5f}"])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2))
        if len(curves) == 1:
            axes = [axes]
        for ax, (name, pts) in zip(axes, curves.items()):
            ep = [p["epoch"] for p in pts]
            ax.plot(ep, [p["train_loss"] for p in pts], label="train (eval mode)", lw=1.2)
            ax.plot(ep, [p["val_loss"] for p in pts], label="validation (SOTU 2010-2015)", lw=1.2)
            b = min(pts, key=lambda p: p["val_loss"])
            ax.axvline(b["epoch"], color="gray", ls=":", lw=1)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss (nats/token)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "loss_curve.svg"))
        plt.close(fig)
    except Exception as e:  # noqa: BLE001
        log("plot failed:", repr(e))


def golden_text(tok, text, lo=256, hi=300):
    """Longest prefix of `text` ending at a sentence end with lo..hi tokens (+BOS)."""
    best = None
    i = 0
    while True:
        j = text.find(". ", i)
        if j < 0:
            break
        cand = text[: j + 1]
        n = len(tok.encode(cand, add_special_tokens=False).ids) + 1
        if n > hi:
            break
        if n >= lo:
            best = cand
        i = j + 2
    assert best is not None
    return best


# --------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--sweep", default=None,
                    help="';'-separated variants of MAIN_HP, e.g. 'dropout=0.1,epochs=10;lr=1e-3'")
    ap.add_argument("--sweep-budget", type=float, default=60)
    args = ap.parse_args()

    log(f"python {sys.version.split()[0]} torch {torch.__version__} transformers "
        f"{transformers.__version__} tokenizers {tokenizers.__version__}")
    device = "cuda"
    log("device:", torch.cuda.get_device_name(0))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    train_docs = read_jsonl(os.path.join(args.data, "sotu_train.jsonl"))
    val_docs = read_jsonl(os.path.join(args.data, "sotu_val.jsonl"))
    test_docs = read_jsonl(os.path.join(args.data, "sotu_test.jsonl"))
    main_dir = os.path.join(args.out, "sotu-llama")
    draft_dir = os.path.join(args.out, "sotu-llama-draft")
    fix_dir = os.path.join(args.out, "fixtures", "sotu-llama")
    for d in (main_dir, draft_dir, fix_dir):
        os.makedirs(d, exist_ok=True)

    seed_all(SEED)
    tok = train_tokenizer([d["text"] for d in train_docs], main_dir)
    log("tokenizer trained")
    train_ids = encode_docs(tok, train_docs)
    val_ids = encode_docs(tok, val_docs)
    test_ids = encode_docs(tok, test_docs)
    # fixed slice of the training stream, same size as the validation split, for train loss
    g = torch.Generator().manual_seed(SEED)
    s = int(torch.randint(0, len(train_ids) - len(val_ids), (1,), generator=g))
    train_probe = train_ids[s: s + len(val_ids)]
    n_chars = sum(len(d["text"]) for d in train_docs)
    log(f"tokens: train {len(train_ids)} ({n_chars / len(train_ids):.2f} chars/token) "
        f"val {len(val_ids)} test {len(test_ids)}")

    if args.sweep:
        results = []
        for spec in args.sweep.split(";"):
            hp = dict(MAIN_HP)
            hp["budget_s"] = args.sweep_budget
            for kv in filter(None, spec.split(",")):
                k, v = kv.split("=")
                hp[k] = type(MAIN_HP[k])(float(v)) if k in MAIN_HP else float(v)
            m, curve, summ = train_model(f"sweep[{spec}]", MAIN_ARCH, hp, train_ids, val_ids,
                                         train_probe, device)
            tv = eval_loss(m, test_ids.to(device), T_TRAIN)
            m = m.float().cpu().eval()
            ids = test_ids[:256 * 8].tolist()
            st = outlier_stats(m, ids)
            mx = {nm: [round(l[nm]["max_abs"], 1) for l in st["layers"]]
                  for nm in ("attn_in", "mlp_in", "down_proj_in")}
            results.append(dict(spec=spec, best_val=summ["best_val_loss"],
                                best_epoch=summ["best_epoch"], stopped=summ["stopped"],
                                test_loss_T512=tv, outlier_max=mx,
                                systematic=st["systematic_dims_llm_int8"],
                                curve=[(round(p["epoch"], 2), round(p["train_loss"], 3),
                                        round(p["val_loss"], 3)) for p in curve]))
            log("SWEEP", json.dumps(results[-1]))
        with open(os.path.join(args.out, "sweep.json"), "w") as f:
            json.dump(results, f, indent=1)
        return

    # ---- main model
    model, curve_main, summ_main = train_model("sotu-llama", MAIN_ARCH, MAIN_HP, train_ids,
                                               val_ids, train_probe, device, smoke=args.smoke)
    summ_main["test_loss_T512"] = eval_loss(model, test_ids.to(device), T_TRAIN)
    sizes_main = save_model(model, main_dir, main_dir)
    del model
    # ---- draft model
    draft, curve_draft, summ_draft = train_model("sotu-llama-draft", DRAFT_ARCH, DRAFT_HP,
                                                 train_ids, val_ids, train_probe, device,
                                                 smoke=args.smoke)
    summ_draft["test_loss_T512"] = eval_loss(draft, test_ids.to(device), T_TRAIN)
    sizes_draft = save_model(draft, draft_dir, main_dir)
    del draft
    write_curves({"sotu-llama": curve_main, "sotu-llama-draft": curve_draft}, main_dir)

    # ---- everything below uses the shipped files
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    tok = Tokenizer.from_file(os.path.join(main_dir, "tokenizer.json"))
    main_m = load_shipped(main_dir)
    draft_m = load_shipped(draft_dir)
    with open(os.path.join(main_dir, "config.json")) as f:
        log("config.json:", f.read())

    # sanity: fp32 reload vs training-time validation loss (context 512, bf16 then)
    evals = {}
    ppl = dict(method=("Each file is read as UTF-8, tokenized whole with tokenizer.json "
                       "(add_special_tokens=False) and BOS (id 0) is prepended. Sliding window "
                       "as in the Hugging Face perplexity guide: windows start at 0, stride, "
                       "2*stride, ...; each window holds at most `window` tokens and scores only "
                       "the tokens not scored by an earlier window (labels -100 on the overlap); "
                       "a window's first token is never a target. Every token after the BOS is "
                       "scored exactly once: n_scored = n_tokens - 1. ppl = exp(nll_sum / "
                       "n_scored). Shipped fp16 weights loaded in fp32, eager attention, CPU, "
                       "float64 log-softmax."), models={})
    for mname, m in (("sotu-llama", main_m), ("sotu-llama-draft", draft_m)):
        ppl["models"][mname] = {}
        for fn in ("sotu-heldout.txt", "moby-dick.txt"):
            raw = open(os.path.join(args.eval_dir, fn), "rb").read()
            text = raw.decode("utf-8")
            ids = [0] + tok.encode(text, add_special_tokens=False).ids
            r = sliding_ppl(m, ids)
            r.update(file=f"models/sotu-llama/eval/{fn}", sha256=hashlib.sha256(raw).hexdigest(),
                     n_chars=len(text), n_tokens=len(ids), bos_prepended=True)
            ppl["models"][mname][fn] = r
            log(f"ppl {mname} {fn}: {r['ppl']:.3f} ({r['n_scored']} tokens)")
    with open(os.path.join(fix_dir, "perplexity.json"), "w") as f:
        json.dump(ppl, f, indent=1)
    evals["perplexity"] = ppl

    sotu_eval = open(os.path.join(args.eval_dir, "sotu-heldout.txt"), encoding="utf-8").read()
    gtext = golden_text(tok, sotu_eval)
    golden = golden_fixture(main_m, tok, gtext)
    golden["model"] = "models/sotu-llama"
    with open(os.path.join(fix_dir, "golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    log(f"golden: {golden['n_tokens']} tokens, ppl {golden['ppl']:.3f}")
    gd = golden_fixture(draft_m, tok, gtext)
    gd["model"] = "models/sotu-llama-draft"
    gd.pop("full_logits")
    gd.pop("hidden_probe")
    with open(os.path.join(fix_dir, "golden-draft.json"), "w") as f:
        json.dump(gd, f, separators=(",", ":"))
    tc = tokenizer_cases(tok, main_dir)
    with open(os.path.join(fix_dir, "tokenizer.json"), "w") as f:
        json.dump(tc, f, indent=1, ensure_ascii=False)

    sotu_ids = [0] + tok.encode(sotu_eval, add_special_tokens=False).ids
    out_stats = outlier_stats(main_m, sotu_ids)
    out_stats["model"] = "models/sotu-llama"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from outlier_summary import recurring_dims
    out_stats["recurring_dims"] = recurring_dims(out_stats)
    with open(os.path.join(main_dir, "outliers.json"), "w") as f:
        json.dump(out_stats, f, indent=1)
    for l in out_stats["layers"]:
        log("outliers layer", l["layer"], {nm: (round(l[nm]["max_abs"], 2),
                                                  l[nm]["n_dims_ge_threshold"])
                                             for nm in ("attn_in", "o_proj_in", "mlp_in",
                                                        "down_proj_in")})
    log("systematic dims:", out_stats["systematic_dims_llm_int8"])

    prompts = ["The state of the Union is", "Our economy", "Congress must act to",
               "In the last year, our armed forces", "Call me Ishmael. Some years ago"]
    smp = {"sotu-llama": samples(main_m, tok, prompts, device),
           "sotu-llama-draft": samples(draft_m, tok, prompts[:2], device)}
    with open(os.path.join(main_dir, "samples.json"), "w") as f:
        json.dump(smp, f, indent=1, ensure_ascii=False)
    for r in smp["sotu-llama"]["samples"]:
        log("SAMPLE", json.dumps(r, ensure_ascii=False))

    run_info = dict(
        versions=dict(python=sys.version.split()[0], torch=torch.__version__,
                      transformers=transformers.__version__, tokenizers=tokenizers.__version__),
        device=torch.cuda.get_device_name(0), seed=SEED, smoke=args.smoke,
        data=dict(train_addresses=len(train_docs), val_addresses=len(val_docs),
                  test_addresses=len(test_docs), train_chars=n_chars,
                  train_tokens=len(train_ids), val_tokens=len(val_ids),
                  test_tokens=len(test_ids),
                  years=dict(train=[train_docs[0]["year"], train_docs[-1]["year"]],
                             val=[val_docs[0]["year"], val_docs[-1]["year"]],
                             test=[test_docs[0]["year"], test_docs[-1]["year"]])),
        main=dict(arch=MAIN_ARCH, summary=summ_main, file_sizes=sizes_main),
        draft=dict(arch=DRAFT_ARCH, summary=summ_draft, file_sizes=sizes_draft),
        golden=dict(n_tokens=golden["n_tokens"], ppl=golden["ppl"], draft_ppl=gd["ppl"]),
        total_time_s=time.time() - T0)
    with open(os.path.join(main_dir, "training_run.json"), "w") as f:
        json.dump(run_info, f, indent=1)
    log("done", json.dumps(run_info)[:3000])


if __name__ == "__main__":
    main()
