#!/usr/bin/env python3
"""Tokenize the train / held-out text with the project's own tokenizer (moe-tokenize).

There is no Hugging Face `tokenizers` package on Debian; the C++ tokenizer
implements DeepSeek-V3's pre-tokenizer and BPE exactly, so the ids here are the
ids `moe` and `moe-perplexity` will see. The GGUF only has to carry the
vocabulary (any model converted with the cut tokenizer will do). Checks that
decoding the ids gives back the text byte for byte.
"""
import argparse
import json
import subprocess

import numpy as np

from cut_tokenizer import bytes_to_unicode


def decoder(tokenizer_json):
    with open(tokenizer_json, encoding="utf-8") as f:
        tok = json.load(f)
    inv = {c: b for b, c in bytes_to_unicode().items()}
    table = {}
    for s, i in tok["model"]["vocab"].items():
        table[i] = bytes(inv[ch] for ch in s)
    for t in tok["added_tokens"]:
        table[t["id"]] = t["content"].encode("utf-8")
    return lambda ids: b"".join(table[i] for i in ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe-tokenize", required=True)
    ap.add_argument("--gguf", required=True, help="GGUF carrying the cut vocabulary")
    ap.add_argument("--tokenizer-json", required=True, help="the same vocabulary as tokenizer.json (for decoding)")
    ap.add_argument("pairs", nargs="+", help="TEXT_FILE=OUT.npy ...")
    a = ap.parse_args()
    decode = decoder(a.tokenizer_json)
    for pair in a.pairs:
        src, dst = pair.split("=")
        out = subprocess.run([a.moe_tokenize, "-m", a.gguf, "--file", src, "--no-bos"], check=True,
                             capture_output=True, text=True).stdout
        ids = np.array(json.loads(out), dtype=np.int32)
        with open(src, "rb") as f:
            text = f.read()
        if decode(ids.tolist()) != text:
            raise SystemExit(f"{src}: decode(encode(text)) differs from the text")
        np.save(dst, ids)
        print(f"{src}: {len(text)} bytes -> {len(ids)} tokens ({len(text) / len(ids):.2f} bytes/token), "
              f"round trip exact -> {dst}")


if __name__ == "__main__":
    main()
