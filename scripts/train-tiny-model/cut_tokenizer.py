#!/usr/bin/env python3
"""Cut DeepSeek-V3's byte-level BPE tokenizer down to its first N merges.

Same recipe as the reference fixture hf-tiny-dsv3 (its 2060-token vocabulary is
this cut with 1800 merges): ids 0..3 are the special tokens begin/end of
sentence, User, Assistant; ids 4..259 the 256 byte tokens in byte order; then
one token per kept merge, in merge order. The pre-tokenizer, decoder and
chat template are DeepSeek-V3's own, so the model goes through the real
`deepseek-v3` pre-tokenizer path in moe-convert / llama.cpp.
"""
import argparse
import json
import os

SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]


def bytes_to_unicode():
    """GPT-2's byte -> printable character map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def cut(full, n_merges):
    byte_chars = bytes_to_unicode()
    vocab = {}
    for b in range(256):
        vocab[byte_chars[b]] = len(SPECIALS) + b
    merges = []
    for m in full["model"]["merges"][:n_merges]:
        left, right = m.split(" ") if isinstance(m, str) else m
        if left not in vocab or right not in vocab:
            raise SystemExit(f"merge '{m}' uses a token outside the cut vocabulary")
        merged = left + right
        if merged in vocab:
            raise SystemExit(f"merge '{m}' makes a token that already exists: {merged!r}")
        vocab[merged] = len(SPECIALS) + len(vocab)
        merges.append(f"{left} {right}")
    out = dict(full)
    out["added_tokens"] = [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    model = dict(full["model"])
    model["vocab"] = vocab
    model["merges"] = merges
    out["model"] = model
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", required=True, help="DeepSeek-V3 tokenizer.json (full vocabulary)")
    ap.add_argument("--full-config", required=True, help="DeepSeek-V3 tokenizer_config.json")
    ap.add_argument("--merges", type=int, default=3836, help="merges kept (vocabulary = 260 + merges)")
    ap.add_argument("--out", required=True, help="output directory")
    a = ap.parse_args()
    with open(a.full, encoding="utf-8") as f:
        full = json.load(f)
    with open(a.full_config, encoding="utf-8") as f:
        config = json.load(f)
    tok = cut(full, a.merges)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    # Keep the chat template and token settings; bos/eos keep their strings.
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    print(f"tokenizer: {len(tok['model']['vocab']) + len(SPECIALS)} tokens, {len(tok['model']['merges'])} merges -> {a.out}")


if __name__ == "__main__":
    main()
