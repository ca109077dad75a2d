#include "convert/synth_model.h"
#include "convert/synth_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "convert/deepseek2_gguf_layout.h"
#include "convert/hf_config.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/progress.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "quant/quantize.h"
#include "quant/blocks_iq.h"
#include "core/fp16.h"

namespace moe {

namespace {

// The tensors llama.cpp's converter writes for a deepseek2 model without MTP
// layers, in the order of its fixtures: token_embd, each block, output_norm,
// output. Shapes in ggml order ([in, out, experts]).
std::vector<SynthTensor> deepseek2_tensors(const HfConfig& c) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, R = c.kv_lora_rank;
  const int64_t NOPE = c.qk_nope_head_dim, ROPE = c.qk_rope_head_dim, V = c.v_head_dim;
  const int64_t E = c.n_routed_experts.value_or(0), F = c.moe_intermediate_size;
  std::vector<SynthTensor> t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, SynthRole role) {
    t.push_back({name, std::move(shape), role});
  };
  add("token_embd.weight", {D, c.vocab_size}, SynthRole::kEmbed);
  for (int64_t il = 0; il < c.num_hidden_layers + c.num_nextn_predict_layers; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    if (il >= c.num_hidden_layers) {  // an MTP module; its embedding and head are the trunk's
      add(b + "nextn.eh_proj.weight", {2 * D, D}, SynthRole::kMatrix);
      add(b + "nextn.enorm.weight", {D}, SynthRole::kNorm);
      add(b + "nextn.hnorm.weight", {D}, SynthRole::kNorm);
      add(b + "nextn.shared_head_norm.weight", {D}, SynthRole::kNorm);
    }
    add(b + "attn_norm.weight", {D}, SynthRole::kNorm);
    if (c.q_lora_rank) {
      add(b + "attn_q_a.weight", {D, *c.q_lora_rank}, SynthRole::kMatrix);
      add(b + "attn_q_a_norm.weight", {*c.q_lora_rank}, SynthRole::kNorm);
      add(b + "attn_q_b.weight", {*c.q_lora_rank, H * (NOPE + ROPE)}, SynthRole::kMatrix);
    } else {
      add(b + "attn_q.weight", {D, H * (NOPE + ROPE)}, SynthRole::kMatrix);
    }
    add(b + "attn_kv_a_mqa.weight", {D, R + ROPE}, SynthRole::kMatrix);
    add(b + "attn_kv_a_norm.weight", {R}, SynthRole::kNorm);
    add(b + "attn_k_b.weight", {NOPE, R, H}, SynthRole::kMatrix);
    add(b + "attn_v_b.weight", {R, V, H}, SynthRole::kMatrix);
    add(b + "attn_output.weight", {H * V, D}, SynthRole::kMatrix);
    if (c.index_n_heads) {  // DeepSeek-V3.2's lightning indexer
      const int64_t HI = *c.index_n_heads, DI = *c.index_head_dim;
      add(b + "indexer.k_norm.weight", {DI}, SynthRole::kNorm);
      add(b + "indexer.k_norm.bias", {DI}, SynthRole::kBias);
      add(b + "indexer.proj.weight", {D, HI}, SynthRole::kMatrix);
      add(b + "indexer.attn_k.weight", {D, DI}, SynthRole::kMatrix);
      add(b + "indexer.attn_q_b.weight", {c.q_lora_rank.value_or(0), HI * DI}, SynthRole::kMatrix);
    }
    add(b + "ffn_norm.weight", {D}, SynthRole::kNorm);
    if (il < c.first_k_dense_replace || E == 0) {
      add(b + "ffn_gate.weight", {D, c.intermediate_size}, SynthRole::kMatrix);
      add(b + "ffn_up.weight", {D, c.intermediate_size}, SynthRole::kMatrix);
      add(b + "ffn_down.weight", {c.intermediate_size, D}, SynthRole::kMatrix);
      continue;
    }
    add(b + "ffn_gate_inp.weight", {D, E}, SynthRole::kRouter);
    if (c.topk_method.value_or("") == "noaux_tc") add(b + "exp_probs_b.bias", {E}, SynthRole::kBias);
    add(b + "ffn_gate_exps.weight", {D, F, E}, SynthRole::kMatrix);
    add(b + "ffn_up_exps.weight", {D, F, E}, SynthRole::kMatrix);
    add(b + "ffn_down_exps.weight", {F, D, E}, SynthRole::kMatrix);
    if (c.n_shared_experts > 0) {
      const int64_t FS = F * c.n_shared_experts;
      add(b + "ffn_gate_shexp.weight", {D, FS}, SynthRole::kMatrix);
      add(b + "ffn_up_shexp.weight", {D, FS}, SynthRole::kMatrix);
      add(b + "ffn_down_shexp.weight", {FS, D}, SynthRole::kMatrix);
    }
  }
  add("output_norm.weight", {D}, SynthRole::kNorm);
  add("output.weight", {D, c.vocab_size}, SynthRole::kMatrix);
  return t;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Expert popularity. With --hot-experts zipf:s, expert e (in a seeded random
// rank order) is chosen with odds proportional to 1 / rank^s. Every token's
// embedding carries a shared direction u; each router row gets that
// direction times the expert's centred log-odds, so the router's logits are
// shifted by roughly the log-odds whatever the token (softmax and sigmoid
// gating alike). Without it all routers are plain random.
struct HotExperts {
  std::vector<float> u;          // unit vector, length hidden
  std::vector<float> log_odds;   // per expert, centred
};

HotExperts make_hot_experts(int64_t D, int64_t E, double s, uint64_t seed) {
  HotExperts h;
  if (s <= 0.0 || E == 0) return h;
  std::mt19937_64 rng(splitmix64(seed ^ 0x484f54ull));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  h.u.resize(static_cast<size_t>(D));
  double norm = 0;
  for (float& v : h.u) v = normal(rng), norm += static_cast<double>(v) * v;
  for (float& v : h.u) v = static_cast<float>(v / std::sqrt(norm));
  std::vector<int64_t> rank(static_cast<size_t>(E));
  std::iota(rank.begin(), rank.end(), 1);
  std::shuffle(rank.begin(), rank.end(), rng);
  h.log_odds.resize(static_cast<size_t>(E));
  double mean = 0;
  for (int64_t e = 0; e < E; ++e) mean += -s * std::log(static_cast<double>(rank[static_cast<size_t>(e)]));
  mean /= static_cast<double>(E);
  for (int64_t e = 0; e < E; ++e)
    h.log_odds[static_cast<size_t>(e)] =
        static_cast<float>(-s * std::log(static_cast<double>(rank[static_cast<size_t>(e)])) - mean);
  return h;
}

// A row of an IQ type (which needs an importance matrix to quantize to) as
// random valid blocks: random grid indices, signs and block scales, and a
// super-block scale d that keeps the largest weight near 4 / sqrt(n), the
// spread of the quantized rows of the other types. For speed measurements:
// the arithmetic per block is what a real file's is.
void random_iq_row(GgmlType type, int64_t n, std::mt19937_64& rng, uint8_t* row) {
  const GgmlTypeTraits& tr = ggml_type_traits(type);
  MOE_ASSERT(is_iq_type(type), "moe-synth cannot make rows of type %s", tr.name);
  // Largest |value * scale| of the integer form (blocks_iq.h), times its fraction.
  double biggest = 0;
  switch (type) {
    case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S: biggest = 31.0 * 43 / 8; break;
    case GgmlType::IQ3_XXS: biggest = 31.0 * 62 / 4; break;
    case GgmlType::IQ3_S: biggest = 31.0 * 15; break;
    case GgmlType::IQ1_S: case GgmlType::IQ1_M: biggest = 15.0 * 9 / 8; break;
    case GgmlType::IQ4_XS: biggest = 32.0 * 127; break;
    default: biggest = 127; break;  // IQ4_NL
  }
  const uint16_t d = fp32_to_fp16(static_cast<float>(4.0 / std::sqrt(static_cast<double>(n)) / biggest));
  for (int64_t b = 0; b < n / tr.block_size; ++b) {
    uint8_t* blk = row + static_cast<size_t>(b) * tr.type_size;
    for (size_t i = 0; i < tr.type_size; ++i) blk[i] = static_cast<uint8_t>(rng());
    if (type == GgmlType::IQ1_M) {
      for (int k = 0; k < 4; ++k) blk[48 + 2 * k + 1] = static_cast<uint8_t>((blk[48 + 2 * k + 1] & 0x0f) | (((d >> (4 * k)) & 0xf) << 4));
    } else {
      std::memcpy(blk, &d, 2);
    }
  }
}

// A pool of quantized random rows for one (type, row length, role).
class RowPool {
 public:
  static constexpr int kRows = 64;
  RowPool(GgmlType type, int64_t n, bool embed, const HotExperts& hot, uint64_t seed) : row_bytes_(ggml_row_size(type, n)) {
    std::mt19937_64 rng(splitmix64(seed ^ (static_cast<uint64_t>(type) << 32) ^ static_cast<uint64_t>(n) ^ (embed ? 1ull << 63 : 0)));
    // Matrices: N(0, 1/n) so a product with an RMS-normalised input stays
    // O(1). Embeddings: N(0, 1), plus the shared hot direction at the same norm.
    std::normal_distribution<float> normal(0.0f, embed ? 1.0f : 1.0f / std::sqrt(static_cast<float>(n)));
    std::vector<float> x(static_cast<size_t>(n));
    bytes_.resize(row_bytes_ * kRows);
    for (int r = 0; r < kRows; ++r) {
      for (float& v : x) v = normal(rng);
      if (embed && static_cast<int64_t>(hot.u.size()) == n)
        for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] += hot.u[static_cast<size_t>(i)] * std::sqrt(static_cast<float>(n));
      uint8_t* row = &bytes_[row_bytes_ * static_cast<size_t>(r)];
      if (quantize_supported(type)) quantize_row_ref(type, x.data(), row, n);
      else random_iq_row(type, n, rng, row);
    }
  }
  const uint8_t* row(uint64_t h) const { return &bytes_[row_bytes_ * (h % kRows)]; }
  size_t row_bytes() const { return row_bytes_; }

 private:
  size_t row_bytes_;
  std::vector<uint8_t> bytes_;
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error("cannot read '%s'", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::string synth_config_path(const std::string& name_or_path, const std::string& models_dir) {
  static const std::map<std::string, std::string> kBuiltIn = {
      {"v2-lite", "deepseek-v2-lite.json"}, {"v2", "deepseek-v2.json"}, {"v3", "deepseek-v3.json"}, {"v3.2", "deepseek-v3.2.json"},
      {"kimi-k2", "kimi-k2.json"}, {"glm-4.7-flash", "glm-4.7-flash.json"}};
  auto it = kBuiltIn.find(name_or_path);
  if (it != kBuiltIn.end()) return models_dir + "/configs/" + it->second;
  if (!std::filesystem::exists(name_or_path))
    throw_error("--config '%s': neither a built-in config (v2-lite, v2, v3, kimi-k2, glm-4.7-flash) nor an existing file",
                name_or_path.c_str());
  if (std::filesystem::is_directory(name_or_path)) return name_or_path + "/config.json";
  return name_or_path;
}

SynthReport synthesize_model(const SynthOptions& o) {
  if (synth_is_deepseek4(o.config)) return synthesize_deepseek4(o);
  if (!o.mtp_out.empty())
    throw_error("--mtp-companion: only DeepSeek-V4 keeps its MTP module in a file of its own; use --mtp");
  const std::string config_path = synth_config_path(o.config, o.models_dir);
  HfConfig c = parse_hf_config(read_text(config_path), config_path);
  if (o.layers > 0) {
    if (o.layers > c.num_hidden_layers)
      throw_error("--layers %lld: the config has only %lld layers", static_cast<long long>(o.layers),
                  static_cast<long long>(c.num_hidden_layers));
    c.num_hidden_layers = o.layers;
    // A cut inside the leading dense layers is all dense (V3 has 3).
    c.first_k_dense_replace = std::min(c.first_k_dense_replace, c.num_hidden_layers);
  }
  c.num_nextn_predict_layers = o.mtp ? 1 : 0;  // --mtp: one MTP module, as DeepSeek-V3 ships

  // The tokenizer: every tokenizer.* key of the vocabulary file. Its size
  // becomes the model's vocabulary (the V3 tokenizer serves all shapes).
  const std::string vocab_path = o.vocab.empty() ? o.models_dir + "/deepseek-v3-vocab.gguf" : o.vocab;
  const GgufFile vocab = GgufFile::open(vocab_path);
  c.vocab_size = static_cast<int64_t>(vocab.get_string_array("tokenizer.ggml.tokens").size());

  Deepseek2LayoutOptions lo;
  lo.outtype = ConvertOutType::F32;
  lo.keep_mtp = o.mtp;
  lo.model_name = "synthetic " + std::filesystem::path(config_path).stem().string();
  GgufKvList kv;
  deepseek2_model_metadata(c, lo, kv);
  kv.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(o.file_type)));
  for (const GgufKv& e : vocab.metadata())
    if (e.key.rfind("tokenizer.", 0) == 0) kv.set(e.key, e.value);
  kv.set("general.quantization_version", GgufValue::u32(2));

  // In the order llama-quantize writes a quantized file (a synthesized file
  // stands for a converted-then-quantized one).
  std::vector<SynthTensor> tensors;
  {
    const std::vector<SynthTensor> converter_order = deepseek2_tensors(c);
    std::vector<std::string> names;
    for (const SynthTensor& t : converter_order) names.push_back(t.name);
    for (size_t i : llama_tensor_order(names)) tensors.push_back(converter_order[i]);
  }
  PlanModel pm;
  pm.n_layer = static_cast<uint32_t>(c.num_hidden_layers + c.num_nextn_predict_layers);  // block_count
  pm.n_expert = static_cast<uint32_t>(c.n_routed_experts.value_or(0));
  pm.n_head = static_cast<uint32_t>(c.num_attention_heads);
  pm.n_head_kv = 1;  // what the converter writes for MLA
  return write_synthetic(o, kv, tensors, pm, c.hidden_size, c.n_routed_experts.value_or(0));
}

SynthReport write_synthetic(const SynthOptions& o, const GgufKvList& kv, const std::vector<SynthTensor>& tensors,
                            const PlanModel& pm, int64_t hidden, int64_t n_experts) {
  std::vector<PlanTensor> pt;
  for (const SynthTensor& t : tensors)
    pt.push_back({t.name, gguf_trimmed_shape(t.shape), t.role == SynthRole::kTable ? GgmlType::I32 : GgmlType::F32});
  PlanOptions popt;
  popt.file_type = o.file_type;
  popt.overrides = o.overrides;
  QuantPlan plan = plan_tensor_types(pm, pt, popt);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].role == SynthRole::kTable) plan.types[i] = GgmlType::I32;  // tables are never quantized

  GgufWriter w(o.out);
  for (const auto& [key, value] : kv.items()) w.set(key, value);
  SynthReport rep;
  for (size_t i = 0; i < tensors.size(); ++i) {
    w.add_tensor(tensors[i].name, plan.types[i], tensors[i].shape);
    rep.bytes += w.tensor_nbytes(i);
    int64_t ne = 1;
    for (int64_t d : tensors[i].shape) ne *= d;
    rep.n_params += ne;
  }
  rep.n_tensors = static_cast<int64_t>(tensors.size());
  w.begin();

  const int64_t D = hidden, E = n_experts;
  const HotExperts hot = make_hot_experts(D, E, o.hot_zipf, o.seed);
  std::map<std::tuple<GgmlType, int64_t, bool>, RowPool> pools;
  ProgressBar bar("moe-synth", rep.bytes, o.progress);
  std::vector<uint8_t> chunk;
  constexpr size_t kChunkBytes = size_t{8} << 20;
  for (size_t i = 0; i < tensors.size(); ++i) {
    throw_if_interrupted();
    const SynthTensor& t = tensors[i];
    const GgmlType type = plan.types[i];
    const int64_t n = t.shape[0];
    const int64_t rows = w.tensor_nbytes(i) / ggml_row_size(type, n);
    if (t.role == SynthRole::kTable) {
      // Each row: n distinct experts, drawn by seed.
      std::vector<int32_t> v(static_cast<size_t>(n * rows));
      std::vector<int32_t> perm(static_cast<size_t>(E));
      std::mt19937_64 rng(splitmix64(o.seed ^ (i << 20)));
      for (int64_t r = 0; r < rows; ++r) {
        std::iota(perm.begin(), perm.end(), 0);
        for (int64_t k = 0; k < n; ++k) {
          std::swap(perm[static_cast<size_t>(k)], perm[static_cast<size_t>(k + static_cast<int64_t>(rng() % static_cast<uint64_t>(E - k)))]);
          v[static_cast<size_t>(r * n + k)] = perm[static_cast<size_t>(k)];
        }
      }
      w.write_tensor_data(v.data(), v.size() * sizeof(int32_t));
      bar.advance(v.size() * sizeof(int32_t), t.name);
      continue;
    }
    if (t.role != SynthRole::kMatrix && t.role != SynthRole::kEmbed) {
      // Small f32 tensors, made directly: norms 1, bias 0, routers random.
      MOE_ASSERT(type == GgmlType::F32, "%s: expected f32, the plan chose %s", t.name.c_str(), ggml_type_name(type));
      std::vector<float> v(static_cast<size_t>(n * rows), t.role == SynthRole::kNorm ? 1.0f : 0.0f);
      if (t.role == SynthRole::kRouter) {
        std::mt19937_64 rng(splitmix64(o.seed ^ (i << 20)));
        std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(n)));
        for (float& x : v) x = normal(rng);
        if (!hot.u.empty()) {
          // h . u is about sqrt(n / 2) for an RMS-normalised hidden state
          // that keeps the embedding's share of u: scale so the logit
          // shift is about the log-odds.
          const float k = 1.0f / std::sqrt(static_cast<float>(n) / 2.0f);
          for (int64_t e = 0; e < rows; ++e)
            for (int64_t j = 0; j < n; ++j)
              v[static_cast<size_t>(e * n + j)] += k * hot.log_odds[static_cast<size_t>(e)] * hot.u[static_cast<size_t>(j)];
        }
      }
      w.write_tensor_data(v.data(), v.size() * sizeof(float));
      bar.advance(v.size() * sizeof(float), t.name);
      continue;
    }
    const auto key = std::make_tuple(type, n, t.role == SynthRole::kEmbed);
    auto it = pools.find(key);
    if (it == pools.end()) it = pools.emplace(key, RowPool(type, n, t.role == SynthRole::kEmbed, hot, o.seed)).first;
    const RowPool& pool = it->second;
    const size_t rb = pool.row_bytes();
    const int64_t rows_per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / rb));
    for (int64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
      throw_if_interrupted();
      const int64_t r1 = std::min(rows, r0 + rows_per_chunk);
      chunk.resize(rb * static_cast<size_t>(r1 - r0));
      for (int64_t r = r0; r < r1; ++r)
        std::memcpy(&chunk[rb * static_cast<size_t>(r - r0)], pool.row(splitmix64(o.seed ^ (i << 40) ^ static_cast<uint64_t>(r))), rb);
      w.write_tensor_part(chunk.data(), chunk.size());
      bar.advance(chunk.size(), t.name);
    }
  }
  bar.finish();
  w.finish();
  return rep;
}

}  // namespace moe
