// moe-convert for DeepSeek-V4 checkpoints. The checkpoint is built here from
// the tiny-dsv4 fixtures in the release's own form (names of DeepSeek's
// inference code, FP8 E4M3 with E8M0 128x128 scales, FP4 experts with E8M0
// scales per 32, an I64 hash table, an MTP tensor and a hash layer's unused
// gate.bias) using llama.cpp's converter table (conversion/deepseek.py) typed
// in its own direction, release name -> GGUF name. References: the
// fixtures' bytes (FP4 -> MXFP4 is lossless, F32 stays F32), an independent
// E4M3 encoder/decoder, and the fixtures' keys.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fp16.h"
#include "gguf/gguf_reader.h"
#include "model/deepseek4.h"
#include "quant/dequantize.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace moe;

namespace {

// conversion/deepseek.py's layer_map and root_map: release name -> GGUF name.
const std::map<std::string, std::string> kLayerMap = {
    {"hc_attn_fn", "hc_attn_fn.weight"}, {"hc_attn_base", "hc_attn_base.weight"},
    {"hc_attn_scale", "hc_attn_scale.weight"}, {"hc_ffn_fn", "hc_ffn_fn.weight"},
    {"hc_ffn_base", "hc_ffn_base.weight"}, {"hc_ffn_scale", "hc_ffn_scale.weight"},
    {"attn.attn_sink", "attn_sinks.weight"}, {"attn.wq_a.weight", "attn_q_a.weight"},
    {"attn.wq_b.weight", "attn_q_b.weight"}, {"attn.q_norm.weight", "attn_q_a_norm.weight"},
    {"attn.wkv.weight", "attn_kv.weight"}, {"attn.kv_norm.weight", "attn_kv_a_norm.weight"},
    {"attn.wo_a.weight", "attn_output_a.weight"}, {"attn.wo_b.weight", "attn_output_b.weight"},
    {"attn.compressor.ape", "attn_compressor_ape.weight"}, {"attn.compressor.wkv.weight", "attn_compressor_kv.weight"},
    {"attn.compressor.wgate.weight", "attn_compressor_gate.weight"},
    {"attn.compressor.norm.weight", "attn_compressor_norm.weight"},
    {"attn.indexer.wq_b.weight", "indexer.attn_q_b.weight"}, {"attn.indexer.weights_proj.weight", "indexer.proj.weight"},
    {"attn.indexer.compressor.ape", "indexer_compressor_ape.weight"},
    {"attn.indexer.compressor.wkv.weight", "indexer_compressor_kv.weight"},
    {"attn.indexer.compressor.wgate.weight", "indexer_compressor_gate.weight"},
    {"attn.indexer.compressor.norm.weight", "indexer_compressor_norm.weight"},
    {"attn_norm.weight", "attn_norm.weight"}, {"ffn_norm.weight", "ffn_norm.weight"},
    {"ffn.gate.weight", "ffn_gate_inp.weight"}, {"ffn.gate.bias", "exp_probs_b.bias"},
    {"ffn.gate.tid2eid", "ffn_gate_tid2eid.weight"}, {"ffn.shared_experts.w1.weight", "ffn_gate_shexp.weight"},
    {"ffn.shared_experts.w2.weight", "ffn_down_shexp.weight"}, {"ffn.shared_experts.w3.weight", "ffn_up_shexp.weight"},
};
const std::map<std::string, std::string> kRootMap = {
    {"embed.weight", "token_embd.weight"}, {"norm.weight", "output_norm.weight"}, {"head.weight", "output.weight"},
    {"hc_head_fn", "output_hc_fn.weight"}, {"hc_head_base", "output_hc_base.weight"},
    {"hc_head_scale", "output_hc_scale.weight"}};

// E4M3FN: the nearest code by search over the decoder (exact, independent of src/).
float e4m3_decode(uint8_t q) {
  const int s = q >> 7, e = (q >> 3) & 15, m = q & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return static_cast<float>(s ? -v : v);
}
uint8_t e4m3_encode(float x) {
  uint8_t best = 0;
  float bd = INFINITY;
  for (int q = 0; q < 256; ++q) {
    const float v = e4m3_decode(static_cast<uint8_t>(q));
    if (std::isnan(v)) continue;
    if (std::fabs(v - x) < bd) bd = std::fabs(v - x), best = static_cast<uint8_t>(q);
  }
  return best;
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> gguf_f32(const GgufTensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  const size_t row = ggml_row_size(t.type, t.shape[0]);
  for (int64_t r = 0; r < t.n_elements / t.shape[0]; ++r)
    dequantize_row_ref(t.type, t.data + r * row, out.data() + r * t.shape[0], t.shape[0]);
  return out;
}

// FP8 with E8M0 scales per 128x128 block, as DeepSeek stores its weights;
// `decoded` gets what the checkpoint holds, as float.
void add_fp8(std::vector<test::SafetensorBytes>& st, const std::string& name, const std::vector<float>& x, int64_t rows,
             int64_t cols, std::vector<float>& decoded) {
  const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  std::vector<uint8_t> scale(static_cast<size_t>(sr * sc)), q(x.size());
  decoded.assign(x.size(), 0.0f);
  for (int64_t br = 0; br < sr; ++br)
    for (int64_t bc = 0; bc < sc; ++bc) {
      float amax = 0;
      for (int64_t r = br * 128; r < std::min(rows, br * 128 + 128); ++r)
        for (int64_t c = bc * 128; c < std::min(cols, bc * 128 + 128); ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
      const int e = 127 + static_cast<int>(std::ceil(std::log2(std::max(amax, 1e-30f) / 448.0f)));
      scale[br * sc + bc] = static_cast<uint8_t>(e);
      const float s = std::ldexp(1.0f, e - 127);
      for (int64_t r = br * 128; r < std::min(rows, br * 128 + 128); ++r)
        for (int64_t c = bc * 128; c < std::min(cols, bc * 128 + 128); ++c) {
          q[r * cols + c] = e4m3_encode(x[r * cols + c] / s);
          decoded[r * cols + c] = e4m3_decode(q[r * cols + c]) * s;
        }
    }
  st.push_back({name, "F8_E4M3", {rows, cols}, q});
  st.push_back({name.substr(0, name.size() - 7) + ".scale", "F8_E8M0", {sr, sc}, scale});
}

// MXFP4 blocks of one expert back to the release's packing: codes 2i, 2i+1
// in byte i (low nibble first) and one E8M0 byte per 32 values.
void add_fp4_expert(std::vector<test::SafetensorBytes>& st, const std::string& name, const uint8_t* blocks, int64_t rows,
                    int64_t cols) {
  const int64_t nb = cols / 32;
  std::vector<uint8_t> packed(static_cast<size_t>(rows * cols / 2)), scale(static_cast<size_t>(rows * nb));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = blocks + (r * nb + b) * 17;
      scale[r * nb + b] = blk[0];
      uint8_t v[32];
      for (int j = 0; j < 16; ++j) v[j] = blk[1 + j] & 15, v[j + 16] = blk[1 + j] >> 4;
      for (int i = 0; i < 16; ++i) packed[r * cols / 2 + b * 16 + i] = static_cast<uint8_t>(v[2 * i] | (v[2 * i + 1] << 4));
    }
  st.push_back({name, "I8", {rows, cols / 2}, packed});
  st.push_back({name.substr(0, name.size() - 7) + ".scale", "F8_E8M0", {rows, nb}, scale});
}

struct BuiltCheckpoint {
  std::string dir;
  std::map<std::string, std::vector<float>> fp8_values;  // GGUF name -> what the FP8 source decodes to
  std::map<std::string, std::string> bf16;               // GGUF names stored BF16
  std::vector<float> mtp_e, mtp_h;                       // with_mtp: the module's e_proj (as FP8 decodes) and h_proj
};

// The release's MTP module, mtp.0.*, made from the fixture's layer 3 (its
// attention without the compressors: the module's layer is window-only)
// and random projections: e_proj FP8, h_proj and the norms F32.
void add_mtp_module(std::vector<test::SafetensorBytes>& st, const GgufFile& f32, const GgufFile& mx, BuiltCheckpoint& b) {
  std::map<std::string, std::string> to_release;
  for (const auto& [rel, gg] : kLayerMap) to_release["blk.3." + gg] = "mtp.0." + rel;
  for (const char* h : {"fn", "base", "scale"})
    to_release[std::string("output_hc_") + h + ".weight"] = std::string("mtp.0.hc_head_") + h;
  const int64_t E = f32.get_u32("deepseek4.expert_count"), D = f32.get_u32("deepseek4.embedding_length");
  for (const GgufTensorInfo& t : f32.tensors()) {
    const std::string& gg = t.name;
    if (!to_release.count(gg) || gg.find("compressor") != std::string::npos || gg.find("indexer") != std::string::npos)
      continue;
    const std::vector<int64_t> hf(t.shape.rbegin(), t.shape.rend());
    st.push_back({to_release[gg], "F32", hf, bytes_of(gguf_f32(t))});
  }
  for (const char* w : {"gate", "down", "up"}) {
    const GgufTensorInfo* m = mx.find_tensor(std::string("blk.3.ffn_") + w + "_exps.weight");
    REQUIRE(m);
    const int64_t cols = m->shape[0], rows = m->shape[1];
    const size_t per = ggml_row_size(GgmlType::MXFP4, cols) * size_t(rows);
    const std::string wn = w[0] == 'g' ? "w1" : w[0] == 'd' ? "w2" : "w3";
    for (int64_t e = 0; e < E; ++e)
      add_fp4_expert(st, "mtp.0.ffn.experts." + std::to_string(e) + "." + wn + ".weight", m->data + e * per, rows, cols);
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> e(size_t(D * D)), h(size_t(D * D));
  for (float& x : e) x = nd(rng);
  for (float& x : h) x = nd(rng);
  add_fp8(st, "mtp.0.e_proj.weight", e, D, D, b.mtp_e);
  st.push_back({"mtp.0.h_proj.weight", "F32", {D, D}, bytes_of(h)});
  b.mtp_h = h;
  for (const char* n : {"enorm", "hnorm", "norm"})
    st.push_back({std::string("mtp.0.") + n + ".weight", "F32", {D}, bytes_of(std::vector<float>(size_t(D), 1.0f))});
}

// The checkpoint: F32 from tiny-dsv4.f32, routed experts FP4 from
// tiny-dsv4.MXFP4_MOE, three matrices FP8, one BF16; with_mtp: a whole MTP
// module, else one stray MTP tensor (skipped).
BuiltCheckpoint build_checkpoint(const GgufFile& f32, const GgufFile& mx, const std::string& hf_tokenizer_dir,
                                 bool with_mtp = false) {
  BuiltCheckpoint b;
  b.dir = test::temp_dir() + (with_mtp ? "/hf-tiny-dsv4-mtp" : "/hf-tiny-dsv4");
  fs::create_directories(b.dir);
  std::vector<test::SafetensorBytes> st;
  std::map<std::string, std::string> to_release;  // GGUF -> release name
  for (const auto& [rel, gg] : kRootMap) to_release[gg] = rel;
  const int64_t L = f32.get_u32("deepseek4.block_count"), E = f32.get_u32("deepseek4.expert_count");
  for (int64_t il = 0; il < L; ++il)
    for (const auto& [rel, gg] : kLayerMap)
      to_release["blk." + std::to_string(il) + "." + gg] = "layers." + std::to_string(il) + "." + rel;
  const std::set<std::string> fp8 = {"blk.1.attn_q_b.weight", "blk.1.attn_output_b.weight", "blk.3.ffn_up_shexp.weight"};
  for (const GgufTensorInfo& t : f32.tensors()) {
    const std::vector<int64_t> hf(t.shape.rbegin(), t.shape.rend());
    const std::string& gg = t.name;
    if (gg.find("_exps.") != std::string::npos) {
      const GgufTensorInfo* m = mx.find_tensor(gg);
      REQUIRE(m);
      const std::string w = gg.find("gate") != std::string::npos ? "w1" : gg.find("down") != std::string::npos ? "w2" : "w3";
      const int64_t cols = t.shape[0], rows = t.shape[1];
      const size_t per = ggml_row_size(GgmlType::MXFP4, cols) * size_t(rows);
      for (int64_t e = 0; e < E; ++e)
        add_fp4_expert(st, "layers." + gg.substr(4, gg.find('.', 4) - 4) + ".ffn.experts." + std::to_string(e) + "." + w + ".weight",
                       m->data + e * per, rows, cols);
      continue;
    }
    REQUIRE_MESSAGE(to_release.count(gg), gg);
    const std::string rel = to_release[gg];
    if (t.type == GgmlType::I32) {  // tid2eid, stored I64 as torch would
      std::vector<int64_t> v(static_cast<size_t>(t.n_elements));
      for (size_t i = 0; i < v.size(); ++i) v[i] = reinterpret_cast<const int32_t*>(t.data)[i];
      st.push_back({rel, "I64", hf, bytes_of(v)});
      continue;
    }
    const std::vector<float> x = gguf_f32(t);
    if (fp8.count(gg)) {
      add_fp8(st, rel, x, hf[0], hf[1], b.fp8_values[gg]);
    } else if (gg == "blk.2.attn_q_a.weight") {
      std::vector<uint16_t> h(x.size());
      for (size_t i = 0; i < x.size(); ++i) h[i] = fp32_to_bf16(x[i]);
      st.push_back({rel, "BF16", hf, bytes_of(h)});
      b.bf16[gg] = rel;
    } else {
      st.push_back({rel, "F32", hf, bytes_of(x)});
    }
  }
  // What the converter must skip: the MTP module, a hash layer's unused bias.
  if (with_mtp) add_mtp_module(st, f32, mx, b);
  else st.push_back({"mtp.0.enorm.weight", "F32", {256}, bytes_of(std::vector<float>(256, 1.0f))});
  st.push_back({"layers.0.ffn.gate.bias", "F32", {E}, bytes_of(std::vector<float>(size_t(E), 0.0f))});
  // Two shards with an index, as the release.
  const size_t half = st.size() / 2;
  test::write_safetensors(b.dir + "/model-00001-of-00002.safetensors", {st.begin(), st.begin() + long(half)});
  test::write_safetensors(b.dir + "/model-00002-of-00002.safetensors", {st.begin() + long(half), st.end()});
  nlohmann::json index, map = nlohmann::json::object();
  for (size_t i = 0; i < st.size(); ++i) map[st[i].name] = i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  index["metadata"] = {{"total_size", 0}};
  index["weight_map"] = map;
  std::ofstream(b.dir + "/model.safetensors.index.json") << index.dump(1);

  auto u = [&](const char* k) { return int64_t(f32.get_u32(std::string("deepseek4.") + k)); };
  nlohmann::json c = {
      {"architectures", {"DeepseekV4ForCausalLM"}}, {"model_type", "deepseek_v4"},
      {"vocab_size", u("vocab_size")}, {"hidden_size", u("embedding_length")}, {"num_hidden_layers", L},
      {"num_attention_heads", u("attention.head_count")}, {"num_key_value_heads", 1},
      {"head_dim", u("attention.key_length")}, {"qk_rope_head_dim", u("rope.dimension_count")},
      {"q_lora_rank", u("attention.q_lora_rank")}, {"o_groups", u("attention.output_group_count")},
      {"o_lora_rank", u("attention.output_lora_rank")}, {"sliding_window", u("attention.sliding_window")},
      {"compress_ratios", f32.get_i32_array("deepseek4.attention.compress_ratios")},
      {"compress_rope_theta", 160000.0}, {"rope_theta", 10000.0},
      {"index_n_heads", u("attention.indexer.head_count")}, {"index_head_dim", u("attention.indexer.key_length")},
      {"index_topk", u("attention.indexer.top_k")}, {"hc_mult", u("hyper_connection.count")},
      {"hc_sinkhorn_iters", u("hyper_connection.sinkhorn_iterations")}, {"hc_eps", 1e-6},
      {"n_routed_experts", E}, {"num_experts_per_tok", u("expert_used_count")},
      {"moe_intermediate_size", u("expert_feed_forward_length")}, {"n_shared_experts", u("expert_shared_count")},
      {"num_hash_layers", u("hash_layer_count")}, {"routed_scaling_factor", 1.5}, {"norm_topk_prob", true},
      {"scoring_func", "sqrtsoftplus"}, {"swiglu_limit", 10.0}, {"rms_norm_eps", 1e-6},
      {"max_position_embeddings", u("context_length")}, {"num_nextn_predict_layers", 1},
      {"bos_token_id", 0}, {"eos_token_id", 1}};
  std::ofstream(b.dir + "/config.json") << c.dump(1);
  // The release's tokenizer has no chat template (DeepSeek ships an encoding script).
  fs::copy_file(hf_tokenizer_dir + "/tokenizer.json", b.dir + "/tokenizer.json");
  nlohmann::json tc = nlohmann::json::parse(std::ifstream(hf_tokenizer_dir + "/tokenizer_config.json"));
  tc.erase("chat_template");
  std::ofstream(b.dir + "/tokenizer_config.json") << tc.dump(1);
  return b;
}

struct Fixtures {
  std::string mx_path, tok_dir;
  GgufFile f32, mx;
};

// tiny-dsv4 (f32, MXFP4_MOE) and hf-tiny-dsv3's tokenizer, or nothing (skipped).
std::optional<Fixtures> fixtures() {
  const std::string f32 = test::shared_fixture("models/tiny-dsv4.f32.gguf");
  const std::string mx = test::shared_fixture("models/tiny-dsv4.MXFP4_MOE.gguf");
  const std::string tok = test::shared_fixture("hf/hf-tiny-dsv3");
  if (f32.empty() || mx.empty() || tok.empty()) return std::nullopt;
  return Fixtures{mx, tok, GgufFile::open(f32), GgufFile::open(mx)};
}

}  // namespace

TEST_CASE("moe-convert: a DeepSeek-V4 checkpoint (FP8 weights, FP4 experts) gives llama.cpp's deepseek4 layout") {
  const std::optional<Fixtures> fx = fixtures();
  if (!fx) return test::skip("tiny-dsv4 / hf-tiny-dsv3 fixtures not found");
  const GgufFile &f32 = fx->f32, &mx = fx->mx;
  const std::string& mx_path = fx->mx_path;
  const BuiltCheckpoint ck = build_checkpoint(f32, mx, fx->tok_dir);
  const std::string out = test::temp_dir() + "/converted-dsv4.gguf";
  const auto r = test::run_command({test::bin_dir() + "/moe-convert", ck.dir, "-o", out, "-t", "2"});
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("skipped 1 MTP tensors") != std::string::npos);
  const GgufFile g = GgufFile::open(out);

  // Every deepseek4.* key and the tokenizer's vocabulary as the fixture has them.
  for (const GgufKv& kv : f32.metadata()) {
    if (kv.key.rfind("deepseek4.", 0) != 0 && kv.key.rfind("tokenizer.ggml.", 0) != 0) continue;
    CAPTURE(kv.key);
    REQUIRE(g.find(kv.key));
    CHECK(*g.find(kv.key) == kv.value);
  }
  CHECK(g.get_u32("general.file_type") == 38);  // MOSTLY_MXFP4_MOE, as llama.cpp's converter
  // No template in the checkpoint: DeepSeek-V4's, as llama.cpp's converter adds it.
  const std::vector<uint8_t> v4 = test::read_file(std::string(MOE_MODELS_DIR) + "/templates/deepseek-v4.jinja");
  CHECK(g.get_string("tokenizer.chat_template") == std::string(v4.begin(), v4.end()));

  // Every tensor: the fixture's names and shapes; bytes by source type.
  REQUIRE(g.tensors().size() == f32.tensors().size());
  for (const GgufTensorInfo& want : f32.tensors()) {
    CAPTURE(want.name);
    const GgufTensorInfo* got = g.find_tensor(want.name);
    REQUIRE(got);
    CHECK(got->shape == want.shape);
    auto same_bytes = [](const GgufTensorInfo& a, const GgufTensorInfo& b) {
      return a.nbytes == b.nbytes && std::memcmp(a.data, b.data, a.nbytes) == 0;
    };
    if (want.name.find("_exps.") != std::string::npos) {
      CHECK(got->type == GgmlType::MXFP4);
      CHECK(same_bytes(*got, *mx.find_tensor(want.name)));  // FP4 -> MXFP4 moves bits only
    } else if (ck.fp8_values.count(want.name)) {
      CHECK(got->type == GgmlType::Q8_0);
      const std::vector<float>& src = ck.fp8_values.at(want.name);
      const std::vector<float> back = gguf_f32(*got);
      for (size_t i = 0; i < src.size(); i += 32) {
        float amax = 0, worst = 0;
        for (size_t j = i; j < i + 32; ++j) amax = std::max(amax, std::fabs(src[j]));
        for (size_t j = i; j < i + 32; ++j) worst = std::max(worst, std::fabs(back[j] - src[j]));
        REQUIRE(worst <= amax / 127.0f * 0.51f + 1e-7f);  // Q8_0 rounding of the FP8 values, no more
      }
    } else if (ck.bf16.count(want.name)) {
      CHECK(got->type == GgmlType::BF16);
      const std::vector<float> a = gguf_f32(*got), w = gguf_f32(want);
      for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == bf16_to_fp32(fp32_to_bf16(w[i])));
    } else {
      CHECK(got->type == want.type);  // F32 stays F32, the table I32
      CHECK(same_bytes(*got, want));
    }
  }

