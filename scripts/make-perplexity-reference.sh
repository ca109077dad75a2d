#!/usr/bin/env bash
# make-perplexity-reference.sh - record what llama.cpp's llama-perplexity
# says about the tiny fixture models on tests/fixtures/perplexity-text.txt,
# as the independent reference for moe-perplexity's tests (CI has no
# llama.cpp peer).
#
# Usage:
#   scripts/make-perplexity-reference.sh [OUT.json]
#     (default OUT: tests/fixtures/llama-perplexity-reference.json)
#
# Environment:
#   LLAMA_PERPLEXITY the peer's llama-perplexity (default: the build made by
#                    scripts/build-llamacpp.sh in ~/.cache/moe.cpp)
#   MOE_FIXTURES_DIR the shared fixtures (default: ../shared/fixtures)
#   MOE_PERPLEXITY   optional: our moe-perplexity; when set, the script also
#                    checks that each tool reads the other's
#                    --kl-divergence-base file (prints the results, records
#                    nothing of ours)
#
# Records, for -c 128 with the KV cache in f32 and flash attention off (so
# llama.cpp computes in float32 as moe.cpp does):
#   perplexity: per model, the running estimate after each chunk and the
#               final "PPL = X +/- Y";
#   kl_divergence: base tiny-dsv3.f32, Q = tiny-dsv3.Q4_K_M: the final
#               statistics (mean PPLs, ln ratio, KLD, RMS Δp, same top p);
#   too_short:  llama.cpp's error lines for a text under two chunks.
# Needs only python3's standard library.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/tests/fixtures/llama-perplexity-reference.json}
LLAMA_PERPLEXITY=${LLAMA_PERPLEXITY:-$HOME/.cache/moe.cpp/llama.cpp-3.22.1/build-cpu/bin/llama-perplexity}
FIXTURES=${MOE_FIXTURES_DIR:-$ROOT/../shared/fixtures}/models
TEXT=$ROOT/tests/fixtures/perplexity-text.txt

