#!/usr/bin/env python3
"""Train a tiny DeepSeek-V3 on the King James Bible; evaluate it as llama-perplexity does.

  train.py --out OUT                       train (resumes from OUT/ckpt.pt if present),
                                           then export OUT/hf and plot OUT/loss.png
  train.py --export-init DIR               write the untrained model (seeded) as an HF checkpoint
  train.py --eval HF_DIR [--zero-bias]     held-out perplexity, unigram perplexity, expert load
  train.py --logits HF_DIR --tokens 0,5,9  print float32 logits (to compare with moe-logits)

Token ids come from tokenize.py (the project's own moe-tokenize on the cut
DeepSeek-V3 vocabulary): OUT/data/{train,heldout}.ids.npy.

Objective (DeepSeek-V3 paper, sections 2.1-2.2): next-token cross-entropy
+ lambda * MTP cross-entropy for the token after next + alpha * the
sequence-wise balance loss; expert selection balanced by the
auxiliary-loss-free bias rule: after every step each routed layer's bias
e_score_correction_bias[i] moves by +gamma if expert i got fewer tokens than
the mean in that step's batch, by -gamma if more.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_io  # noqa: E402
from model import DeepseekV3, MoE  # noqa: E402

BOS = 0


def load_ids(path):
    return torch.from_numpy(np.load(path).astype(np.int64))


# ----------------------------------------------------------------------------- losses

def balance_loss(model, batch, seq_len):
    """Sequence-wise balance loss L_bal = sum_i f_i P_i, averaged over layers and sequences.

    f_i = N_r / (K_r T) * #tokens of the sequence routed to expert i,
    P_i = mean over the sequence's tokens of s_i / sum_j s_j (normalised sigmoid scores).
    """
    total = 0.0
    layers = [m for _, m in model.moe_layers() if m.last_scores is not None]
    for m in layers:
        E = m.gate.n_experts
        K = m.gate.top_k
        T = m.last_scores.shape[0] // batch
        s = m.last_scores.view(batch, T, E)
        p = (s / s.sum(-1, keepdim=True)).mean(1)                     # [B, E]
        onehot = torch.zeros(batch * T, E).scatter_(1, m.last_idx, 1.0).view(batch, T, E)
        f = onehot.sum(1) * (E / (K * T))                             # [B, E]
        total = total + (f * p).sum(-1).mean()
    return total / max(1, len(layers))


def update_bias(model, gamma):
    """Auxiliary-loss-free balancing: nudge each expert's selection bias toward the mean load."""
    for _, m in model.moe_layers():
        if m.last_idx is None:
            continue
        load = torch.bincount(m.last_idx.flatten(), minlength=m.gate.n_experts).float()
        m.gate.e_score_correction_bias += gamma * torch.sign(load.mean() - load)


# ----------------------------------------------------------------------------- evaluation

def perplexity_chunks(ids, n_ctx):
    """llama-perplexity's chunks: the text tokenized with BOS first, cut into n_ctx-token
    chunks (the remainder dropped), each chunk's first token replaced by BOS."""
    tokens = torch.cat([torch.tensor([BOS]), ids])
    n_chunk = tokens.numel() // n_ctx
    chunks = tokens[:n_chunk * n_ctx].view(n_chunk, n_ctx).clone()
    chunks[:, 0] = BOS
    return chunks


@torch.no_grad()
def evaluate(model, ids, n_ctx, batch=8, max_chunks=None, unigram=None, loads=False):
    """Perplexity over the second half of each chunk, as llama-perplexity scores it.

    Returns (ppl, unigram_ppl or None, {layer: expert counts} or None)."""
    model.eval()
    chunks = perplexity_chunks(ids, n_ctx)
    if max_chunks:
        chunks = chunks[:max_chunks]
    first = n_ctx // 2
    nll, count, uni_nll = 0.0, 0, 0.0
    counts = {i: torch.zeros(m.gate.n_experts, dtype=torch.long) for i, m in model.moe_layers()}
    for b in range(0, chunks.shape[0], batch):
        x = chunks[b:b + batch]
        logits = model(x).double()
        lp = torch.log_softmax(logits[:, first:n_ctx - 1], dim=-1)
        tgt = x[:, first + 1:]
        nll -= lp.gather(-1, tgt.unsqueeze(-1)).sum().item()
        count += tgt.numel()
        if unigram is not None:
            uni_nll -= unigram[tgt].sum().item()
        if loads:
            for i, m in model.moe_layers():
                if i < model.n_layers:
                    counts[i] += torch.bincount(m.last_idx.flatten(), minlength=m.gate.n_experts)
    model.train()
    uni = math.exp(uni_nll / count) if unigram is not None else None
    return math.exp(nll / count), uni, ({i: c for i, c in counts.items() if i < model.n_layers} if loads else None)