  // It loads and runs. The bytes above carry the correctness; the logits are
  // a bug catcher against llama.cpp's for the MXFP4_MOE fixture, which has
  // the same experts but Q8_0 where this file has F32, FP8 and BF16 (this
  // random model is sensitive: measured top-1 0.89, mean KL 0.069).
  const auto j = nlohmann::json::parse(std::ifstream(mx_path.substr(0, mx_path.size() - 5) + ".json"));
  const std::vector<int32_t> prompt = j["prompt_tokens"].get<std::vector<int32_t>>();
  const auto m = Deepseek4Model::load(out);
  Deepseek4Session s(*m, 256, 256, 2);
  const int64_t V = s.n_vocab();
  std::vector<float> logits(prompt.size() * size_t(V));
  s.forward(prompt.data(), int64_t(prompt.size()), logits.data(), true);
  {
    const std::vector<uint8_t> ref_bytes = test::read_file(mx_path.substr(0, mx_path.size() - 5) + ".prefill.f32");
    const float* ref = reinterpret_cast<const float*>(ref_bytes.data());
    const test::LogitAgreement a = test::logit_agreement(ref, logits.data(), int64_t(prompt.size()), V);
    CHECK(a.top1 >= 0.85);
    CHECK(a.mean_kl <= 0.1);
  }
}

