#!/usr/bin/env bash
# make-quantize-reference.sh - record what llama.cpp's llama-quantize makes of
# the tiny fixture models, as an independent reference for moe-quantize's
# tests (CI has no llama.cpp peer).
#
# Usage:
#   scripts/make-quantize-reference.sh [OUT.json]
#     (default OUT: tests/fixtures/llama-quantize-reference.json)
#
# Environment:
#   LLAMA_QUANTIZE   the peer's llama-quantize (default: the build made by
#                    scripts/build-llamacpp.sh in ~/.cache/moe.cpp)
#   MOE_FIXTURES_DIR the shared fixtures (default: ../shared/fixtures)
#
# For each input (tiny-dsv3, tiny-dsv2lite, tiny-dsv2 in F32: every file type
# moe-quantize supports, plus a few --pure / --tensor-type runs; an F16 and a
# Q4_K_M input and a BF16 one made from tiny-dsv3: a few runs; two synthetic
# inputs with old-layout attn_kv_b tensors over 16 layers: the k-quant types;
# the trained model in F32 with the fixtures' importance matrix: every IQ
# file type, Q2_K_S and some k-quants, with and without it)
# it records: the model's hyper-parameters and input tensors (name,
# shape, type), the output's general.file_type, and per output tensor (in
# file order) its type and the 64-bit FNV-1a hash of its data bytes; and the
# FNV-1a hash of the whole output file. Needs only python3's standard library.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/tests/fixtures/llama-quantize-reference.json}
LLAMA_QUANTIZE=${LLAMA_QUANTIZE:-$HOME/.cache/moe.cpp/llama.cpp-3.22.1/build-cpu/bin/llama-quantize}
FIXTURES=${MOE_FIXTURES_DIR:-$ROOT/../shared/fixtures}/models

[[ -x $LLAMA_QUANTIZE ]] || { echo "llama-quantize not found at $LLAMA_QUANTIZE (run scripts/build-llamacpp.sh)" >&2; exit 1; }
[[ -d $FIXTURES ]] || { echo "fixtures not found at $FIXTURES" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 - "$LLAMA_QUANTIZE" "$FIXTURES" "$WORK" "$OUT" "$ROOT" <<'PY'
import json, os, struct, subprocess, sys

llama_quantize, fixtures, work, out_path, root = sys.argv[1:6]

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M",
         "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]
# Extra runs: (options, type). Patterns in mixed case check llama-quantize
# lowercases them; the F16 run checks overrides are ignored for float types.
EXTRA = [
    (["--pure"], "Q4_K_M"),
    (["--pure"], "Q3_K_M"),
    (["--tensor-type", "ffn_down=q8_0", "--tensor-type", "attn_.*_b=Q5_K"], "Q4_K_M"),
    (["--tensor-type", "FFN_UP_EXPS=q2_k", "--tensor-type", "blk\\.1\\.=q6_K"], "Q3_K_M"),
    (["--tensor-type", "token_embd=q8_0"], "F16"),
]
ALL = [([], t) for t in TYPES] + EXTRA
# Inputs and their runs: the three F32 models with everything, then an F16
# input (converted, not requantized) and a quantized one (--allow-requantize).
INPUTS = [
    ("tiny-dsv3.f32.gguf", ALL),
    ("tiny-dsv2lite.f32.gguf", ALL),
    ("tiny-dsv2.f32.gguf", ALL),
    ("tiny-dsv2lite.F16.gguf", [([], "Q8_0"), ([], "Q4_K_M"), ([], "BF16")]),
    ("tiny-dsv3.Q4_K_M.gguf", [(["--allow-requantize"], "Q8_0"), (["--allow-requantize"], "Q4_0")]),
]

# ggml type id -> (name, block size, bytes per block)
GGML_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 10: ("q2_K", 256, 84),
    11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176),
    14: ("q6_K", 256, 210), 30: ("bf16", 1, 2),
    16: ("iq2_xxs", 256, 66), 17: ("iq2_xs", 256, 74), 18: ("iq3_xxs", 256, 98), 19: ("iq1_s", 256, 50),
    20: ("iq4_nl", 32, 18), 21: ("iq3_s", 256, 110), 22: ("iq2_s", 256, 82), 23: ("iq4_xs", 256, 136),
    29: ("iq1_m", 256, 56),
}

def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h

class Reader:
    def __init__(self, buf):
        self.b, self.p = buf, 0
    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0]
    def string(self):
        n = self.take("Q")
        s = self.b[self.p:self.p + n].decode("utf-8")
        self.p += n
        return s
    SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(self.SCALARS[t])