[[ -x $LLAMA_PERPLEXITY ]] || { echo "llama-perplexity not found at $LLAMA_PERPLEXITY (run scripts/build-llamacpp.sh)" >&2; exit 1; }
[[ -d $FIXTURES ]] || { echo "fixtures not found at $FIXTURES" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 - "$LLAMA_PERPLEXITY" "$FIXTURES" "$TEXT" "$WORK" "$OUT" "${MOE_PERPLEXITY:-}" <<'PY'
import json, os, re, subprocess, sys

llama, fixtures, text, work, out_path, moe = sys.argv[1:7]
N_CTX = 128
COMMON = ["-c", str(N_CTX), "-ctk", "f32", "-ctv", "f32", "-fa", "off", "-t", "2"]
MODELS = ["tiny-dsv3.f32.gguf", "tiny-dsv3.Q4_K_M.gguf", "tiny-dsv2lite.f32.gguf", "tiny-dsv2lite.Q4_K_M.gguf",
          "tiny-dsv4.f32.gguf", "tiny-dsv4.Q8_0.gguf", "tiny-dsv4.MXFP4_MOE.gguf"]

def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode, p.stdout, p.stderr

# llama.cpp's asynchronous logger now and then loses the last lines when the
# process ends: run again until the lines wanted are all there.
def run_until(cmd, complete, tries=20):
    for _ in range(tries):
        rc, out, err = run(cmd)
        if rc != 0 or complete(out + err):
            break
    return rc, out, err

def perplexity(model, extra=()):
    rc, out, err = run_until([llama, "-m", os.path.join(fixtures, model), "-f", text] + COMMON + list(extra),
                             lambda s: "Final estimate" in s)
    both = out + err
    chunks = [float(v) for v in re.findall(r"\[\d+\]([0-9.eE+-]+|nan|inf),", both)]
    m = re.search(r"Final estimate: PPL = ([0-9.eE+-]+) \+/- ([0-9.eE+-]+)", both)
    if rc != 0 or not m:
        sys.exit("llama-perplexity failed on %s:\n%s" % (model, both[-3000:]))
    return {"chunks": chunks, "ppl": float(m.group(1)), "ppl_uncertainty": float(m.group(2))}

KLD_STATS = {
    "ppl_q": r"Mean PPL\(Q\)\s+: +(\S+) ± +(\S+)",
    "ppl_base": r"Mean PPL\(base\)\s+: +(\S+) ± +(\S+)",
    "ln_ppl_ratio": r"Mean ln\(PPL\(Q\)/PPL\(base\)\)\s+: +(\S+) ± +(\S+)",
    "ppl_ratio": r"Mean PPL\(Q\)/PPL\(base\)\s+: +(\S+) ± +(\S+)",
    "ppl_diff": r"Mean PPL\(Q\)-PPL\(base\)\s+: +(\S+) ± +(\S+)",
    "kld": r"Mean    KLD: +(\S+) ± +(\S+)",
    "rms_p_diff_percent": r"RMS Δp    : +(\S+) ± +(\S+) %",
    "same_top_p_percent": r"Same top p: +(\S+) ± +(\S+) %",
}

def kl_stats(tool, model, base_file, common):
    rc, out, err = run_until([tool, "-m", os.path.join(fixtures, model), "--kl-divergence-base", base_file,
                              "--kl-divergence"] + common, lambda s: "Same top p:" in s)
    both = out + err
    stats = {}
    for key, rx in KLD_STATS.items():
        m = re.search(rx, both)
        if rc != 0 or not m:
            sys.exit("%s --kl-divergence failed (no %s):\n%s" % (tool, key, both[-3000:]))
        stats[key] = [float(m.group(1)), float(m.group(2))]
    return stats

result = {
    "generator": "scripts/make-perplexity-reference.sh: llama.cpp's llama-perplexity (node-llama-cpp 3.22.1 CPU build)",
    "text": "tests/fixtures/perplexity-text.txt",
    "args": COMMON,
    "n_ctx": N_CTX,
    "perplexity": {},
}
for model in MODELS:
    result["perplexity"][model] = perplexity(model)
    print(model, result["perplexity"][model]["ppl"], file=sys.stderr)

base_file = os.path.join(work, "llama-base.kld")
perplexity("tiny-dsv3.f32.gguf", ["--kl-divergence-base", base_file])
# The layout of llama.cpp's base file: header, the tokens' hash, and per
# chunk the first scored row's scale, min log-prob and most likely token.
def base_file_summary(path):
    import struct
    b = open(path, "rb").read()
    assert b[:8] == b"_logits_", path
    n_ctx, n_vocab, n_chunk = struct.unpack_from("<iii", b, 8)
    tok_bytes = b[20:20 + 4 * n_ctx * n_chunk]
    h = 0xcbf29ce484222325
    for x in tok_bytes:
        h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rows = n_ctx - 1 - n_ctx // 2
    first_rows = []
    for c in range(n_chunk):
        off = 20 + len(tok_bytes) + 2 * nv * rows * c
        scale, min_lp = struct.unpack_from("<ff", b, off)
        codes = struct.unpack_from("<%dH" % n_vocab, b, off + 8)
        first_rows.append({"scale": scale, "min_log_prob": min_lp, "argmax": codes.index(max(codes))})
    return {"size": len(b), "n_ctx": n_ctx, "n_vocab": n_vocab, "n_chunk": n_chunk,
            "tokens_fnv1a64": "%016x" % h, "first_row_of_chunk": first_rows}

result["kl_divergence"] = {
    "base_file": base_file_summary(base_file),
    "base": "tiny-dsv3.f32.gguf",
    "model": "tiny-dsv3.Q4_K_M.gguf",
    "stats": kl_stats(llama, "tiny-dsv3.Q4_K_M.gguf", base_file, COMMON),
}
print("kl_divergence", result["kl_divergence"]["stats"]["kld"], file=sys.stderr)

# A text of fewer than 2 * n_ctx tokens: llama.cpp refuses it (and exits 0).
short = os.path.join(work, "short.txt")
with open(short, "w") as f:
    f.write("A short text that tokenizes to far fewer than two chunks of context.\n")
# The logger loses the last lines of so short a run more often than not.
rx = r"(perplexity: (?:you need|the data file).*)"
rc, out, err = run_until([llama, "-m", os.path.join(fixtures, "tiny-dsv3.f32.gguf"), "-f", short] + COMMON,
                         lambda s: len(re.findall(rx, s)) == 2, tries=100)
lines = re.findall(rx, out + err)
if len(lines) != 2:
    sys.exit("no too-short message from llama-perplexity:\n" + (out + err)[-3000:])
result["too_short"] = {"model": "tiny-dsv3.f32.gguf", "text": open(short).read(), "messages": lines}

# Cross-check the file format both ways (ours is not recorded).
if moe:
    ours = os.path.join(work, "moe-base.kld")
    rc, out, err = run([moe, "-m", os.path.join(fixtures, "tiny-dsv3.f32.gguf"), "-f", text, "-c", str(N_CTX),
                        "--kl-divergence-base", ours])
    if rc != 0:
        sys.exit("moe-perplexity failed writing the base file:\n" + err)
    print("llama.cpp reading moe's base file:", kl_stats(llama, "tiny-dsv3.Q4_K_M.gguf", ours, COMMON), file=sys.stderr)
    print("moe reading llama.cpp's base file:", kl_stats(moe, "tiny-dsv3.Q4_K_M.gguf", base_file, []), file=sys.stderr)

with open(out_path, "w") as f:
    json.dump(result, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote", out_path, file=sys.stderr)
PY