def unigram_logprobs(train_ids, vocab):
    """Add-one smoothed unigram model of the training tokens."""
    c = torch.bincount(train_ids, minlength=vocab).double() + 1.0
    return torch.log(c / c.sum())


def run_eval(a):
    torch.set_num_threads(a.threads)
    model = hf_io.load(a.eval)
    if a.zero_bias:
        for _, m in model.moe_layers():
            m.gate.e_score_correction_bias.zero_()
    held = load_ids(os.path.join(a.data, "heldout.ids.npy"))
    train_ids = load_ids(os.path.join(a.data, "train.ids.npy"))
    uni = unigram_logprobs(train_ids, model.c["vocab_size"])
    t0 = time.time()
    ppl, uni_ppl, counts = evaluate(model, held, a.ctx, max_chunks=a.chunks, unigram=uni, loads=True)
    n_chunk = perplexity_chunks(held, a.ctx).shape[0]
    if a.chunks:
        n_chunk = min(n_chunk, a.chunks)
    print(f"held-out: {held.numel() + 1} tokens (BOS first), {n_chunk} chunks of n_ctx={a.ctx}, "
          f"scored {n_chunk * (a.ctx - a.ctx // 2 - 1)} tokens ({time.time() - t0:.1f} s)")
    print(f"selection bias: {'zeroed' if a.zero_bias else 'learned'}")
    print(f"perplexity: {ppl:.4f}")
    print(f"unigram perplexity (add-one, training counts, same scored tokens): {uni_ppl:.4f}")
    print("expert load on the held-out text (tokens per expert; max/mean, min/mean):")
    for i, c in counts.items():
        c = c.double()
        bias = dict(model.moe_layers())[i].gate.e_score_correction_bias
        print(f"  layer {i}: max/mean {c.max() / c.mean():.3f}  min/mean {c.min() / c.mean():.3f}  "
              f"counts {c.long().tolist()}")
        print(f"           bias {[round(v, 3) for v in bias.tolist()]}")


# ----------------------------------------------------------------------------- training

def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def get_batch(train_ids, step, a):
    """Random windows, reproducible from (seed, step) so a resumed run sees the same data."""
    g = np.random.default_rng([a.seed, step])
    off = g.integers(0, train_ids.numel() - a.ctx, size=a.batch)
    x = torch.stack([train_ids[o:o + a.ctx] for o in off.tolist()])
    x[:, 0] = BOS  # as the evaluation (and llama-perplexity) starts every chunk
    return x


def save_ckpt(path, model, opt, step, log, train_s):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "log": log, "train_s": train_s, "config": model.c}, tmp)
    os.replace(tmp, path)