TEST_CASE("moe-convert: a DeepSeek-V4 checkpoint with a tensor missing, unknown or mis-shaped is refused by name") {
  const std::optional<Fixtures> fx = fixtures();
  if (!fx) return test::skip("tiny-dsv4 / hf-tiny-dsv3 fixtures not found");
  const GgufFile &f32 = fx->f32, &mx = fx->mx;
  const BuiltCheckpoint ck = build_checkpoint(f32, mx, fx->tok_dir);
  // The checkpoint with its config.json changed by `edit`, converted.
  auto convert_edited = [&](const char* name, const std::function<void(nlohmann::json&)>& edit) {
    const std::string dir = test::temp_dir() + "/" + name;
    fs::remove_all(dir);
    fs::copy(ck.dir, dir);
    nlohmann::json c = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
    edit(c);
    std::ofstream(dir + "/config.json") << c.dump(1);
    return test::run_command({test::bin_dir() + "/moe-convert", dir, "-o", test::temp_dir() + "/bad-dsv4.gguf"});
  };
  // More layers in the config than the checkpoint has.
  const auto more = convert_edited("hf-tiny-dsv4-layers", [](nlohmann::json& c) {
    c["num_hidden_layers"] = 5;
    c["compress_ratios"].push_back(0);
  });
  CHECK(more.exit_code != 0);
  CHECK(more.err.find("'layers.4.") != std::string::npos);
  CHECK(more.err.find("is missing") != std::string::npos);
  // Fewer layers in the config: layer 3's tensors are not part of the layout.
  const auto fewer = convert_edited("hf-tiny-dsv4-fewer", [](nlohmann::json& c) { c["num_hidden_layers"] = 3; });
  CHECK(fewer.exit_code != 0);
  CHECK(fewer.err.find("tensor 'layers.3.") != std::string::npos);
  CHECK(fewer.err.find("not part of DeepSeek-V4's layout") != std::string::npos);
  // Experts of another width than the tensors have.
  const auto width = convert_edited("hf-tiny-dsv4-experts", [](nlohmann::json& c) { c["moe_intermediate_size"] = 96; });
  CHECK(width.exit_code != 0);
  CHECK(width.err.find("has shape") != std::string::npos);
  CHECK(!fs::exists(test::temp_dir() + "/bad-dsv4.gguf"));
}

