// moe-convert for DeepSeek-V4 checkpoints (DeepseekV4ForCausalLM) into
// llama.cpp's deepseek4 layout, as its converter (conversion/deepseek.py)
// writes them:
//   - the release's own tensor names (embed.weight, layers.N.attn.wq_a.weight,
//     layers.N.ffn.experts.E.w1.weight, hc_head_fn, ...) mapped to GGUF names;
//   - FP8 (F8_E4M3) weights with E8M0 `.scale` per 128x128 block: dequantized
//     (one multiply) and stored Q8_0; F32 tensors stay F32, BF16 matrices BF16;
//   - FP4 routed experts (I8/U8 holding two E2M1 codes per byte, low nibble
//     first, with an E8M0 `.scale` per 32 values) repacked bit for bit into
//     ggml's MXFP4 blocks (the file type MXFP4_MOE);
//   - hash layers' tid2eid tables as I32 (their unused gate.bias dropped);
//   - the MTP module (mtp.*) skipped, as llama.cpp does for the main file,
//     or written to a companion GGUF of its own (--mtp-companion, the layout
//     of ik_llama.cpp's converter with mtp_only: layer N = num_hidden_layers
//     from mtp.0.*, its e_proj and h_proj side by side as nextn.eh_proj,
//     its hc_head_* as output_hc_*, and the embedding and head);
//   - the vision parts skipped.
// Anything else the release would not hold (F16 tensors, experts in a float
// type) goes to --outtype. Memory holds one source tensor at a time.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "convert/convert_checkpoint.h"
#include "convert/deepseek4_gguf_layout.h"
#include "convert/hf_tokenizer.h"
#include "convert/row_writer.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/output_guard.h"

