"""The model as a Hugging Face DeepSeek-V3 checkpoint: config.json, safetensors, tokenizer.

There is no `safetensors` Python package on Debian, so the format is written and
read here: 8-byte little-endian header length, a JSON header mapping each
tensor name to dtype / shape / data_offsets, then the raw little-endian data.
"""
import json
import os
import shutil
import struct

import numpy as np
import torch

from model import DeepseekV3

WEIGHTS = "model.safetensors"


def make_config(vocab_size, ctx):
    """DeepSeek-V3's config.json fields (the ones DeepSeek's code and the converters read)."""
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": vocab_size,
        "hidden_size": 256,
        "intermediate_size": 768,
        "moe_intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_shared_experts": 1,
        "n_routed_experts": 16,
        "num_experts_per_tok": 2,
        "routed_scaling_factor": 2.5,
        "kv_lora_rank": 64,
        "q_lora_rank": 128,
        "qk_rope_head_dim": 16,
        "qk_nope_head_dim": 32,
        "v_head_dim": 32,
        "topk_method": "noaux_tc",
        "n_group": 4,
        "topk_group": 2,
        "moe_layer_freq": 1,
        "first_k_dense_replace": 1,
        "norm_topk_prob": True,
        "scoring_func": "sigmoid",
        "aux_loss_alpha": 0.0001,
        "seq_aux": True,
        "hidden_act": "silu",
        "max_position_embeddings": ctx,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-06,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_cache": True,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "float32",
        "num_nextn_predict_layers": 1,
        "ep_size": 1,
    }


def write_safetensors(path, tensors, metadata=None):
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = tensors[name].detach().cpu().contiguous().float().numpy().astype("<f4", copy=False)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name}: expected dtype F32, found {info['dtype']}")
        lo, hi = info["data_offsets"]
        a = np.frombuffer(data[lo:hi], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


def hf_tensors(model):
    """state_dict under DeepSeek-V3's names, plus the MTP layer's copies of embedding and head."""
    sd = {k: v for k, v in model.state_dict().items()}
    n = model.c["num_hidden_layers"]
    for i in range(model.c["num_nextn_predict_layers"]):
        sd[f"model.layers.{n + i}.embed_tokens.weight"] = sd["model.embed_tokens.weight"]
        sd[f"model.layers.{n + i}.shared_head.head.weight"] = sd["lm_head.weight"]
    return sd


def export(model, out_dir, tokenizer_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.c, f, indent=1)
    write_safetensors(os.path.join(out_dir, WEIGHTS), hf_tensors(model), {"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))


def load(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        c = json.load(f)
    model = DeepseekV3(c)
    sd = read_safetensors(os.path.join(hf_dir, WEIGHTS))
    n = c["num_hidden_layers"]
    for i in range(c["num_nextn_predict_layers"]):
        sd.pop(f"model.layers.{n + i}.embed_tokens.weight", None)
        sd.pop(f"model.layers.{n + i}.shared_head.head.weight", None)
    model.load_state_dict(sd, strict=True)
    return model