def read_gguf(path):
    buf = open(path, "rb").read()
    r = Reader(buf)
    assert r.take("I") == 0x46554747, path
    r.take("I")  # version
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    kv, raw_kv = {}, []
    for _ in range(n_kv):
        start = r.p
        k = r.string()
        kv[k] = r.value(r.take("I"))
        raw_kv.append((k, buf[start:r.p]))
    read_gguf.raw_kv = raw_kv  # for make_synthetic
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        shape = [r.take("Q") for _ in range(r.take("I"))]
        infos.append((name, shape, r.take("I"), r.take("Q")))
    align = kv.get("general.alignment", 32)
    data = (r.p + align - 1) // align * align
    tensors = []
    for name, shape, t, off in infos:
        tname, bs, ts = GGML_TYPES[t]
        n = 1
        for d in shape:
            n *= d
        nbytes = n // bs * ts
        tensors.append({"name": name, "shape": shape, "type": tname,
                        "data": buf[data + off:data + off + nbytes]})
    return kv, tensors, buf

def first(v):
    return v[0] if isinstance(v, list) else v

def make_synthetic(src, dst, u32_overrides, tensor_shapes, seed):
    """A GGUF with src's metadata (some u32 keys replaced) and other f32
    tensors: llama-quantize reads only hyper-parameters and tensor names, so
    this exercises rules the fixture models never reach (attn_kv_b counting,
    n_gqa, tied embeddings)."""
    import random
    read_gguf(src)
    kvs = []
    for k, raw in read_gguf.raw_kv:
        if k in u32_overrides:
            kb = k.encode()
            raw = struct.pack("<Q", len(kb)) + kb + struct.pack("<II", 4, u32_overrides[k])
        kvs.append(raw)
    rng = random.Random(seed)
    head = struct.pack("<IIQQ", 0x46554747, 3, len(tensor_shapes), len(kvs)) + b"".join(kvs)
    blobs, off = [], 0
    for name, shape in tensor_shapes:
        nb = name.encode()
        head += struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", d) for d in shape) + struct.pack("<IQ", 0, off)
        n = 1
        for d in shape:
            n *= d
        blob = struct.pack("<%df" % n, *(rng.gauss(0.0, 0.05) for _ in range(n)))
        blob += b"\0" * ((32 - len(blob) % 32) % 32)
        blobs.append(blob)
        off += len(blob)
    head += b"\0" * ((32 - len(head) % 32) % 32)
    with open(dst, "wb") as f:
        f.write(head + b"".join(blobs))

# Old-layout DeepSeek tensors (one attn_kv_b per layer, no split k_b/v_b)
# over 16 layers, so that the attn_v counters and use_more_bits matter.
def kvb_tensors(with_output):
    t = [("token_embd.weight", [256, 64])]
    if with_output:
        t.append(("output.weight", [256, 64]))
    for l in range(16):
        t += [("blk.%d.attn_kv_b.weight" % l, [256, 32]), ("blk.%d.attn_q.weight" % l, [256, 32]),
              ("blk.%d.attn_output.weight" % l, [256, 32]), ("blk.%d.ffn_down_exps.weight" % l, [256, 32, 4]),
              ("blk.%d.ffn_up_exps.weight" % l, [256, 32, 4]), ("blk.%d.ffn_norm.weight" % l, [256])]
    return t