def plot(log, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tr = [(r["step"], r["loss"]) for r in log if "loss" in r]
    ev = [(r["step"], r["heldout_loss"]) for r in log if "heldout_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if tr:
        ax.plot(*zip(*tr), label="train (next-token CE)", lw=1)
    if ev:
        ax.plot(*zip(*ev), "o-", label="held-out books (first chunks, scored as llama-perplexity)", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("tiny DeepSeek-V3 on the King James Bible")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def train(a):
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    train_ids = load_ids(os.path.join(a.data, "train.ids.npy"))
    held = load_ids(os.path.join(a.data, "heldout.ids.npy"))
    with open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    vocab = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
    torch.manual_seed(a.seed)
    model = DeepseekV3(hf_io.make_config(vocab, a.ctx))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt = os.path.join(a.out, "ckpt.pt")
    step, log, train_s = 0, [], 0.0
    if os.path.exists(ckpt):
        s = torch.load(ckpt)
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        step, log, train_s = s["step"], s["log"], s["train_s"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params / 1e6:.2f} M (embedding and head shared with the MTP module); "
          f"train {train_ids.numel()} tokens, held-out {held.numel()}", flush=True)
    t_last = time.time()
    while step < a.steps:
        t0 = time.time()
        for gparam in opt.param_groups:
            gparam["lr"] = lr_at(step, a)
        x = get_batch(train_ids, step, a)
        logits, mtp_logits = model(x, with_mtp=True)
        V = logits.shape[-1]
        main = F.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
        mtp = F.cross_entropy(mtp_logits[:, :-1].reshape(-1, V), x[:, 2:].reshape(-1))
        lam = a.mtp_weight if step < 0.7 * a.steps else a.mtp_weight_late
        bal = balance_loss(model, x.shape[0], x.shape[1])
        loss = main + lam * mtp + a.balance_alpha * bal
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            update_bias(model, a.gamma)
        step += 1
        train_s += time.time() - t0
        if step % a.log_every == 0 or step == 1:
            tps = a.log_every * x.numel() / max(1e-9, time.time() - t_last) if step > 1 else 0
            t_last = time.time()
            log.append({"step": step, "loss": main.item(), "mtp_loss": mtp.item(), "bal": float(bal)})
            print(f"step {step:5d}  loss {main.item():.4f}  mtp {mtp.item():.4f}  bal {float(bal):.4f}  "
                  f"lr {lr_at(step - 1, a):.2e}  {tps:.0f} tok/s  train {train_s / 60:.1f} min", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            ppl, _, _ = evaluate(model, held, a.ctx, max_chunks=a.eval_chunks)
            log.append({"step": step, "heldout_loss": math.log(ppl)})
            print(f"step {step:5d}  held-out loss {math.log(ppl):.4f}  ppl {ppl:.2f}", flush=True)
        if step % a.ckpt_every == 0 or step == a.steps:
            save_ckpt(ckpt, model, opt, step, log, train_s)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"training time {train_s / 60:.1f} min (this and earlier runs), peak RSS of this process {peak_mb:.0f} MB",
          flush=True)
    hf_dir = os.path.join(a.out, "hf")
    hf_io.export(model, hf_dir, a.tokenizer)
    plot(log, os.path.join(a.out, "loss.png"))
    with open(os.path.join(a.out, "train_summary.json"), "w") as f:
        json.dump({"steps": step, "train_minutes": train_s / 60, "peak_rss_mb": peak_mb,
                   "params": n_params, "tokens_seen": step * a.batch * a.ctx}, f, indent=1)
    print(f"exported {hf_dir}, plot {os.path.join(a.out, 'loss.png')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="run directory (checkpoint, logs, hf/)")
    ap.add_argument("--data", default=None, help="token ids directory (default OUT/data)")
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "tokenizer"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=256, help="training sequence length = eval n_ctx")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--mtp-weight", type=float, default=0.3, help="MTP loss weight (paper: 0.3 ...)")
    ap.add_argument("--mtp-weight-late", type=float, default=0.1, help="... then 0.1 for the last 30%%")
    ap.add_argument("--balance-alpha", type=float, default=1e-4, help="sequence-wise balance loss weight")
    ap.add_argument("--gamma", type=float, default=3e-3, help="bias update speed")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-chunks", type=int, default=8)
    ap.add_argument("--ckpt-every", type=int, default=10)
    ap.add_argument("--export-init", metavar="DIR", help="write the seeded untrained model as an HF checkpoint")
    ap.add_argument("--init-std", type=float, default=0.02, help="with --export-init: weight std "
                    "(larger makes a sharper logits check: peaked attention, decided routing)")
    ap.add_argument("--vocab", type=int, default=None, help="with --export-init: vocabulary size "
                    "(default: from the tokenizer)")
    ap.add_argument("--replot", action="store_true", help="redraw OUT/loss.png from OUT/ckpt.pt")
    ap.add_argument("--eval", metavar="HF_DIR", help="evaluate an exported checkpoint on the held-out text")
    ap.add_argument("--chunks", type=int, default=None, help="with --eval: only the first N chunks "
                    "(as llama-perplexity --chunks)")
    ap.add_argument("--zero-bias", action="store_true", help="with --eval: route without the learned bias")
    ap.add_argument("--logits", metavar="HF_DIR", help="print logits of --tokens as JSON")
    ap.add_argument("--tokens", help="comma-separated token ids for --logits")
    a = ap.parse_args()
    a.data = a.data or os.path.join(a.out, "data")
    if a.export_init:
        torch.manual_seed(a.seed)
        with open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8") as f:
            tok = json.load(f)
        vocab = a.vocab or len(tok["model"]["vocab"]) + len(tok["added_tokens"])
        model = DeepseekV3(hf_io.make_config(vocab, a.ctx))
        model.init_weights(a.init_std)
        # Random selection biases, so that the logits check exercises them.
        for _, m in model.moe_layers():
            m.gate.e_score_correction_bias.uniform_(-0.1, 0.1)
        hf_io.export(model, a.export_init, a.tokenizer)
        print(f"wrote {a.export_init}")
    elif a.replot:
        plot(torch.load(os.path.join(a.out, "ckpt.pt"))["log"], os.path.join(a.out, "loss.png"))
    elif a.eval:
        run_eval(a)
    elif a.logits:
        torch.set_num_threads(a.threads)
        model = hf_io.load(a.logits).eval()
        ids = torch.tensor([[int(t) for t in a.tokens.split(",")]])
        with torch.no_grad():
            out = model(ids)[0]
        np.save(sys.stdout.buffer, out.numpy().astype(np.float32))
    else:
        train(a)


if __name__ == "__main__":
    main()
