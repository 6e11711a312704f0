"""Distils the bundled draft model from the bundled main model, for speculative decoding.

models/train.py trained sotu-llama-draft on the text alone. Speculative decoding keeps a draft
token only where it is the target's choice, so what a draft should learn is the target's
next-token distribution, on the text the target itself produces. This script starts from the
shipped draft (same architecture, same tokenizer) and trains it to minimise KL(target || draft)
over three kinds of sequences:

- the target's greedy continuations of random prefixes of the training split (what greedy
  speculative decoding sees),
- the target's sampled continuations (temperature 0.8, top-k 40),
- windows of the training split itself.

The checkpoint kept is the one whose proposals agree most often with the target's greedy
continuations of validation-split prefixes. Agreement and the tokens per target pass that greedy
speculative decoding would reach at draft lengths 1-4 are reported for the old and the new draft
on the test split's prefixes and on the five prompts of the speculative benchmark.

Needs PyTorch and transformers 5.x on a CUDA GPU (fixtures are computed on the CPU in fp32, as
train.py does). Usage (from the repository root, after models/extract_data.mjs):

    python3 models/distill_draft.py --data .train/data --eval-dir models/sotu-llama/eval --out OUT

Writes OUT/sotu-llama-draft/ (the model files and distillation.json) and, in
OUT/fixtures/sotu-llama/, golden-draft.json and perplexity.json (the draft's entries replaced,
the main model's copied from tests/fixtures/sotu-llama/perplexity.json), and OUT/samples.json
(models/sotu-llama/samples.json with the draft's samples replaced).
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as base  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAIN_DIR = os.path.join(HERE, "sotu-llama")
DRAFT_DIR = os.path.join(HERE, "sotu-llama-draft")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "sotu-llama")

# The five prompts of `deno task bench --sections speculative` (bench/speculative.ts).
BENCH_PROMPTS = ["The state of the Union is", "We must", "Our economy", "I ask the Congress to",
                 "The American people"]

HP = dict(lr=1e-3, weight_decay=0.01, warmup_steps=200, batch=64, seq=256, greedy_frac=0.5,
          sampled_frac=0.25, pool_greedy=12288, pool_sampled=4096, prefix=(2, 48),
          budget_s=240, max_steps=20000, eval_every=500, temperature=0.8, top_k=40)

log = base.log


@torch.no_grad()
def continue_batch(model, prefix, new_tokens, greedy, gen, temperature, top_k):
    """The model's continuation of each row of `prefix` (all rows the same length), with its
    KV cache: greedy, or sampled with temperature and top-k."""
    out = model(input_ids=prefix, use_cache=True)
    past = out.past_key_values
    seq = [prefix]
    logits = out.logits[:, -1].float()
    for i in range(new_tokens):
        if greedy:
            tok = logits.argmax(-1)
        else:
            v, ix = torch.topk(logits / temperature, top_k, dim=-1)
            pick = torch.multinomial(torch.softmax(v, -1), 1, generator=gen)
            tok = ix.gather(-1, pick)[:, 0]
        seq.append(tok[:, None])
        if i + 1 == new_tokens:
            break
        out = model(input_ids=tok[:, None], past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1].float()
    return torch.cat(seq, 1)


@torch.no_grad()
def continuation_pool(teacher, stream, n, seq, greedy, gen, hp, batch=512):
    """n sequences of `seq` tokens: BOS, a random slice of `stream`, then the teacher's
    continuation. Returns (tokens [n, seq], prefix lengths [n])."""
    dev = stream.device
    rows, lens = [], []
    lo, hi = hp["prefix"]
    for b in range(0, n, batch):
        m = min(batch, n - b)
        L = int(torch.randint(lo, hi + 1, (1,), generator=gen, device=dev))
        starts = torch.randint(0, len(stream) - L, (m,), generator=gen, device=dev)
        prefix = stream[starts[:, None] + torch.arange(L, device=dev)].clone()
        prefix[:, 0] = 0  # a prompt starts with BOS, as qlab's tokenizer adds it
        rows.append(continue_batch(teacher, prefix, seq - L, greedy, gen, hp["temperature"],
                                   hp["top_k"]))
        lens.append(torch.full((m,), L, device=dev))
    return torch.cat(rows), torch.cat(lens)


def runs_per_pass(agree, k):
    """Tokens per target pass of greedy speculative decoding with draft length k, from whether
    the draft's argmax after each committed token is the target's next token: a round from
    position i keeps the run of agreements starting at i (at most k) and adds the target's own."""
    i, passes, n = 0, 0, len(agree)
    while i < n:
        kept = 0
        while kept < k and i + kept < n and agree[i + kept]:
            kept += 1
        i += kept + 1
        passes += 1
    return n / passes