// --mtp-companion: the module in ik_llama.cpp's companion layout, loadable
// beside the converted model (moe -md), its bytes as the sources give them.
TEST_CASE("moe-convert --mtp-companion: DeepSeek-V4's MTP module as a companion GGUF that drafts beside the model") {
  const std::optional<Fixtures> fx = fixtures();
  if (!fx) return test::skip("tiny-dsv4 / hf-tiny-dsv3 fixtures not found");
  const GgufFile &f32 = fx->f32, &mx = fx->mx;
  const BuiltCheckpoint ck = build_checkpoint(f32, mx, fx->tok_dir, true);
  const std::string out = test::temp_dir() + "/converted-dsv4-mtp.gguf", comp = test::temp_dir() + "/converted-dsv4-mtp-c.gguf";
  const auto r = test::run_command({test::bin_dir() + "/moe-convert", ck.dir, "-o", out, "--mtp-companion", comp, "-t", "2"});
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const GgufFile c = GgufFile::open(comp);
  const int64_t L = f32.get_u32("deepseek4.block_count"), D = f32.get_u32("deepseek4.embedding_length");
  CHECK(c.get_u32("deepseek4.block_count") == L + 1);
  CHECK(c.get_u32("deepseek4.nextn_predict_layers") == 1);
  CHECK(c.get_u32("general.file_type") == 38);
  const std::string N = "blk." + std::to_string(L) + ".";
  CHECK(!c.find_tensor("blk.0.attn_norm.weight"));
  CHECK(!c.find_tensor(N + "attn_compressor_kv.weight"));  // a window-only layer
  auto same_bytes = [](const GgufTensorInfo* a, const GgufTensorInfo* b) {
    REQUIRE(a);
    REQUIRE(b);
    return a->nbytes == b->nbytes && std::memcmp(a->data, b->data, a->nbytes) == 0;
  };
  CHECK(same_bytes(c.find_tensor(N + "attn_q_a.weight"), f32.find_tensor("blk.3.attn_q_a.weight")));
  CHECK(same_bytes(c.find_tensor(N + "exp_probs_b.bias"), f32.find_tensor("blk.3.exp_probs_b.bias")));
  CHECK(same_bytes(c.find_tensor(N + "ffn_down_exps.weight"), mx.find_tensor("blk.3.ffn_down_exps.weight")));
  CHECK(same_bytes(c.find_tensor("output_hc_fn.weight"), f32.find_tensor("output_hc_fn.weight")));
  // W_eh = [W_e | W_h]: row r is e_proj's row r, then h_proj's (Q8_0 from the FP8 e_proj).
  const GgufTensorInfo* eh = c.find_tensor(N + "nextn.eh_proj.weight");
  REQUIRE(eh);
  CHECK(eh->shape == std::vector<int64_t>{2 * D, D});
  CHECK(eh->type == GgmlType::Q8_0);
  const std::vector<float> got = gguf_f32(*eh);
  double worst = 0;
  for (int64_t row = 0; row < D; ++row)
    for (int64_t i = 0; i < D; ++i) {
      worst = std::max(worst, double(std::fabs(got[size_t(row * 2 * D + i)] - ck.mtp_e[size_t(row * D + i)])));
      worst = std::max(worst, double(std::fabs(got[size_t(row * 2 * D + D + i)] - ck.mtp_h[size_t(row * D + i)])));
    }
  CHECK(worst < 2e-3);  // Q8_0 rounding of values of about 0.05, no more

  // It loads beside the converted model and drafts; a model's own file is not a companion.
  auto model = Deepseek4Model::load(out);
  model->attach_mtp(comp);
  Deepseek4Session s(*model, 64, 16, 2, 1, LatentType::kF32, true);
  const std::vector<int32_t> prompt = {0, 5, 9, 14, 3, 7};
  std::vector<float> logits(size_t(s.n_vocab()));
  s.forward(prompt.data(), int64_t(prompt.size()), logits.data(), false);
  int32_t draft = -1;
  CHECK(s.mtp_draft(0, 11, 1, &draft) == 1);
  CHECK(draft >= 0);
  CHECK_THROWS_WITH_AS(model->attach_mtp(out), doctest::Contains("is not an MTP companion"), Error);

  // A checkpoint without the module: refused before anything is written.
  const BuiltCheckpoint plain = build_checkpoint(f32, mx, fx->tok_dir);
  const std::string none = test::temp_dir() + "/converted-dsv4-none.gguf";
  const auto bad = test::run_command({test::bin_dir() + "/moe-convert", plain.dir, "-o", test::temp_dir() + "/x.gguf",
                                      "--mtp-companion", none});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("has no MTP module") != std::string::npos);
  CHECK(!fs::exists(none));
  CHECK(!fs::exists(test::temp_dir() + "/x.gguf"));
}
