"""DeepSeek-V3's architecture at tiny scale, in plain PyTorch (works on torch 1.13).

Written from the DeepSeek-V3 paper and checked against the arithmetic of
DeepSeek's inference code (inference/model.py), because the GGUF that
moe-convert makes from our export must give the same logits in `moe-logits`:
- RMSNorm with eps from the config (1e-6), computed in float32;
- MLA: q and kv low-rank compression, decoupled RoPE on `qk_rope_head_dim`
  dims, rotary applied to *adjacent pairs* (model.py's view_as_complex; the HF
  checkpoint stores q/k rope dims in this order, and llama.cpp's converter does
  not permute them for deepseek2), softmax scale 1/sqrt(qk_nope + qk_rope);
- DeepSeekMoE: sigmoid gating, per-expert selection bias
  (`e_score_correction_bias`, used only to choose experts), group-limited
  routing (a group scored by the sum of its two best biased scores), top-k
  weights taken from the unbiased scores, normalised, times routed_scaling_factor;
  shared experts always on; the first `first_k_dense_replace` layers dense.
- One MTP module (layer index num_hidden_layers, as DeepSeek ships it):
  eh_proj([enorm(Emb(t_{i+1})); hnorm(h_i)]) -> one decoder block ->
  shared_head.norm -> shared output head, predicting t_{i+2}. Embedding and
  output head are shared with the main model (paper, section 2.2).

Module names follow the HF checkpoint, so `state_dict()` keys are already
DeepSeek-V3's tensor names.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rope_tables(n_pos, dim, theta, device=None):
    """cos/sin for positions 0..n_pos-1 over dim/2 frequency pairs (plain RoPE, no YaRN)."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def apply_rope(x, cos, sin):
    """Rotate adjacent pairs (x[2i], x[2i+1]) of the last dim; x: [B, T, H, D], cos/sin: [T, D/2]."""
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    y0 = x0 * c - x1 * s
    y1 = x0 * s + x1 * c
    return torch.stack((y0, y1), dim=-1).flatten(-2)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_heads = c["num_attention_heads"]
        self.nope = c["qk_nope_head_dim"]
        self.rope = c["qk_rope_head_dim"]
        self.v_dim = c["v_head_dim"]
        self.kv_rank = c["kv_lora_rank"]
        d = c["hidden_size"]
        qk = self.nope + self.rope
        self.q_a_proj = nn.Linear(d, c["q_lora_rank"], bias=False)
        self.q_a_layernorm = RMSNorm(c["q_lora_rank"], c["rms_norm_eps"])
        self.q_b_proj = nn.Linear(c["q_lora_rank"], self.n_heads * qk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, self.kv_rank + self.rope, bias=False)
        self.kv_a_layernorm = RMSNorm(self.kv_rank, c["rms_norm_eps"])
        self.kv_b_proj = nn.Linear(self.kv_rank, self.n_heads * (self.nope + self.v_dim), bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.v_dim, d, bias=False)
        self.scale = qk ** -0.5

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        H = self.n_heads
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(B, T, H, self.nope + self.rope)
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        kv = self.kv_a_proj_with_mqa(x)
        kv_c, k_pe = kv.split([self.kv_rank, self.rope], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin)  # one rope key shared by all heads
        kv = self.kv_b_proj(self.kv_a_layernorm(kv_c)).view(B, T, H, self.nope + self.v_dim)
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
        # [B, H, T, T]
        scores = (torch.einsum("bthd,bshd->bhts", q_nope, k_nope) +
                  torch.einsum("bthd,bsd->bhts", q_pe, k_pe.squeeze(2))) * self.scale
        scores = scores + mask
        p = torch.softmax(scores.float(), dim=-1).to(x.dtype)
        o = torch.einsum("bhts,bshd->bthd", p, v).reshape(B, T, H * self.v_dim)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, dim, inter):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inter, bias=False)
        self.up_proj = nn.Linear(dim, inter, bias=False)
        self.down_proj = nn.Linear(inter, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """Router: sigmoid scores, bias-corrected group-limited top-k selection."""

    def __init__(self, c):
        super().__init__()
        self.n_experts = c["n_routed_experts"]
        self.top_k = c["num_experts_per_tok"]
        self.n_group = c["n_group"]
        self.topk_group = c["topk_group"]
        self.scale = c["routed_scaling_factor"]
        self.norm_topk = c["norm_topk_prob"]
        self.weight = nn.Parameter(torch.empty(self.n_experts, c["hidden_size"]))
        # Used only for selection; trained by the load-balancing rule, not by gradients.
        self.register_buffer("e_score_correction_bias", torch.zeros(self.n_experts))
        self.use_bias = True

    def forward(self, x):
        """x: [N, D] -> (weights [N, k], indices [N, k], scores [N, E])."""
        scores = torch.sigmoid(F.linear(x.float(), self.weight.float()))
        choice = scores.detach()
        if self.use_bias:
            choice = choice + self.e_score_correction_bias
        if self.n_group > 1:
            g = choice.view(x.shape[0], self.n_group, -1)
            group_score = g.topk(2, dim=-1)[0].sum(-1)
            keep = group_score.topk(self.topk_group, dim=-1)[1]
            gmask = torch.ones_like(group_score, dtype=torch.bool).scatter_(1, keep, False)
            choice = g.masked_fill(gmask.unsqueeze(-1), float("-inf")).flatten(1)
        idx = choice.topk(self.top_k, dim=-1)[1]
        w = scores.gather(1, idx)
        if self.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        return w * self.scale, idx, scores


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.gate = Gate(c)
        self.experts = nn.ModuleList(MLP(d, c["moe_intermediate_size"]) for _ in range(c["n_routed_experts"]))
        self.shared_experts = MLP(d, c["moe_intermediate_size"] * c["n_shared_experts"])
        self.last_idx = None     # [N, k] expert choices of the last forward (for load statistics)
        self.last_scores = None  # [N, E] sigmoid scores (for the sequence-wise balance loss)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        w, idx, scores = self.gate(x)
        self.last_idx, self.last_scores = idx, scores
        y = torch.zeros_like(x)
        flat_idx = idx.flatten()
        order = torch.argsort(flat_idx)
        counts = torch.bincount(flat_idx, minlength=len(self.experts)).tolist()
        token_of = order // idx.shape[1]
        w_sorted = w.flatten()[order].to(x.dtype)
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            tok = token_of[start:start + n]
            out = self.experts[e](x[tok]) * w_sorted[start:start + n, None]
            y.index_add_(0, tok, out)
            start += n
        y = y + self.shared_experts(x)
        return y.view(shape)


class Block(nn.Module):
    def __init__(self, c, layer_id):
        super().__init__()
        self.self_attn = MLA(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        if layer_id < c["first_k_dense_replace"]:
            self.mlp = MLP(c["hidden_size"], c["intermediate_size"])
        else:
            self.mlp = MoE(c)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class SharedHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class MTPLayer(Block):
    """Multi-token prediction module: a decoder block fed [enorm(emb); hnorm(h)] projected."""

    def __init__(self, c, layer_id):
        super().__init__(c, layer_id)
        d = c["hidden_size"]
        self.enorm = RMSNorm(d, c["rms_norm_eps"])
        self.hnorm = RMSNorm(d, c["rms_norm_eps"])
        self.eh_proj = nn.Linear(2 * d, d, bias=False)
        self.shared_head = SharedHead(c)


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        L = c["num_hidden_layers"]
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        layers = [Block(c, i) for i in range(L)]
        layers += [MTPLayer(c, L + i) for i in range(c["num_nextn_predict_layers"])]
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class DeepseekV3(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.n_layers = c["num_hidden_layers"]
        self.init_weights()

    def init_weights(self, std=0.02):
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, std)
                # Residual-branch outputs smaller, as GPT-2 does, for a stable start.
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    p.data.mul_(1.0 / math.sqrt(2 * (self.n_layers + 1)))

    def moe_layers(self):
        """(layer index, MoE) of every routed layer, the MTP layer included."""
        return [(i, l.mlp) for i, l in enumerate(self.model.layers) if isinstance(l.mlp, MoE)]

    def forward(self, tokens, with_mtp=False):
        """tokens [B, T] -> logits [B, T, V] (and MTP logits [B, T-1, V] for t_{i+2})."""
        B, T = tokens.shape
        cos, sin = rope_tables(T, self.c["qk_rope_head_dim"], self.c["rope_theta"], tokens.device)
        mask = torch.full((T, T), float("-inf"), device=tokens.device).triu(1)
        h = self.model.embed_tokens(tokens)
        for layer in self.model.layers[:self.n_layers]:
            h = layer(h, cos, sin, mask)
        h = self.model.norm(h)
        logits = self.lm_head(h)
        if not with_mtp:
            return logits
        mtp = self.model.layers[self.n_layers]
        e = self.model.embed_tokens(tokens[:, 1:])
        x = mtp.eh_proj(torch.cat([mtp.enorm(e), mtp.hnorm(h[:, :-1])], dim=-1))
        x = mtp(x, cos[:T - 1], sin[:T - 1], mask[:T - 1, :T - 1])
        mtp_logits = self.lm_head(mtp.shared_head.norm(x))
        return logits, mtp_logits