@torch.no_grad()
def agreement(student, seqs, lens):
    """Over the continuation part of each sequence: how often the student's argmax is the next
    token, and the tokens per target pass at k = 1..4 (mean over sequences)."""
    student.eval()
    hits, total = 0, 0
    tpp = {k: 0.0 for k in (1, 2, 3, 4)}
    for i in range(0, len(seqs), 256):
        x = seqs[i:i + 256]
        pred = student(input_ids=x).logits.float().argmax(-1)
        ok = (pred[:, :-1] == x[:, 1:]).cpu()
        for r in range(len(x)):
            a = ok[r, int(lens[i + r]) - 1:].tolist()
            hits += sum(a)
            total += len(a)
            for k in tpp:
                tpp[k] += runs_per_pass(a, k)
    student.train()
    return dict(agreement=hits / total, tokens_per_pass={k: v / len(seqs) for k, v in tpp.items()},
                sequences=len(seqs), scored=total)


def bench_prompt_sequences(teacher, tok, device, new_tokens=128):
    """The teacher's greedy continuation of each benchmark prompt ([BOS] + prompt)."""
    seqs, lens = [], []
    for p in BENCH_PROMPTS:
        ids = torch.tensor([[0] + tok.encode(p, add_special_tokens=False).ids], device=device)
        seqs.append(continue_batch(teacher, ids, new_tokens, True, None, 1.0, 1)[0])
        lens.append(ids.shape[1])
    return seqs, lens


def bench_agreement(student, seqs, lens):
    """agreement() for sequences of different lengths, one at a time."""
    hits, total, tpp = 0, 0, {k: 0 for k in (1, 2, 3, 4)}
    for s, L in zip(seqs, lens):
        r = agreement(student, s[None], torch.tensor([L]))
        hits += r["agreement"] * r["scored"]
        total += r["scored"]
        for k in tpp:
            tpp[k] += r["tokens_per_pass"][k] / len(seqs)
    return dict(agreement=hits / total, tokens_per_pass=tpp, sequences=len(seqs), scored=total)


