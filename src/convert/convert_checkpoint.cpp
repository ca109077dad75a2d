#include "convert/convert_checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "convert/deepseek4_gguf_layout.h"
#include "convert/hf_tokenizer.h"
#include "convert/row_writer.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "gguf/gguf_set_writer.h"
#include "core/output_guard.h"
#include "quant/quantize.h"

namespace moe {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The block id: the first all-digit part of the name, as the converter takes it.
std::optional<int64_t> block_id(const std::string& name) {
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    if (end > start && std::all_of(name.begin() + start, name.begin() + end, [](char c) { return c >= '0' && c <= '9'; })) {
      int64_t v = 0;
      const auto [p, ec] = std::from_chars(name.data() + start, name.data() + end, v);
      return ec == std::errc() ? std::optional<int64_t>(v) : std::nullopt;  // absurdly long: no block
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::vector<int64_t> reversed(std::vector<int64_t> v) {
  std::reverse(v.begin(), v.end());
  return v;
}

// The ggml shape llama.cpp's deepseek2 loader expects for a GGUF tensor
// name (src/models/deepseek2.cpp), or nullopt for names it does not check here.
std::optional<std::vector<int64_t>> expected_shape(const std::string& name, const HfConfig& c) {
  const int64_t n_embd = c.hidden_size, n_head = c.num_attention_heads;
  const int64_t k_mla = c.qk_nope_head_dim + c.qk_rope_head_dim;
  const int64_t n_exp = c.n_routed_experts.value_or(0);
  const int64_t shexp = c.moe_intermediate_size * c.n_shared_experts;
  if (name == "token_embd.weight" || name == "output.weight") return std::vector<int64_t>{n_embd, c.vocab_size};
  if (name == "output_norm.weight") return std::vector<int64_t>{n_embd};
  const size_t dot = name.find('.', 4);
  if (name.compare(0, 4, "blk.") != 0 || dot == std::string::npos) return std::nullopt;
  const std::string t = name.substr(dot + 1);
  static const std::map<std::string, int> kinds = {
      {"attn_norm.weight", 0},      {"ffn_norm.weight", 0},       {"nextn.enorm.weight", 0},
      {"nextn.hnorm.weight", 0},    {"nextn.shared_head_norm.weight", 0}};
  if (kinds.count(t)) return std::vector<int64_t>{n_embd};
  const int64_t q_lora = c.q_lora_rank.value_or(0);
  if (t == "attn_q_a.weight") return std::vector<int64_t>{n_embd, q_lora};
  if (t == "attn_q_a_norm.weight") return std::vector<int64_t>{q_lora};
  if (t == "attn_q_b.weight") return std::vector<int64_t>{q_lora, n_head * k_mla};
  if (t == "attn_q.weight") return std::vector<int64_t>{n_embd, n_head * k_mla};
  if (t == "attn_kv_a_mqa.weight") return std::vector<int64_t>{n_embd, c.kv_lora_rank + c.qk_rope_head_dim};
  if (t == "attn_kv_a_norm.weight") return std::vector<int64_t>{c.kv_lora_rank};
  if (t == "attn_k_b.weight") return std::vector<int64_t>{c.qk_nope_head_dim, c.kv_lora_rank, n_head};
  if (t == "attn_v_b.weight") return std::vector<int64_t>{c.kv_lora_rank, c.v_head_dim, n_head};
  if (t == "attn_output.weight") return std::vector<int64_t>{n_head * c.v_head_dim, n_embd};
  if (t == "ffn_gate.weight" || t == "ffn_up.weight") return std::vector<int64_t>{n_embd, c.intermediate_size};
  if (t == "ffn_down.weight") return std::vector<int64_t>{c.intermediate_size, n_embd};
  if (t == "ffn_gate_inp.weight") return std::vector<int64_t>{n_embd, n_exp};
  if (t == "exp_probs_b.bias") return std::vector<int64_t>{n_exp};
  if (t == "ffn_gate_exps.weight" || t == "ffn_up_exps.weight")
    return std::vector<int64_t>{n_embd, c.moe_intermediate_size, n_exp};
  if (t == "ffn_down_exps.weight") return std::vector<int64_t>{c.moe_intermediate_size, n_embd, n_exp};
  if (t == "ffn_gate_shexp.weight" || t == "ffn_up_shexp.weight") return std::vector<int64_t>{n_embd, shexp};
  if (t == "ffn_down_shexp.weight") return std::vector<int64_t>{shexp, n_embd};
  if (t == "nextn.eh_proj.weight") return std::vector<int64_t>{2 * n_embd, n_embd};
  if (t == "nextn.embed_tokens.weight" || t == "nextn.shared_head_head.weight")
    return std::vector<int64_t>{n_embd, c.vocab_size};
  return std::nullopt;
}

void check_shape(const PlannedTensor& p, const SafetensorInfo& src, const std::vector<int64_t>& got, const HfConfig& c) {
  const auto want = expected_shape(p.name, c);
  if (want && *want != got)
    throw_error("%s: tensor '%s' (-> %s) has shape %s, expected %s from %s", src.file.c_str(), src.name.c_str(),
                p.name.c_str(), shape_str(reversed(got)).c_str(), shape_str(reversed(*want)).c_str(), c.path.c_str());
}

// Hugging Face tensors every layer must have; a missing one is reported by
// name before any output is written.
std::vector<std::string> required_tensors(const HfConfig& c, const ConvertOptions& o) {
  std::vector<std::string> r = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!c.tie_word_embeddings) r.push_back("lm_head.weight");
  const int64_t n_layers = c.num_hidden_layers + (o.keep_mtp ? c.num_nextn_predict_layers : 0);
  for (int64_t il = 0; il < n_layers; ++il) {
    const std::string p = "model.layers." + std::to_string(il) + ".";
    for (const char* s : {"input_layernorm.weight", "self_attn.kv_a_proj_with_mqa.weight", "self_attn.kv_a_layernorm.weight",
                          "self_attn.kv_b_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight"})
      r.push_back(p + s);
    if (c.q_lora_rank) {
      for (const char* s : {"self_attn.q_a_proj.weight", "self_attn.q_a_layernorm.weight", "self_attn.q_b_proj.weight"})
        r.push_back(p + s);
    } else {
      r.push_back(p + "self_attn.q_proj.weight");
    }
    if (il < c.first_k_dense_replace || !c.n_routed_experts) {
      for (const char* s : {"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) r.push_back(p + s);
    } else {
      r.push_back(p + "mlp.gate.weight");
      for (int64_t e = 0; e < *c.n_routed_experts; ++e)
        for (const char* w : {"gate_proj", "up_proj", "down_proj"})
          r.push_back(p + "mlp.experts." + std::to_string(e) + "." + w + ".weight");
      if (c.n_shared_experts > 0)
        for (const char* s : {"mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
                              "mlp.shared_experts.down_proj.weight"})
          r.push_back(p + s);
    }
    if (il >= c.num_hidden_layers)
      for (const char* s : {"eh_proj.weight", "enorm.weight", "hnorm.weight"}) r.push_back(p + s);
  }
  return r;
}

// The converter's input order: shards sorted by file name, tensors sorted by
// name within each shard (gguf-py's SafetensorsLocal sorts them).
std::vector<const SafetensorInfo*> converter_order(const SafetensorsCheckpoint& ckpt) {
  std::vector<const SafetensorsFile*> shards;
  for (const auto& s : ckpt.shards()) shards.push_back(&s);
  auto base = [](const SafetensorsFile* f) { return std::filesystem::path(f->path()).filename().string(); };
  std::sort(shards.begin(), shards.end(), [&](auto* a, auto* b) { return base(a) < base(b); });
  std::vector<const SafetensorInfo*> out;
  for (const SafetensorsFile* s : shards) {
    std::vector<const SafetensorInfo*> ts;
    for (const auto& t : s->tensors()) ts.push_back(&t);
    std::sort(ts.begin(), ts.end(), [](auto* a, auto* b) { return a->name < b->name; });
    out.insert(out.end(), ts.begin(), ts.end());
  }
  return out;
}

}  // namespace

std::vector<PlannedTensor> plan_deepseek2_tensors(const SafetensorsCheckpoint& ckpt, const HfConfig& c,
                                                  const ConvertOptions& o) {
  for (const std::string& name : required_tensors(c, o))
    if (!ckpt.find(name))
      throw_error("checkpoint %s: tensor '%s' is missing (required by %s)", ckpt.dir().c_str(), name.c_str(),
                  c.path.c_str());

  const int64_t n_exp = c.n_routed_experts.value_or(0);
  std::vector<PlannedTensor> plan;
  std::map<int64_t, std::set<std::string>> experts_seen;  // per layer, HF names
  auto add = [&](PlannedTensor p, const SafetensorInfo& src, size_t n_dims) {
    if (p.ne.empty() || std::any_of(p.ne.begin(), p.ne.end(), [](int64_t d) { return d <= 0; }))
      throw_error("%s: tensor '%s' has shape %s: a weight needs at least one dimension, none of them empty",
                  src.file.c_str(), src.name.c_str(), src.shape_string().c_str());
    check_shape(p, src, p.ne, c);
    p.type = deepseek2_tensor_type(p.name, n_dims, p.ne[0], o.outtype);
    plan.push_back(std::move(p));
  };

  for (const SafetensorInfo* t : converter_order(ckpt)) {
    const std::string& name = t->name;
    // FP8 block scales are folded into their weights; these the converter drops.
    if (ends_with(name, "_scale_inv") && ckpt.find(name.substr(0, name.size() - 10))) continue;
    if (ends_with(name, ".rotary_emb.inv_freq") || ends_with(name, ".attention.masked_bias") ||
        ends_with(name, ".attention.bias"))
      continue;
    if (c.tie_word_embeddings && (name == "lm_head.weight" || name == "model.lm_head.weight")) continue;
    const std::optional<int64_t> bid = name.compare(0, 13, "model.layers.") == 0 ? block_id(name) : std::nullopt;
    if (bid && *bid >= c.num_hidden_layers && (!o.keep_mtp || *bid >= c.num_hidden_layers + c.num_nextn_predict_layers))
      continue;  // an MTP layer, dropped (llama.cpp's DeepseekV2Model always drops them)

    if (name.find("mlp.experts.") != std::string::npos) {
      if (!bid || n_exp == 0) throw_error("%s: tensor '%s': experts, but config has no n_routed_experts", t->file.c_str(), name.c_str());
      auto& seen = experts_seen[*bid];
      seen.insert(name);
      if (static_cast<int64_t>(seen.size()) < 3 * n_exp) continue;
      // All experts of this layer are in: emit the merged tensors (down, gate, up, as the converter).
      const std::string p = "model.layers." + std::to_string(*bid) + ".mlp.experts.";
      for (const char* w : {"down_proj", "gate_proj", "up_proj"}) {
        PlannedTensor pt;
        pt.recipe = TensorRecipe::Experts;
        pt.name = *deepseek2_tensor_name(p + w + ".weight", c.num_hidden_layers);
        const SafetensorInfo* first = nullptr;
        for (int64_t e = 0; e < n_exp; ++e) {
          const std::string en = p + std::to_string(e) + "." + w + ".weight";
          const SafetensorInfo* s = ckpt.find(en);
          if (!s || !seen.count(en))
            throw_error("checkpoint %s: expert tensor '%s' is missing", ckpt.dir().c_str(), en.c_str());
          if (s->shape.size() != 2) throw_error("%s: tensor '%s' should be 2-D, found %s", s->file.c_str(), en.c_str(), s->shape_string().c_str());
          if (first && s->shape != first->shape)
            throw_error("%s: tensor '%s' has shape %s, unlike expert 0's %s", s->file.c_str(), en.c_str(),
                        s->shape_string().c_str(), first->shape_string().c_str());
          if (!first) first = s;
          pt.sources.push_back(en);
        }
        pt.ne = {first->shape[1], first->shape[0], n_exp};
        add(std::move(pt), *first, 3);
      }
      seen.clear();
      seen.insert("");  // marks the layer done: a stray extra expert tensor then errors below
      continue;
    }

    if (ends_with(name, "self_attn.kv_b_proj.weight")) {
      const int64_t n_head_kv = c.num_key_value_heads;
      const int64_t per_head = c.qk_nope_head_dim + c.v_head_dim;
      if (t->shape.size() != 2 || t->shape[0] != n_head_kv * per_head || t->shape[1] != c.kv_lora_rank)
        throw_error("%s: tensor '%s' has shape %s, expected [%lld, %lld] (num_key_value_heads x (qk_nope_head_dim + "
                    "v_head_dim), kv_lora_rank)",
                    t->file.c_str(), name.c_str(), t->shape_string().c_str(), static_cast<long long>(n_head_kv * per_head),
                    static_cast<long long>(c.kv_lora_rank));
      const std::string blk = "blk." + std::to_string(*bid) + ".";
      add({blk + "attn_k_b.weight", GgmlType::F32, {c.qk_nope_head_dim, c.kv_lora_rank, n_head_kv}, TensorRecipe::KB, {name}},
          *t, 3);
      add({blk + "attn_v_b.weight", GgmlType::F32, {c.kv_lora_rank, c.v_head_dim, n_head_kv}, TensorRecipe::VB, {name}}, *t,
          3);
      continue;
    }

    const auto gguf_name = deepseek2_tensor_name(name, c.num_hidden_layers);
    if (!gguf_name) throw_error("%s: cannot map tensor '%s' to a deepseek2 GGUF name", t->file.c_str(), name.c_str());
    add({*gguf_name, GgmlType::F32, reversed(t->shape), TensorRecipe::Copy, {name}}, *t, t->shape.size());
  }

  for (const auto& [bid, seen] : experts_seen) {
    if (!seen.empty() && !seen.count(""))
      throw_error("checkpoint %s: layer %lld has %zu of the %lld expert tensors (e.g. '%s'): incomplete experts",
                  ckpt.dir().c_str(), static_cast<long long>(bid), seen.size(), static_cast<long long>(3 * n_exp),
                  seen.begin()->c_str());
  }
  return plan;
}

namespace {

std::vector<float> load_f32(const SafetensorsCheckpoint& ckpt, const HfConfig& c, const std::string& name) {
  const SafetensorInfo& t = ckpt.tensor(name);
  return tensor_to_f32(t, ckpt.find_scale_inv(name), c.fp8_block_rows, c.fp8_block_cols);
}


}  // namespace

std::string checkpoint_model_name(const std::string& dir) {
  std::filesystem::path p(dir);
  if (p.filename().empty()) p = p.parent_path();  // "dir/"
  return std::filesystem::absolute(p).lexically_normal().filename().string();
}

ConvertSummary convert_hf_checkpoint(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& o) {
  if (is_deepseek4_config(hf_dir + "/config.json")) return convert_deepseek4_checkpoint(hf_dir, out_path, o);
  if (!o.mtp_companion.empty())
    throw_error("--mtp-companion: only DeepSeek-V4 keeps its MTP module in a file of its own; %s's stays in the model "
                "file (--no-mtp drops it)", hf_dir.c_str());
  const HfConfig config = load_hf_config(hf_dir);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(hf_dir);
  const std::vector<PlannedTensor> plan = plan_deepseek2_tensors(ckpt, config, o);

  Deepseek2LayoutOptions lo;
  lo.outtype = o.outtype;
  lo.keep_mtp = o.keep_mtp;
  lo.model_name = o.model_name.empty() ? checkpoint_model_name(hf_dir) : o.model_name;
  GgufKvList kv;
  deepseek2_model_metadata(config, lo, kv);
  hf_tokenizer_metadata(hf_dir, config, kv);

  GgufSetWriter w(out_path, o.split);
  for (const auto& [key, value] : kv.items()) w.set(key, value);
  uint64_t total = 0;
  for (const PlannedTensor& p : plan) total += w.tensor_nbytes(w.add_tensor(p.name, p.type, p.ne));
  w.begin();
  for (const std::string& out : w.paths()) refuse_output_in_checkpoint(out, hf_dir);

  ThreadPool pool(std::max(1, o.n_threads));
  ProgressBar bar("converting", total, o.progress);
  RowWriter rows(w, pool, bar);
  std::string kv_b_name;  // attn_v_b follows attn_k_b from the same kv_b_proj: keep it once
  std::vector<float> kv_b;
  for (const PlannedTensor& p : plan) {
    throw_if_interrupted();
    const int64_t ne0 = p.ne[0];
    switch (p.recipe) {
      case TensorRecipe::Copy: {
        const std::vector<float> x = load_f32(ckpt, config, p.sources[0]);
        rows.write(p, x.data(), static_cast<int64_t>(x.size()) / ne0);
        break;
      }
      case TensorRecipe::Experts:
        for (const std::string& src : p.sources) {
          throw_if_interrupted();
          const std::vector<float> x = load_f32(ckpt, config, src);
          rows.write(p, x.data(), static_cast<int64_t>(x.size()) / ne0);
        }
        break;
      case TensorRecipe::KB:
      case TensorRecipe::VB: {
        if (kv_b_name != p.sources[0]) {
          kv_b = load_f32(ckpt, config, p.sources[0]);
          kv_b_name = p.sources[0];
        }
        const int64_t nope = config.qk_nope_head_dim, vdim = config.v_head_dim, lora = config.kv_lora_rank;
        const int64_t n_head = p.ne[2], per_head = nope + vdim;
        std::vector<float> out(static_cast<size_t>(p.ne[0] * p.ne[1] * n_head));
        for (int64_t h = 0; h < n_head; ++h) {
          const float* head = kv_b.data() + h * per_head * lora;  // rows [h*per_head, (h+1)*per_head)
          float* dst = out.data() + h * p.ne[0] * p.ne[1];
          if (p.recipe == TensorRecipe::KB) {
            // k_b[h][c][j] = kv_b[h*per_head + j][c]: the nope rows, transposed.
            for (int64_t cc = 0; cc < lora; ++cc)
              for (int64_t j = 0; j < nope; ++j) dst[cc * nope + j] = head[j * lora + cc];
          } else {
            // v_b[h][i][c] = kv_b[h*per_head + nope + i][c]: the v rows as they are.
            std::memcpy(dst, head + nope * lora, sizeof(float) * static_cast<size_t>(vdim * lora));
          }
        }
        rows.write(p, out.data(), static_cast<int64_t>(out.size()) / ne0);
        if (p.recipe == TensorRecipe::VB) {
          kv_b = {};
          kv_b_name.clear();
        }
        break;
      }
    }
  }
  throw_if_interrupted();
  w.finish();
  bar.finish();
  return {plan.size(), total, w.paths()};
}

}  // namespace moe
