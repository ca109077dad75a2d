#!/usr/bin/env python3
"""Check that a GGUF made by moe-convert computes the same logits as the PyTorch model.

Runs `moe-logits` (float32 throughout) on the GGUF and this directory's model on
the exported HF checkpoint over the same tokens; prints the largest absolute
logit difference and the top-1 agreement. Exit status 1 if the difference
exceeds --tol.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True, help="exported HF checkpoint directory")
    ap.add_argument("--gguf", required=True, help="F32 GGUF made from it by moe-convert")
    ap.add_argument("--moe-logits", required=True, help="path of the moe-logits executable")
    ap.add_argument("--tokens", default="0,1052,2290,3,77,4000,15,260,261,950,3001,42,42,42,512,2047,4095,8,9,10,"
                    "1999,300,301,302,303,304,305,306,307,308,309,310")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ids = [int(t) for t in a.tokens.split(",")]
    model = hf_io.load(a.hf).eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0].numpy()
    with tempfile.TemporaryDirectory() as d:
        prefix = os.path.join(d, "logits")
        subprocess.run([a.moe_logits, "-m", a.gguf, "--tokens", a.tokens, "--out", prefix, "-t", "2"],
                       check=True, stdout=subprocess.DEVNULL)
        got = np.fromfile(prefix + ".prefill.f32", dtype="<f4").reshape(len(ids), -1)
    diff = np.abs(got - ref)
    top1 = float((got.argmax(-1) == ref.argmax(-1)).mean())
    print(f"{len(ids)} tokens: max |logit diff| {diff.max():.3e} (logit std {ref.std():.3f}), "
          f"per position max {np.array2string(diff.max(-1), precision=1)}, top-1 agreement {top1:.3f}")
    sys.exit(0 if diff.max() <= a.tol else 1)


if __name__ == "__main__":
    main()