namespace moe {

namespace {

// GGUF name within "blk.N." -> the release's name within "layers.N.".
const std::map<std::string, std::string>& layer_sources() {
  static const std::map<std::string, std::string> m = {
      {"hc_attn_fn.weight", "hc_attn_fn"},
      {"hc_attn_base.weight", "hc_attn_base"},
      {"hc_attn_scale.weight", "hc_attn_scale"},
      {"hc_ffn_fn.weight", "hc_ffn_fn"},
      {"hc_ffn_base.weight", "hc_ffn_base"},
      {"hc_ffn_scale.weight", "hc_ffn_scale"},
      {"attn_sinks.weight", "attn.attn_sink"},
      {"attn_q_a.weight", "attn.wq_a.weight"},
      {"attn_q_b.weight", "attn.wq_b.weight"},
      {"attn_q_a_norm.weight", "attn.q_norm.weight"},
      {"attn_kv.weight", "attn.wkv.weight"},
      {"attn_kv_a_norm.weight", "attn.kv_norm.weight"},
      {"attn_output_a.weight", "attn.wo_a.weight"},
      {"attn_output_b.weight", "attn.wo_b.weight"},
      {"attn_compressor_ape.weight", "attn.compressor.ape"},
      {"attn_compressor_kv.weight", "attn.compressor.wkv.weight"},
      {"attn_compressor_gate.weight", "attn.compressor.wgate.weight"},
      {"attn_compressor_norm.weight", "attn.compressor.norm.weight"},
      {"indexer.attn_q_b.weight", "attn.indexer.wq_b.weight"},
      {"indexer.proj.weight", "attn.indexer.weights_proj.weight"},
      {"indexer_compressor_ape.weight", "attn.indexer.compressor.ape"},
      {"indexer_compressor_kv.weight", "attn.indexer.compressor.wkv.weight"},
      {"indexer_compressor_gate.weight", "attn.indexer.compressor.wgate.weight"},
      {"indexer_compressor_norm.weight", "attn.indexer.compressor.norm.weight"},
      {"attn_norm.weight", "attn_norm.weight"},
      {"ffn_norm.weight", "ffn_norm.weight"},
      {"ffn_gate_inp.weight", "ffn.gate.weight"},
      {"exp_probs_b.bias", "ffn.gate.bias"},
      {"exp_probs_b_vl.bias", "ffn.gate.bias_vl"},
      {"ffn_gate_tid2eid.weight", "ffn.gate.tid2eid"},
      {"ffn_gate_shexp.weight", "ffn.shared_experts.w1.weight"},
      {"ffn_down_shexp.weight", "ffn.shared_experts.w2.weight"},
      {"ffn_up_shexp.weight", "ffn.shared_experts.w3.weight"},
  };
  return m;
}

const std::map<std::string, std::string>& root_sources() {
  static const std::map<std::string, std::string> m = {
      {"token_embd.weight", "embed.weight"},     {"output_norm.weight", "norm.weight"},
      {"output.weight", "head.weight"},          {"output_hc_fn.weight", "hc_head_fn"},
      {"output_hc_base.weight", "hc_head_base"}, {"output_hc_scale.weight", "hc_head_scale"},
  };
  return m;
}

// The MTP companion: its own names within "blk.N." -> within "mtp.0."
// (nextn.eh_proj is made from two sources, below).
const std::map<std::string, std::string>& mtp_sources() {
  static const std::map<std::string, std::string> m = {
      {"nextn.enorm.weight", "enorm.weight"},
      {"nextn.hnorm.weight", "hnorm.weight"},
      {"nextn.shared_head_norm.weight", "norm.weight"},
  };
  return m;
}

// The companion's roots are the model's, but for its own hyper-connection
// head (mtp.0.hc_head_*).
const std::map<std::string, std::string>& mtp_root_sources() {
  static const std::map<std::string, std::string> m = [] {
    std::map<std::string, std::string> roots = root_sources();
    for (auto& [gguf, source] : roots)
      if (source.rfind("hc_head_", 0) == 0) source = "mtp.0." + source;
    return roots;
  }();
  return m;
}

// Routed experts: GGUF name within "blk.N." -> w1/w2/w3.
const std::map<std::string, std::string>& expert_sources() {
  static const std::map<std::string, std::string> m = {
      {"ffn_gate_exps.weight", "w1"}, {"ffn_down_exps.weight", "w2"}, {"ffn_up_exps.weight", "w3"}};
  return m;
}

enum class V4Recipe {
  kFloat,        // one tensor (FP8 with its scale, or F32/BF16/F16) -> quantized rows
  kTable,        // integer token -> experts table -> I32
  kFp4Experts,   // n_expert FP4 tensors with E8M0 scales -> MXFP4 (lossless)
  kFloatExperts,  // n_expert float tensors -> quantized rows
  kSideBySide     // two float matrices [out][in] -> rows [out][in_a | in_b] (the MTP's eh_proj)
};

struct V4Tensor {
  PlannedTensor t;
  V4Recipe recipe = V4Recipe::kFloat;
};

std::string shape_str(std::vector<int64_t> s, bool reverse) {
  if (reverse) std::reverse(s.begin(), s.end());
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

bool is_int_dtype(SafetensorsDtype d) {
  return d == SafetensorsDtype::I64 || d == SafetensorsDtype::I32 || d == SafetensorsDtype::I16 ||
         d == SafetensorsDtype::I8 || d == SafetensorsDtype::U8;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `X.weight` -> `X.scale`: the release's block scales.
std::string scale_name(const std::string& weight) {
  return ends_with(weight, ".weight") ? weight.substr(0, weight.size() - 7) + ".scale" : weight + ".scale";
}

// The GGUF type of a float tensor, as llama.cpp's converter picks it
// (tensor_force_quant): FP8 matrices Q8_0, F32 stays F32, BF16 matrices
// BF16, 1-D tensors F32; the rest (F16) follows --outtype.
GgmlType float_type(const SafetensorInfo& src, const std::vector<int64_t>& ne, ConvertOutType outtype) {
  const size_t n_dims = ne.size() - static_cast<size_t>(std::count(ne.begin() + 1, ne.end(), 1));
  const bool fp8 = src.dtype == SafetensorsDtype::F8_E4M3 || src.dtype == SafetensorsDtype::F8_E5M2;
  auto fits = [&](GgmlType t) { return ne[0] % ggml_type_traits(t).block_size == 0; };
  if (n_dims < 2 || src.dtype == SafetensorsDtype::F32) return GgmlType::F32;
  if (fp8) return fits(GgmlType::Q8_0) ? GgmlType::Q8_0 : GgmlType::F32;
  if (src.dtype == SafetensorsDtype::BF16) return GgmlType::BF16;
  return outtype_matrix_type(outtype, ne[0]);
}

// One expert's FP4 rows as ggml MXFP4 blocks: per 32 values the E8M0 byte,
// then 16 bytes holding value j in the low nibble and j + 16 in the high one
// (the source holds values 2i and 2i+1 in byte i's low and high nibble).
// The 4-bit codes are E2M1 in both, ggml doubling its table and halving the
// scale, so nothing is rounded.
void repack_fp4_to_mxfp4(const uint8_t* packed, const uint8_t* scales, int64_t rows, int64_t cols, uint8_t* out) {
  const int64_t nb = cols / 32;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* src = packed + r * (cols / 2) + b * 16;
      uint8_t* dst = out + (r * nb + b) * 17;
      dst[0] = scales[r * nb + b];
      uint8_t v[32];
      for (int i = 0; i < 16; ++i) {
        v[2 * i] = src[i] & 0x0F;
        v[2 * i + 1] = src[i] >> 4;
      }
      for (int j = 0; j < 16; ++j) dst[1 + j] = static_cast<uint8_t>(v[j] | (v[j + 16] << 4));
    }
}

// The tensors of the model file, or (companion) of its MTP companion.
class Deepseek4Plan {
 public:
  Deepseek4Plan(const SafetensorsCheckpoint& ckpt, const Deepseek4HfConfig& c, int64_t n_vocab, ConvertOutType outtype,
                bool companion)
      : ckpt_(ckpt), c_(c), companion_(companion) {
    if (companion) {
      for (const LayoutTensor& lt : deepseek4_mtp_companion_tensors(c, n_vocab)) plan(lt, outtype);
      check_module_leftovers();
      return;
    }
    for (const LayoutTensor& lt : deepseek4_tensors(c, n_vocab)) plan(lt, outtype);
    // Optional: hash layers' bias for image tokens (llama.cpp loads it when present).
    for (int64_t il = 0; il < c.num_hidden_layers; ++il) {
      const std::string src = "layers." + std::to_string(il) + ".ffn.gate.bias_vl";
      if (ckpt.find(src))
        plan({"blk." + std::to_string(il) + ".exp_probs_b_vl.bias", {c.n_routed_experts}, LayoutRole::kBias}, outtype);
    }
    check_leftovers();
  }
  const std::vector<V4Tensor>& tensors() const { return out_; }
  bool mxfp4() const { return mxfp4_; }
  int64_t skipped_mtp() const { return skipped_mtp_; }

 private:
  const SafetensorInfo& need(const std::string& name, const std::string& for_gguf) {
    const SafetensorInfo* t = ckpt_.find(name);
    if (!t)
      throw_error("checkpoint %s: tensor '%s' is missing (needed for %s; %s)", ckpt_.dir().c_str(), name.c_str(),
                  for_gguf.c_str(), c_.path.c_str());
    used_.insert(name);
    return *t;
  }

  void check_shape(const SafetensorInfo& src, const std::vector<int64_t>& want_hf, const std::string& gguf) {
    if (src.shape != want_hf)
      throw_error("%s: tensor '%s' (-> %s) has shape %s, expected %s from %s", src.file.c_str(), src.name.c_str(),
                  gguf.c_str(), src.shape_string().c_str(), shape_str(want_hf, false).c_str(), c_.path.c_str());
  }

  void plan(const LayoutTensor& lt, ConvertOutType outtype) {
    V4Tensor v;
    v.t.name = lt.name;
    v.t.ne = lt.shape;
    std::vector<int64_t> hf(lt.shape.rbegin(), lt.shape.rend());
    std::string prefix, what = lt.name;
    if (lt.name.rfind("blk.", 0) == 0) {
      const size_t dot = lt.name.find('.', 4);
      prefix = companion_ ? "mtp.0." : "layers." + lt.name.substr(4, dot - 4) + ".";
      what = lt.name.substr(dot + 1);
    }
    if (auto e = expert_sources().find(what); e != expert_sources().end()) {
      plan_experts(v, prefix, e->second, outtype);
      return;
    }
    if (companion_ && what == "nextn.eh_proj.weight") {
      plan_side_by_side(v, {prefix + "e_proj.weight", prefix + "h_proj.weight"}, outtype);
      return;
    }
    const bool module_own = companion_ && mtp_sources().count(what);
    const auto& table = prefix.empty() ? (companion_ ? mtp_root_sources() : root_sources())
                                       : module_own ? mtp_sources() : layer_sources();
    const auto it = table.find(what);
    MOE_ASSERT(it != table.end(), "no source for %s", lt.name.c_str());
    const std::string name = prefix + it->second;
    const SafetensorInfo& src = need(name, lt.name);
    v.t.sources = {name};
    if (lt.role == LayoutRole::kTable) {
      check_shape(src, hf, lt.name);
      if (!is_int_dtype(src.dtype))
        throw_error("%s: tensor '%s' is %s, expected an integer table", src.file.c_str(), name.c_str(),
                    safetensors_dtype_name(src.dtype));
      v.t.type = GgmlType::I32;
      v.recipe = V4Recipe::kTable;
    } else {
      // 1-D tensors may come as [n] or with unit dimensions dropped.
      const bool vec = lt.shape.size() == 1;
      if (!(vec && src.n_elements == lt.shape[0])) check_shape(src, hf, lt.name);
      if (const SafetensorInfo* s = ckpt_.find(scale_name(name)); s && ends_with(name, ".weight")) used_.insert(s->name);
      v.t.type = float_type(src, lt.shape, outtype);
      v.recipe = V4Recipe::kFloat;
    }
    out_.push_back(std::move(v));
  }

  // W_eh = [W_e | W_h]: the module's two projections [hidden][hidden] side by side.
  void plan_side_by_side(V4Tensor& v, const std::vector<std::string>& names, ConvertOutType outtype) {
    const int64_t half = v.t.ne[0] / 2, rows = v.t.ne[1];
    for (const std::string& name : names) {
      const SafetensorInfo& src = need(name, v.t.name);
      check_shape(src, {rows, half}, v.t.name);
      if (const SafetensorInfo* s = ckpt_.find(scale_name(name))) used_.insert(s->name);
      v.t.sources.push_back(name);
    }
    v.t.type = float_type(ckpt_.tensor(names[0]), v.t.ne, outtype);
    v.recipe = V4Recipe::kSideBySide;
    out_.push_back(std::move(v));
  }

  void plan_experts(V4Tensor& v, const std::string& prefix, const std::string& w, ConvertOutType outtype) {
    const int64_t E = c_.n_routed_experts, cols = v.t.ne[0], rows = v.t.ne[1];
    for (int64_t e = 0; e < E; ++e) {
      const std::string name = prefix + "ffn.experts." + std::to_string(e) + "." + w + ".weight";
      const SafetensorInfo& src = need(name, v.t.name);
      const SafetensorInfo* scale = ckpt_.find(scale_name(name));
      if (scale) used_.insert(scale->name);
      const bool fp4 = src.dtype == SafetensorsDtype::I8 || src.dtype == SafetensorsDtype::U8;
      if (e == 0) v.recipe = fp4 ? V4Recipe::kFp4Experts : V4Recipe::kFloatExperts;
      if (fp4 != (v.recipe == V4Recipe::kFp4Experts))
        throw_error("%s: tensor '%s' is %s, unlike expert 0 of its layer", src.file.c_str(), name.c_str(),
                    safetensors_dtype_name(src.dtype));
      if (fp4) {
        if (cols % 32 != 0)
          throw_error("%s: tensor '%s': FP4 rows of %lld values, expected a multiple of 32", src.file.c_str(),
                      name.c_str(), static_cast<long long>(cols));
        check_shape(src, {rows, cols / 2}, v.t.name);
        if (!scale)
          throw_error("checkpoint %s: tensor '%s' (FP4) has no scale '%s'", ckpt_.dir().c_str(), name.c_str(),
                      scale_name(name).c_str());
        if (scale->dtype != SafetensorsDtype::F8_E8M0 && scale->dtype != SafetensorsDtype::U8)
          throw_error("%s: scale '%s' is %s, expected F8_E8M0", scale->file.c_str(), scale->name.c_str(),
                      safetensors_dtype_name(scale->dtype));
        check_shape(*scale, {rows, cols / 32}, v.t.name);
      } else {
        check_shape(src, {rows, cols}, v.t.name);
      }
      v.t.sources.push_back(name);
    }
    if (v.recipe == V4Recipe::kFp4Experts) {
      v.t.type = GgmlType::MXFP4;
      mxfp4_ = true;
    } else {
      v.t.type = float_type(ckpt_.tensor(v.t.sources[0]), v.t.ne, outtype);
    }
    out_.push_back(std::move(v));
  }

  // Every checkpoint tensor is converted, a known skip, or an error naming it.
  void check_leftovers() {
    for (const std::string& name : ckpt_.names()) {
      if (used_.count(name)) continue;
      if (name.rfind("mtp.", 0) == 0) {
        ++skipped_mtp_;
        continue;
      }
      if (name.rfind("aligner.", 0) == 0 || name.rfind("image_", 0) == 0) continue;  // vision (mmproj)
      // Hash layers route by tid2eid; their gate.bias is unused (llama.cpp drops it).
      bool hash_bias = false;
      for (int64_t il = 0; il < c_.num_hash_layers; ++il)
        hash_bias |= name == "layers." + std::to_string(il) + ".ffn.gate.bias";
      if (hash_bias) continue;
      throw_error("%s: tensor '%s' is not part of DeepSeek-V4's layout (num_hidden_layers %lld, compress_ratios and "
                  "num_hash_layers from %s)",
                  ckpt_.tensor(name).file.c_str(), name.c_str(), static_cast<long long>(c_.num_hidden_layers),
                  c_.path.c_str());
    }
  }

  // The companion: every mtp.* tensor is part of the module's layout (the
  // trunk's tensors are the model file's).
  void check_module_leftovers() {
    for (const std::string& name : ckpt_.names())
      if (!used_.count(name) && name.rfind("mtp.", 0) == 0 && !ends_with(name, ".bias_vl"))
        throw_error("%s: tensor '%s' is not part of the MTP module's layout (one module, mtp.0, with a layer of "
                    "compress ratio %lld from %s)",
                    ckpt_.tensor(name).file.c_str(), name.c_str(), static_cast<long long>(c_.mtp_compress_ratio),
                    c_.path.c_str());
  }

  const SafetensorsCheckpoint& ckpt_;
  const Deepseek4HfConfig& c_;
  const bool companion_;
  std::vector<V4Tensor> out_;
  std::set<std::string> used_;
  bool mxfp4_ = false;
  int64_t skipped_mtp_ = 0;
};

std::vector<float> load_f32(const SafetensorsCheckpoint& ckpt, const std::string& name) {
  const SafetensorInfo& t = ckpt.tensor(name);
  const bool fp8 = t.dtype == SafetensorsDtype::F8_E4M3 || t.dtype == SafetensorsDtype::F8_E5M2;
  return tensor_to_f32(t, fp8 ? ckpt.find(scale_name(name)) : nullptr, 128, 128);
}

std::vector<uint8_t> load_table(const SafetensorInfo& t, int64_t n_experts) {
  std::vector<uint8_t> out(static_cast<size_t>(t.n_elements) * 4);
  const uint64_t size = safetensors_dtype_size(t.dtype);
  for (int64_t i = 0; i < t.n_elements; ++i) {
    int64_t v = 0;
    const uint8_t* p = t.data + static_cast<uint64_t>(i) * size;
    switch (t.dtype) {
      case SafetensorsDtype::I64: { int64_t x; std::memcpy(&x, p, 8); v = x; break; }
      case SafetensorsDtype::I32: { int32_t x; std::memcpy(&x, p, 4); v = x; break; }
      case SafetensorsDtype::I16: { int16_t x; std::memcpy(&x, p, 2); v = x; break; }
      case SafetensorsDtype::I8: v = static_cast<int8_t>(*p); break;
      default: v = *p; break;
    }
    if (v < 0 || v >= n_experts)
      throw_error("%s: tensor '%s': element %lld is expert %lld, outside [0, %lld)", t.file.c_str(), t.name.c_str(),
                  static_cast<long long>(i), static_cast<long long>(v), static_cast<long long>(n_experts));
    const int32_t x = static_cast<int32_t>(v);
    std::memcpy(out.data() + 4 * i, &x, 4);
  }
  return out;
}

// Writes the plan's tensors with kv's keys to out_path (a set when split).
ConvertSummary write_plan(const Deepseek4Plan& plan, const GgufKvList& kv, const std::string& out_path,
                          const SplitOptions& split, const SafetensorsCheckpoint& ckpt, const Deepseek4HfConfig& config,
                          const std::string& hf_dir, const ConvertOptions& o) {
  GgufSetWriter w(out_path, split);
  for (const auto& [key, value] : kv.items()) w.set(key, value);
  uint64_t total = 0;
  for (const V4Tensor& v : plan.tensors()) total += w.tensor_nbytes(w.add_tensor(v.t.name, v.t.type, v.t.ne));
  w.begin();
  for (const std::string& out : w.paths()) refuse_output_in_checkpoint(out, hf_dir);

  ThreadPool pool(std::max(1, o.n_threads));
  ProgressBar bar("converting", total, o.progress);
  RowWriter rows(w, pool, bar);
  std::vector<uint8_t> bytes;
  for (const V4Tensor& v : plan.tensors()) {
    throw_if_interrupted();
    const PlannedTensor& p = v.t;
    switch (v.recipe) {
      case V4Recipe::kFloat: {
        const std::vector<float> x = load_f32(ckpt, p.sources[0]);
        rows.write(p, x.data(), static_cast<int64_t>(x.size()) / p.ne[0]);
        break;
      }
      case V4Recipe::kTable:
        bytes = load_table(ckpt.tensor(p.sources[0]), config.n_routed_experts);
        rows.write_raw(p, bytes.data(), bytes.size());
        break;
      case V4Recipe::kFp4Experts:
        for (const std::string& src : p.sources) {
          throw_if_interrupted();
          const int64_t cols = p.ne[0], n_rows = p.ne[1];
          bytes.resize(ggml_row_size(GgmlType::MXFP4, cols) * static_cast<size_t>(n_rows));
          repack_fp4_to_mxfp4(ckpt.tensor(src).data, ckpt.tensor(scale_name(src)).data, n_rows, cols, bytes.data());
          rows.write_raw(p, bytes.data(), bytes.size());
        }
        break;
      case V4Recipe::kFloatExperts:
        for (const std::string& src : p.sources) {
          throw_if_interrupted();
          const std::vector<float> x = load_f32(ckpt, src);
          rows.write(p, x.data(), static_cast<int64_t>(x.size()) / p.ne[0]);
        }
        break;
      case V4Recipe::kSideBySide: {
        const std::vector<float> a = load_f32(ckpt, p.sources[0]), b = load_f32(ckpt, p.sources[1]);
        const size_t half = static_cast<size_t>(p.ne[0] / 2);
        std::vector<float> x(a.size() + b.size());
        for (size_t r = 0; r < static_cast<size_t>(p.ne[1]); ++r) {
          std::copy_n(a.begin() + static_cast<ptrdiff_t>(r * half), half, x.begin() + static_cast<ptrdiff_t>(2 * r * half));
          std::copy_n(b.begin() + static_cast<ptrdiff_t>(r * half), half,
                      x.begin() + static_cast<ptrdiff_t>((2 * r + 1) * half));
        }
        rows.write(p, x.data(), p.ne[1]);
        break;
      }
    }
  }
  throw_if_interrupted();
  w.finish();
  bar.finish();
  return {plan.tensors().size(), total, w.paths()};
}

}  // namespace

ConvertSummary convert_deepseek4_checkpoint(const std::string& hf_dir, const std::string& out_path,
                                            const ConvertOptions& o) {
  const Deepseek4HfConfig config = read_deepseek4_config(hf_dir + "/config.json");
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(hf_dir);
  const SafetensorInfo* embed = ckpt.find("embed.weight");
  if (!embed || embed->shape.size() != 2)
    throw_error("checkpoint %s: tensor 'embed.weight' is missing or not 2-D", ckpt.dir().c_str());
  const int64_t n_vocab = config.vocab_size.value_or(embed->shape[0]);
  const Deepseek4Plan plan(ckpt, config, n_vocab, o.outtype, false);
  std::optional<Deepseek4Plan> module;
  if (!o.mtp_companion.empty()) {  // checked before any writing
    if (!ckpt.find("mtp.0.e_proj.weight"))
      throw_error("--mtp-companion: checkpoint %s has no MTP module (no tensor 'mtp.0.e_proj.weight'; "
                  "num_nextn_predict_layers %lld in %s)",
                  ckpt.dir().c_str(), static_cast<long long>(config.num_nextn_predict_layers), config.path.c_str());
    module.emplace(ckpt, config, n_vocab, o.outtype, true);
  }

  GgufKvList kv;
  const uint32_t file_type = plan.mxfp4() ? 38 /* MOSTLY_MXFP4_MOE */ : convert_file_type(o.outtype);
  const std::string name = o.model_name.empty() ? checkpoint_model_name(hf_dir) : o.model_name;
  deepseek4_model_metadata(config, n_vocab, file_type, name, kv);
  GgufKvList tokenizer;
  HfConfig tok;  // what the tokenizer keys read from config.json
  tok.path = config.path;
  tok.vocab_size = n_vocab;
  tok.bos_token_id = config.bos_token_id;
  tok.eos_token_id = config.eos_token_id;
  tok.pad_token_id = config.pad_token_id;
  hf_tokenizer_metadata(hf_dir, tok, tokenizer);
  if (!tokenizer.find("tokenizer.chat_template") && !o.deepseek4_template_file.empty()) {
    std::ifstream f(o.deepseek4_template_file, std::ios::binary);
    if (!f) throw_error("cannot read the DeepSeek-V4 chat template '%s'", o.deepseek4_template_file.c_str());
    tokenizer.set("tokenizer.chat_template", GgufValue::string(std::string(std::istreambuf_iterator<char>(f), {})));
  }
  for (const auto& [key, value] : tokenizer.items()) kv.set(key, value);
  kv.set("general.quantization_version", GgufValue::u32(2));
  const ConvertSummary summary = write_plan(plan, kv, out_path, o.split, ckpt, config, hf_dir, o);
  if (plan.skipped_mtp() > 0 && !module && o.progress)
    std::fprintf(stderr, "moe-convert: skipped %lld MTP tensors (mtp.*): DeepSeek-V4 keeps its MTP module in a file "
                 "of its own (--mtp-companion FILE writes it)\n", static_cast<long long>(plan.skipped_mtp()));
  if (!module) return summary;

  GgufKvList mkv;
  deepseek4_mtp_companion_metadata(config, n_vocab, module->mxfp4() ? 38 : convert_file_type(o.outtype),
                                   name + " MTP", mkv);
  for (const auto& [key, value] : tokenizer.items()) mkv.set(key, value);
  mkv.set("general.quantization_version", GgufValue::u32(2));
  write_plan(*module, mkv, o.mtp_companion, SplitOptions{}, ckpt, config, hf_dir, o);
  return summary;
}

}  // namespace moe