def kl_loss(student, teacher, x):
    with torch.no_grad():
        t = torch.log_softmax(teacher(input_ids=x).logits.float(), -1)
    s = torch.log_softmax(student(input_ids=x).logits.float(), -1)
    return (t.exp() * (t - s)).sum(-1).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=HP["budget_s"], help="training seconds")
    ap.add_argument("--smoke", action="store_true", help="a few steps and small pools")
    args = ap.parse_args()
    hp = dict(HP, budget_s=args.budget)
    if args.smoke:
        hp.update(pool_greedy=512, pool_sampled=512, max_steps=20, eval_every=10)

    device = "cuda"
    log(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; hp {hp}")
    # fp32 products where the target's choices are taken: TF32 would flip near ties
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    base.seed_all(base.SEED)
    gen = torch.Generator(device=device)
    gen.manual_seed(base.SEED)
    tok = Tokenizer.from_file(os.path.join(MAIN_DIR, "tokenizer.json"))
    docs = {s: base.read_jsonl(os.path.join(args.data, f"sotu_{s}.jsonl"))
            for s in ("train", "val", "test")}
    ids = {s: base.encode_docs(tok, d).to(device) for s, d in docs.items()}
    log("tokens:", {s: len(v) for s, v in ids.items()})

    teacher = LlamaForCausalLM.from_pretrained(MAIN_DIR, dtype=torch.float32,
                                               attn_implementation="sdpa").to(device).eval()
    student = LlamaForCausalLM.from_pretrained(DRAFT_DIR, dtype=torch.float32,
                                               attn_implementation="sdpa").to(device)
    shipped = copy.deepcopy(student).eval()
    T = hp["seq"]

    t0 = time.time()
    greedy_pool, _ = continuation_pool(teacher, ids["train"], hp["pool_greedy"], T, True, gen, hp)
    sampled_pool, _ = continuation_pool(teacher, ids["train"], hp["pool_sampled"], T, False, gen,
                                        hp)
    n_eval = 64 if args.smoke else 512
    val_seqs, val_lens = continuation_pool(teacher, ids["val"], n_eval, T, True, gen, hp)
    test_seqs, test_lens = continuation_pool(teacher, ids["test"], n_eval, T, True, gen, hp)
    bench_seqs, bench_lens = bench_prompt_sequences(teacher, tok, device)
    log(f"pools: greedy {tuple(greedy_pool.shape)}, sampled {tuple(sampled_pool.shape)}, "
        f"val {tuple(val_seqs.shape)}, test {tuple(test_seqs.shape)} in {time.time() - t0:.1f} s")

    before = dict(val=agreement(shipped, val_seqs, val_lens),
                  test=agreement(shipped, test_seqs, test_lens),
                  bench=bench_agreement(shipped, bench_seqs, bench_lens))
    log("shipped draft:", json.dumps(before))

    decay = [p for p in student.parameters() if p.dim() >= 2]
    no_decay = [p for p in student.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(0.9, 0.95), eps=1e-8)
    B = hp["batch"]
    n_greedy = int(B * hp["greedy_frac"])
    n_sampled = int(B * hp["sampled_frac"])
    n_text = B - n_greedy - n_sampled
    offs = torch.arange(T, device=device)
    # the schedule assumes the budget's step count, measured after the first 50 steps
    planned = hp["max_steps"]
    best = (before["val"]["agreement"], 0, copy.deepcopy(student.state_dict()))
    curve = [dict(step=0, loss=None, val_agreement=before["val"]["agreement"],
                  val_tokens_per_pass_k3=before["val"]["tokens_per_pass"][3], time_s=0.0)]
    t_start = time.time()
    step = 0
    student.train()
    while step < planned:
        if step < hp["warmup_steps"]:
            lr = hp["lr"] * (step + 1) / hp["warmup_steps"]
        else:
            q = min(1.0, (step - hp["warmup_steps"]) / max(1, planned - hp["warmup_steps"]))
            lr = hp["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))
        for g in opt.param_groups:
            g["lr"] = lr
        gi = torch.randint(0, len(greedy_pool), (n_greedy,), generator=gen, device=device)
        si = torch.randint(0, len(sampled_pool), (n_sampled,), generator=gen, device=device)
        starts = torch.randint(0, len(ids["train"]) - T, (n_text,), generator=gen, device=device)
        x = torch.cat([greedy_pool[gi], sampled_pool[si], ids["train"][starts[:, None] + offs]])
        loss = kl_loss(student, teacher, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.time() - t_start
        if step == 50 and not args.smoke:
            planned = min(hp["max_steps"], int(hp["budget_s"] / (elapsed / 50)))
            log(f"{elapsed / 50 * 1000:.1f} ms a step: {planned} steps in the budget")
        if step % hp["eval_every"] == 0 or step == planned:
            v = agreement(student, val_seqs, val_lens)
            curve.append(dict(step=step, loss=loss.item(), lr=lr, val_agreement=v["agreement"],
                              val_tokens_per_pass_k3=v["tokens_per_pass"][3], time_s=elapsed))
            improved = v["agreement"] > best[0]
            if improved:
                best = (v["agreement"], step, copy.deepcopy(student.state_dict()))
            log(f"step {step}/{planned} lr {lr:.2e} KL {loss.item():.4f} val agreement "
                f"{v['agreement']:.4f} tokens/pass k=3 {v['tokens_per_pass'][3]:.3f}"
                f"{' *' if improved else ''}")
    log(f"kept step {best[1]} (val agreement {best[0]:.4f}); {time.time() - t_start:.1f} s")
    student.load_state_dict(best[2])
    student.eval()

    out_draft = os.path.join(args.out, "sotu-llama-draft")
    base.save_model(student, out_draft, MAIN_DIR)
    draft_m = base.load_shipped(out_draft).to(device)  # the fp16 file, in fp32
    after = dict(val=agreement(draft_m, val_seqs, val_lens),
                 test=agreement(draft_m, test_seqs, test_lens),
                 bench=bench_agreement(draft_m, bench_seqs, bench_lens))
    log("distilled draft (shipped fp16 file):", json.dumps(after))
    test_loss = dict(shipped=base.eval_loss(shipped, ids["test"], base.T_TRAIN),
                     distilled=base.eval_loss(draft_m, ids["test"], base.T_TRAIN))
    log("test-split loss (ctx 512):", test_loss)
    draft_m = draft_m.to("cpu").eval()

    # ---- fixtures from the shipped file, as train.py computes them (CPU, fp32)
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    fix = os.path.join(args.out, "fixtures", "sotu-llama")
    os.makedirs(fix, exist_ok=True)
    with open(os.path.join(FIXTURES, "perplexity.json")) as f:
        ppl = json.load(f)
    ppl["models"]["sotu-llama-draft"] = {}
    for fn in ("sotu-heldout.txt", "moby-dick.txt"):
        raw = open(os.path.join(args.eval_dir, fn), "rb").read()
        text = raw.decode("utf-8")
        tids = [0] + tok.encode(text, add_special_tokens=False).ids
        r = base.sliding_ppl(draft_m, tids)
        r.update(file=f"models/sotu-llama/eval/{fn}", sha256=hashlib.sha256(raw).hexdigest(),
                 n_chars=len(text), n_tokens=len(tids), bos_prepended=True)
        ppl["models"]["sotu-llama-draft"][fn] = r
        log(f"ppl sotu-llama-draft {fn}: {r['ppl']:.3f}")
    with open(os.path.join(fix, "perplexity.json"), "w") as f:
        json.dump(ppl, f, indent=1)
    with open(os.path.join(FIXTURES, "golden.json")) as f:
        gtext = json.load(f)["text"]
    gd = base.golden_fixture(draft_m, tok, gtext)
    gd["model"] = "models/sotu-llama-draft"
    gd.pop("full_logits")
    gd.pop("hidden_probe")
    with open(os.path.join(fix, "golden-draft.json"), "w") as f:
        json.dump(gd, f, separators=(",", ":"))
    with open(os.path.join(MAIN_DIR, "samples.json")) as f:
        smp = json.load(f)
    prompts = [r["prompt"] for r in smp["sotu-llama-draft"]["samples"]]
    smp["sotu-llama-draft"] = base.samples(draft_m, tok, prompts, device)
    with open(os.path.join(args.out, "samples.json"), "w") as f:
        json.dump(smp, f, indent=1, ensure_ascii=False)

    report = dict(
        method=("KL(target || draft) over the target's greedy and sampled continuations of "
                "random training-split prefixes and over training-split windows, from the "
                "shipped draft; checkpoint kept by agreement with the target's greedy "
                "continuations of validation-split prefixes. 'agreement': how often the draft's "
                "argmax after a committed token is the target's next token (the acceptance of "
                "a draft length of 1); 'tokens_per_pass': tokens per target pass of greedy "
                "speculative decoding at draft lengths 1-4, computed from those agreements."),
        hyperparameters=hp, smoke=args.smoke, device=torch.cuda.get_device_name(0),
        torch=torch.__version__, kept_step=best[1], steps_run=step,
        train_time_s=time.time() - t_start, curve=curve,
        before=before, after=after, test_loss_T512=test_loss,
        perplexity={fn: r["ppl"] for fn, r in ppl["models"]["sotu-llama-draft"].items()},
        golden_ppl=gd["ppl"], bench_prompts=BENCH_PROMPTS)
    with open(os.path.join(out_draft, "distillation.json"), "w") as f:
        json.dump(report, f, indent=1)
    log("done")


if __name__ == "__main__":
    main()