K_TYPES = [([], t) for t in ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0"]]
make_synthetic(os.path.join(fixtures, "tiny-dsv2.f32.gguf"), os.path.join(work, "synthetic-kvb.f32.gguf"),
               {"deepseek2.block_count": 16, "deepseek2.leading_dense_block_count": 0}, kvb_tensors(True), 1)
make_synthetic(os.path.join(fixtures, "tiny-dsv2.f32.gguf"), os.path.join(work, "synthetic-kvb-tied.f32.gguf"),
               {"deepseek2.block_count": 16, "deepseek2.leading_dense_block_count": 0,
                "deepseek2.attention.head_count_kv": 4}, kvb_tensors(False), 2)
INPUTS += [("synthetic-kvb.f32.gguf", K_TYPES), ("synthetic-kvb-tied.f32.gguf", K_TYPES)]

# A BF16 input, made by llama-quantize from the F32 file (the tests make it
# with moe-quantize, whose BF16 output is checked by the F32 runs above).
subprocess.run([llama_quantize, os.path.join(fixtures, "tiny-dsv3.f32.gguf"), os.path.join(work, "derived-tiny-dsv3.BF16.gguf"),
                "BF16", "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
INPUTS += [("derived-tiny-dsv3.BF16.gguf", [([], "Q4_K_M"), ([], "Q8_0"), ([], "F16")])]

# The trained model with the importance matrix llama-imatrix made for it
# (fixtures iq/): every file type that takes one. llama-quantize runs in the
# work directory, so the file records the bare name "kjv.imatrix.gguf". The
# very-low-bit types need importance data for every tensor they touch, and
# blk.4 (the MTP layer) has none: it keeps q4_K, as in the fixtures' commands.
subprocess.run([llama_quantize, "--allow-requantize", os.path.join(root, "models", "tiny-kjv-dsv3.Q4_K_M.gguf"),
                os.path.join(work, "derived-kjv.f32.gguf"), "F32"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
import shutil
shutil.copy(os.path.join(fixtures, "..", "iq", "kjv.imatrix.gguf"), os.path.join(work, "kjv.imatrix.gguf"))
IM = ["--imatrix", "kjv.imatrix.gguf"]
LOW = IM + ["--tensor-type", "blk\\.4\\.=q4_K"]
KJV_RUNS = [(LOW, t) for t in ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S"]]
KJV_RUNS += [(IM, t) for t in ["IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS", "Q4_0", "Q5_0", "Q3_K_M", "Q4_K_M", "Q6_K"]]
KJV_RUNS += [([], t) for t in ["IQ4_XS", "IQ4_NL", "IQ3_S", "IQ3_M"]]  # the types that do without one
KJV_RUNS += [(IM + ["--include-weights", "ffn_"], "IQ4_XS"), (IM + ["--exclude-weights", "exps"], "IQ3_S")]
INPUTS += [("derived-kjv.f32.gguf", KJV_RUNS)]

def input_path(name):
    return os.path.join(work if name.startswith(("synthetic-", "derived-")) else fixtures, name)

result = {
    "generator": "scripts/make-quantize-reference.sh: llama.cpp's llama-quantize (node-llama-cpp 3.22.1 CPU build); the derived-kjv runs with the fixtures' iq/kjv.imatrix.gguf",
    "hash": "FNV-1a 64-bit of the tensor's data bytes (no padding); file_fnv1a64 of the whole output file",
    "models": {},
}
for inp, runs in INPUTS:
    kv, tensors, _ = read_gguf(input_path(inp))
    arch = kv["general.architecture"]
    n_head = first(kv.get(arch + ".attention.head_count", 0))
    model = {
        "arch": arch,
        "n_layer": first(kv[arch + ".block_count"]),
        "n_expert": first(kv.get(arch + ".expert_count", 0)),
        "n_head": n_head,
        "n_head_kv": first(kv.get(arch + ".attention.head_count_kv", n_head)),
    }
    entry = {"model": model,
             "tensors": [[t["name"], t["shape"], t["type"]] for t in tensors],
             "runs": []}
    for opts, ftype in runs:
        out = os.path.join(work, "out.gguf")
        cmd = [llama_quantize] + opts + [input_path(inp), out, ftype, "2"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        okv, otensors, obuf = read_gguf(out)
        order = [t["name"] for t in otensors]
        # The output order is the same for every run: stored once per model.
        assert entry.setdefault("order", order) == order, (inp, opts, ftype)
        entry["runs"].append({
            "args": opts + [ftype],
            "file_type": okv["general.file_type"],
            "file_size": len(obuf),
            "file_fnv1a64": fnv1a64(obuf),
            "types": [t["type"] for t in otensors],
            "fnv1a64": [fnv1a64(t["data"]) for t in otensors],
        })
        if inp.startswith("synthetic-"):
            del entry["runs"][-1]["fnv1a64"]  # random data the tests cannot remake: types only
        print(inp, " ".join(opts + [ftype]), "done", file=sys.stderr)
    result["models"][inp] = entry

with open(out_path, "w") as f:
    # One run per line keeps the file diffable without making it huge.
    f.write("{\n")
    f.write('  "generator": %s,\n' % json.dumps(result["generator"]))
    f.write('  "hash": %s,\n' % json.dumps(result["hash"]))
    f.write('  "models": {\n')
    for mi, (name, e) in enumerate(result["models"].items()):
        f.write('    %s: {\n' % json.dumps(name))
        f.write('      "model": %s,\n' % json.dumps(e["model"]))
        f.write('      "tensors": %s,\n' % json.dumps(e["tensors"], separators=(",", ":")))
        f.write('      "order": %s,\n' % json.dumps(e["order"], separators=(",", ":")))
        f.write('      "runs": [\n')
        for ri, run in enumerate(e["runs"]):
            f.write('        %s%s\n' % (json.dumps(run, separators=(",", ":")), "," if ri + 1 < len(e["runs"]) else ""))
        f.write('      ]\n    }%s\n' % ("," if mi + 1 < len(result["models"]) else ""))
    f.write("  }\n}\n")
print("wrote", out_path, file=sys.stderr)
PY
