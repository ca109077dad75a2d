#!/usr/bin/env python3
"""Compacts a llama-perplexity --kl-divergence-base file into the top-k
log-probabilities of every scored token, small enough to commit as a test
fixture (tests/model_llama_agreement_test.cpp reads it).

usage: kld-topk.py BASE_FILE OUT_FILE --ppl LLAMA_FINAL_PPL [--k 64]

Output, little-endian:
  char[8] "MOETOPK1"; int32 n_ctx, n_vocab, n_chunk, k; float64 ppl
  int32 tokens[n_chunk * n_ctx]
  per chunk, per scored position (n_ctx/2 .. n_ctx-2):
    int32 ids[k] (most probable first), float32 log_probs[k]
The remaining probability mass, 1 - sum(exp(log_probs)), is the tail bin.
"""
import argparse, array, math, os, struct, sys

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base"); ap.add_argument("out")
    ap.add_argument("--ppl", type=float, required=True, help="llama-perplexity's final PPL estimate")
    ap.add_argument("--k", type=int, default=64)
    a = ap.parse_args()
    data = open(a.base, "rb").read()
    if data[:8] != b"_logits_":
        sys.exit(f"{a.base}: not a --kl-divergence-base file (no _logits_ magic)")
    n_ctx, n_vocab, n_chunk = struct.unpack_from("<3i", data, 8)
    off = 20
    tokens = array.array("i"); tokens.frombytes(data[off:off + 4 * n_chunk * n_ctx]); off += 4 * n_chunk * n_ctx
    row_u16 = 2 * ((n_vocab + 1) // 2) + 4
    rows = n_ctx - 1 - n_ctx // 2
    expect = off + n_chunk * rows * row_u16 * 2
    if len(data) != expect:
        sys.exit(f"{a.base}: {len(data)} bytes, expected {expect} for its header")
    out = bytearray(b"MOETOPK1" + struct.pack("<4id", n_ctx, n_vocab, n_chunk, a.k, a.ppl))
    out += tokens.tobytes()
    for _ in range(n_chunk * rows):
        scale, minlp = struct.unpack_from("<2f", data, off)
        codes = array.array("H"); codes.frombytes(data[off + 8: off + 8 + 2 * n_vocab])
        off += 2 * row_u16
        top = sorted(range(n_vocab), key=lambda i: -codes[i])[: a.k]
        out += array.array("i", top).tobytes()
        out += array.array("f", [scale * codes[i] + minlp for i in top]).tobytes()
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, a.out)
    print(f"{a.out}: {n_chunk} chunks of {n_ctx}, {n_chunk * rows} tokens, top {a.k} of {n_vocab}, {len(out)} bytes")

main()
