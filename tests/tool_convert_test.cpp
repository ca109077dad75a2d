// moe-convert: Hugging Face DeepSeek checkpoints -> deepseek2 GGUF.
// References: the fixture GGUF that llama.cpp's layout defines for the
// hf-tiny-dsv3 checkpoint, an independent FP8 E4M3 decoder, the compiler's
// own float16 rounding, and for a V2-Lite-style checkpoint built here the
// names, shapes and keys derived by hand from convert_hf_to_gguf.py.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>

#include "convert/convert_checkpoint.h"
#include "convert/safetensors.h"
#include "core/error.h"
#include "core/fp16.h"
#include "gguf/gguf_reader.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace fs = std::filesystem;
using moe::GgufFile;
using moe::GgmlType;

namespace {

std::string hf_fixture(const char* stem) { return moe::test::shared_fixture(std::string("hf/") + stem); }

// Runs moe-convert; returns the output path (checks it succeeded).
std::string run_convert(const std::string& dir, const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {moe::test::bin_dir() + "/moe-convert", dir, "-o", out, "-t", "2"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const auto r = moe::test::run_command(argv);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return out;
}

const float* f32_data(const moe::GgufTensorInfo& t) { return reinterpret_cast<const float*>(t.data); }

// FP8 E4M3FN by the OCP definition, written independently of src/convert/fp8.h.
float e4m3_decode(uint8_t q) {
  const int s = q >> 7, e = (q >> 3) & 15, m = q & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return static_cast<float>(s ? -v : v);
}

// ---- a tiny safetensors writer, for checkpoints built by the tests ----------
struct StTensor {
  std::string name, dtype;  // "F32", "BF16", "F16"
  std::vector<int64_t> shape;
  std::vector<float> values;  // stored rounded to dtype
};

std::vector<uint8_t> encode(const StTensor& t) {
  std::vector<uint8_t> b;
  for (float v : t.values) {
    if (t.dtype == "F32") {
      uint8_t p[4];
      std::memcpy(p, &v, 4);
      b.insert(b.end(), p, p + 4);
    } else {
      const uint16_t h = t.dtype == "BF16" ? moe::fp32_to_bf16(v) : moe::fp32_to_fp16(v);
      b.push_back(static_cast<uint8_t>(h & 0xff));
      b.push_back(static_cast<uint8_t>(h >> 8));
    }
  }
  return b;
}

void write_safetensors(const std::string& path, const std::vector<StTensor>& ts) {
  std::vector<moe::test::SafetensorBytes> raw;
  for (const StTensor& t : ts) raw.push_back({t.name, t.dtype, t.shape, encode(t)});
  moe::test::write_safetensors(path, raw);
}

// Values as the stored dtype gives them back.
float round_to(const std::string& dtype, float v) {
  if (dtype == "BF16") return moe::bf16_to_fp32(moe::fp32_to_bf16(v));
  if (dtype == "F16") return static_cast<float>(static_cast<_Float16>(v));
  return v;
}

// A V2-Lite-like checkpoint (no q_lora, softmax gating, greedy top-k, no
// groups) with one MTP layer, BF16 weights, F16 norms and an F32 router.
struct V2Lite {
  static constexpr int64_t n_embd = 64, n_head = 2, nope = 32, rope = 16, vdim = 32, kv_lora = 64;
  static constexpr int64_t ff = 128, moe_ff = 32, n_exp = 4, n_shared = 2, n_layer = 2, vocab = 2060;
  std::map<std::string, StTensor> tensors;

  void add(const std::string& name, std::vector<int64_t> shape, const char* dtype, std::mt19937& rng) {
    std::normal_distribution<float> nd(0.0f, 0.1f);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    StTensor t{name, dtype, shape, std::vector<float>(static_cast<size_t>(n))};
    for (float& v : t.values) v = round_to(dtype, nd(rng));
    tensors[name] = std::move(t);
  }

  std::string build(const std::string& dir, const std::string& tokenizer_dir) {
    std::mt19937 rng(7);
    add("model.embed_tokens.weight", {vocab, n_embd}, "BF16", rng);
    add("model.norm.weight", {n_embd}, "F16", rng);
    add("lm_head.weight", {vocab, n_embd}, "BF16", rng);
    for (int il = 0; il <= n_layer; ++il) {  // il == n_layer: the MTP layer
      const std::string p = "model.layers." + std::to_string(il) + ".";
      add(p + "input_layernorm.weight", {n_embd}, "F16", rng);
      add(p + "post_attention_layernorm.weight", {n_embd}, "F16", rng);
      add(p + "self_attn.q_proj.weight", {n_head * (nope + rope), n_embd}, "BF16", rng);
      add(p + "self_attn.kv_a_proj_with_mqa.weight", {kv_lora + rope, n_embd}, "BF16", rng);
      add(p + "self_attn.kv_a_layernorm.weight", {kv_lora}, "F16", rng);
      add(p + "self_attn.kv_b_proj.weight", {n_head * (nope + vdim), kv_lora}, "BF16", rng);
      add(p + "self_attn.o_proj.weight", {n_embd, n_head * vdim}, "BF16", rng);
      if (il == 0) {
        add(p + "mlp.gate_proj.weight", {ff, n_embd}, "BF16", rng);
        add(p + "mlp.up_proj.weight", {ff, n_embd}, "BF16", rng);
        add(p + "mlp.down_proj.weight", {n_embd, ff}, "BF16", rng);
      } else {
        add(p + "mlp.gate.weight", {n_exp, n_embd}, "F32", rng);
        for (int e = 0; e < n_exp; ++e) {
          const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
          add(ep + "gate_proj.weight", {moe_ff, n_embd}, "BF16", rng);
          add(ep + "up_proj.weight", {moe_ff, n_embd}, "BF16", rng);
          add(ep + "down_proj.weight", {n_embd, moe_ff}, "BF16", rng);
        }
        add(p + "mlp.shared_experts.gate_proj.weight", {moe_ff * n_shared, n_embd}, "BF16", rng);
        add(p + "mlp.shared_experts.up_proj.weight", {moe_ff * n_shared, n_embd}, "BF16", rng);
        add(p + "mlp.shared_experts.down_proj.weight", {n_embd, moe_ff * n_shared}, "BF16", rng);
      }
      if (il == n_layer) {
        add(p + "eh_proj.weight", {n_embd, 2 * n_embd}, "BF16", rng);
        add(p + "enorm.weight", {n_embd}, "F16", rng);
        add(p + "hnorm.weight", {n_embd}, "F16", rng);
        add(p + "shared_head.norm.weight", {n_embd}, "F16", rng);
      }
    }
    std::vector<StTensor> list;
    for (auto& [n, t] : tensors) list.push_back(t);
    write_safetensors(dir + "/model.safetensors", list);
    write_config(dir, config_json());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(tokenizer_dir + "/" + f, dir + "/" + f);
    return dir;
  }

  static std::string config_json() {
    return R"({"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "vocab_size": 2060,
      "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "num_key_value_heads": 2, "n_shared_experts": 2, "n_routed_experts": 4,
      "num_experts_per_tok": 2, "routed_scaling_factor": 1.0, "kv_lora_rank": 64, "q_lora_rank": null,
      "qk_rope_head_dim": 16, "qk_nope_head_dim": 32, "v_head_dim": 32, "topk_method": "greedy",
      "n_group": null, "topk_group": null, "moe_layer_freq": 1, "first_k_dense_replace": 1,
      "norm_topk_prob": false, "scoring_func": "softmax", "max_position_embeddings": 163840,
      "rms_norm_eps": 1e-06, "rope_theta": 10000, "tie_word_embeddings": false, "bos_token_id": 0,
      "eos_token_id": 1, "num_nextn_predict_layers": 1,
      "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                       "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}})";
  }
  static void write_config(const std::string& dir, const std::string& text) {
    moe::test::write_file(dir + "/config.json", text.data(), text.size());
  }
};

template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    FAIL("no error; expected one mentioning " << *fragments.begin());
  } catch (const moe::Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const auto& frag : fragments) CHECK_MESSAGE(msg.find(frag) != std::string::npos, "missing: " << frag);
  }
}

}  // namespace

TEST_CASE("moe-convert: hf-tiny-dsv3 --outtype f32 reproduces the fixture GGUF") {
  const std::string hf = hf_fixture("hf-tiny-dsv3");
  const std::string ref_path = moe::test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || ref_path.empty()) return moe::test::skip("hf-tiny-dsv3 or tiny-dsv3.f32.gguf fixture absent");
  const std::string out = run_convert(hf, moe::test::temp_dir() + "/x.gguf", {"--outtype", "f32"});
  const GgufFile ours = GgufFile::open(out);
  const GgufFile ref = GgufFile::open(ref_path);

  // Tensors: same set, types, shapes and bit-identical data.
  CHECK(ours.tensors().size() == ref.tensors().size());
  for (const auto& rt : ref.tensors()) {
    INFO("tensor " << rt.name);
    const auto* t = ours.find_tensor(rt.name);
    REQUIRE(t != nullptr);
    CHECK(t->type == rt.type);
    CHECK(t->shape == rt.shape);
    REQUIRE(t->nbytes == rt.nbytes);
    CHECK(std::memcmp(t->data, rt.data, rt.nbytes) == 0);
  }
  // Metadata: every key of the fixture with the same value, except
  // general.name, which the converter derives from the directory name.
  for (const auto& kv : ref.metadata()) {
    INFO("key " << kv.key);
    const auto* v = ours.find(kv.key);
    REQUIRE(v != nullptr);
    if (kv.key != "general.name") CHECK(*v == kv.value);
  }
  CHECK(ours.get_string("general.name") == "hf-tiny-dsv3");
  // The converter's other general keys; nothing else is extra.
  std::set<std::string> extra;
  for (const auto& kv : ours.metadata())
    if (!ref.has(kv.key)) extra.insert(kv.key);
  CHECK(extra == std::set<std::string>{"general.type", "general.quantization_version"});
  CHECK(ours.get_string("general.type") == "model");
  CHECK(ours.get_u32("general.quantization_version") == 2);
}

TEST_CASE("moe-convert: the FP8 checkpoint dequantises exactly (independent E4M3 decode x block scale)") {
  const std::string hf = hf_fixture("hf-tiny-dsv3-fp8");
  const std::string ref_path = moe::test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || ref_path.empty()) return moe::test::skip("hf-tiny-dsv3-fp8 or tiny-dsv3.f32.gguf fixture absent");
  const std::string out = run_convert(hf, moe::test::temp_dir() + "/x.gguf", {"--outtype", "f32"});
  const GgufFile ours = GgufFile::open(out);
  const GgufFile ref = GgufFile::open(ref_path);
  const auto ckpt = moe::SafetensorsCheckpoint::open(hf);

  // value(r, c) of an HF FP8 weight, decoded here from the raw bytes.
  auto expected = [&](const std::string& name) {
    const auto& w = ckpt.tensor(name);
    const auto* s = ckpt.find_scale_inv(name);
    REQUIRE(w.dtype == moe::SafetensorsDtype::F8_E4M3);
    REQUIRE(s != nullptr);
    const int64_t rows = w.shape[0], cols = w.shape[1], scols = s->shape[1];
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float scale;
        std::memcpy(&scale, s->data + 4 * ((r / 128) * scols + c / 128), 4);
        v[r * cols + c] = e4m3_decode(w.data[r * cols + c]) * scale;
      }
    return v;
  };
  auto check_equal = [](const float* got, const std::vector<float>& want) {
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); ++i) bad += std::memcmp(&got[i], &want[i], 4) != 0;
    CHECK(bad == 0);
  };
  // Plain 2-D weights keep HF's [rows, cols] element order.
  check_equal(f32_data(ours.tensor("blk.0.attn_q_b.weight")), expected("model.layers.0.self_attn.q_b_proj.weight"));
  check_equal(f32_data(ours.tensor("blk.2.ffn_down_shexp.weight")),
              expected("model.layers.2.mlp.shared_experts.down_proj.weight"));
  // Expert 5 is the sixth slice of the merged tensor.
  {
    const auto want = expected("model.layers.1.mlp.experts.5.up_proj.weight");
    check_equal(f32_data(ours.tensor("blk.1.ffn_up_exps.weight")) + 5 * want.size(), want);
  }
  // attn_k_b[h][c][j] = kv_b[h*(64+64) + j][c]; attn_v_b[h][i][c] = kv_b[h*128 + 64 + i][c].
  {
    const auto kv = expected("model.layers.2.self_attn.kv_b_proj.weight");  // [4*128, 128]
    const float* kb = f32_data(ours.tensor("blk.2.attn_k_b.weight"));
    const float* vb = f32_data(ours.tensor("blk.2.attn_v_b.weight"));
    size_t bad = 0;
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 128; ++c)
        for (int j = 0; j < 64; ++j) {
          bad += kb[(h * 128 + c) * 64 + j] != kv[(h * 128 + j) * 128 + c];
          bad += vb[(h * 64 + j) * 128 + c] != kv[(h * 128 + 64 + j) * 128 + c];
        }
    CHECK(bad == 0);
  }
  // Against the float32 model: within half an E4M3 step (relative 2^-4, or
  // 2^-10 of the block scale for subnormals), tensor by tensor.
  for (const auto& rt : ref.tensors()) {
    INFO("tensor " << rt.name);
    const auto& t = ours.tensor(rt.name);
    REQUIRE(t.shape == rt.shape);
    const float* a = f32_data(t);
    const float* b = f32_data(rt);
    double worst = 0;
    for (int64_t i = 0; i < rt.n_elements; ++i)
      worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / std::max(std::fabs(double(b[i])), 1e-3));
    CHECK(worst <= 1.0 / 16 + 1e-6);
  }
}

TEST_CASE("moe-convert: --outtype f16 / bf16 / q8_0 choose the converter's types and bytes") {
  const std::string hf = hf_fixture("hf-tiny-dsv3");
  const std::string ref_path = moe::test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || ref_path.empty()) return moe::test::skip("hf-tiny-dsv3 or tiny-dsv3.f32.gguf fixture absent");
  const GgufFile ref = GgufFile::open(ref_path);
  // Kept in F32 by convert_hf_to_gguf.py: 1-D tensors, *_norm.weight, the router.
  auto stays_f32 = [](const moe::GgufTensorInfo& t) {
    return t.shape.size() == 1 || t.name.find("_norm.weight") != std::string::npos ||
           t.name.find("ffn_gate_inp") != std::string::npos;
  };
  const std::string dir = moe::test::temp_dir();
  struct Case { const char* outtype; GgmlType type; uint32_t ftype; };
  for (const Case& cs : {Case{"f16", GgmlType::F16, 1}, Case{"bf16", GgmlType::BF16, 32}, Case{"q8_0", GgmlType::Q8_0, 7}}) {
    INFO("outtype " << cs.outtype);
    const GgufFile ours = GgufFile::open(run_convert(hf, dir + "/" + cs.outtype + ".gguf", {"--outtype", cs.outtype}));
    CHECK(ours.get_u32("general.file_type") == cs.ftype);
    REQUIRE(ours.tensors().size() == ref.tensors().size());
    for (const auto& rt : ref.tensors()) {
      INFO("tensor " << rt.name);
      const auto& t = ours.tensor(rt.name);
      CHECK(t.shape == rt.shape);
      const float* x = f32_data(rt);
      if (stays_f32(rt)) {
        CHECK(t.type == GgmlType::F32);
        CHECK(std::memcmp(t.data, rt.data, rt.nbytes) == 0);
        continue;
      }
      REQUIRE(t.type == cs.type);
      size_t bad = 0;
      if (cs.type == GgmlType::F16) {
        const auto* h = reinterpret_cast<const uint16_t*>(t.data);
        for (int64_t i = 0; i < rt.n_elements; ++i) {
          const _Float16 want = static_cast<_Float16>(x[i]);  // the compiler's IEEE round-to-nearest-even
          uint16_t wb;
          std::memcpy(&wb, &want, 2);
          bad += h[i] != wb;
        }
      } else if (cs.type == GgmlType::BF16) {
        const auto* h = reinterpret_cast<const uint16_t*>(t.data);
        for (int64_t i = 0; i < rt.n_elements; ++i) {
          uint32_t u;
          std::memcpy(&u, &x[i], 4);
          bad += h[i] != static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);  // RNE (no NaNs here)
        }
      } else {
        std::vector<uint8_t> want(t.nbytes);
        const int64_t ne0 = rt.shape[0], rows = rt.n_elements / ne0;
        const size_t rb = t.nbytes / static_cast<size_t>(rows);
        for (int64_t r = 0; r < rows; ++r) moe::quantize_row_ref(GgmlType::Q8_0, x + r * ne0, want.data() + r * rb, ne0);
        bad = std::memcmp(want.data(), t.data, t.nbytes) != 0;
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("moe-convert: a V2-Lite-style checkpoint (no q_lora, softmax, no groups, MTP) converts and runs") {
  const std::string tokdir = hf_fixture("hf-tiny-dsv3");
  if (tokdir.empty()) return moe::test::skip("hf-tiny-dsv3 fixture (tokenizer files) absent");
  const std::string dir = moe::test::temp_dir();
  V2Lite m;
  m.build(dir, tokdir);
  constexpr int64_t E = V2Lite::n_embd, H = V2Lite::n_head, NOPE = V2Lite::nope, ROPE = V2Lite::rope,
                    VD = V2Lite::vdim, KV = V2Lite::kv_lora, FF = V2Lite::ff, MFF = V2Lite::moe_ff,
                    NE = V2Lite::n_exp, V = V2Lite::vocab;

  for (bool mtp : {true, false}) {
    INFO("mtp " << mtp);
    const std::string out = dir + (mtp ? "/mtp.gguf" : "/nomtp.gguf");
    std::vector<std::string> extra = {"--outtype", "f32"};
    if (!mtp) extra.push_back("--no-mtp");
    const GgufFile g = GgufFile::open(run_convert(dir, out, extra));

    // Names and ggml shapes, derived by hand from convert_hf_to_gguf.py / tensor_mapping.py.
    std::map<std::string, std::vector<int64_t>> want = {
        {"token_embd.weight", {E, V}}, {"output_norm.weight", {E}}, {"output.weight", {E, V}}};
    const int n_blk = mtp ? 3 : 2;
    for (int il = 0; il < n_blk; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      want[b + "attn_norm.weight"] = {E};
      want[b + "ffn_norm.weight"] = {E};
      want[b + "attn_q.weight"] = {E, H * (NOPE + ROPE)};
      want[b + "attn_kv_a_mqa.weight"] = {E, KV + ROPE};
      want[b + "attn_kv_a_norm.weight"] = {KV};
      want[b + "attn_k_b.weight"] = {NOPE, KV, H};
      want[b + "attn_v_b.weight"] = {KV, VD, H};
      want[b + "attn_output.weight"] = {H * VD, E};
      if (il == 0) {
        want[b + "ffn_gate.weight"] = {E, FF};
        want[b + "ffn_up.weight"] = {E, FF};
        want[b + "ffn_down.weight"] = {FF, E};
      } else {
        want[b + "ffn_gate_inp.weight"] = {E, NE};
        want[b + "ffn_gate_exps.weight"] = {E, MFF, NE};
        want[b + "ffn_up_exps.weight"] = {E, MFF, NE};
        want[b + "ffn_down_exps.weight"] = {MFF, E, NE};
        want[b + "ffn_gate_shexp.weight"] = {E, 2 * MFF};
        want[b + "ffn_up_shexp.weight"] = {E, 2 * MFF};
        want[b + "ffn_down_shexp.weight"] = {2 * MFF, E};
      }
      if (il == 2) {
        want[b + "nextn.eh_proj.weight"] = {2 * E, E};
        want[b + "nextn.enorm.weight"] = {E};
        want[b + "nextn.hnorm.weight"] = {E};
        want[b + "nextn.shared_head_norm.weight"] = {E};
      }
    }
    std::map<std::string, std::vector<int64_t>> got;
    for (const auto& t : g.tensors()) got[t.name] = t.shape;
    CHECK(got == want);

    // Metadata the converter writes for this config.
    CHECK(g.get_u32("deepseek2.block_count") == static_cast<uint32_t>(n_blk));
    if (mtp) CHECK(g.get_u32("deepseek2.nextn_predict_layers") == 1);
    else CHECK_FALSE(g.has("deepseek2.nextn_predict_layers"));
    CHECK_FALSE(g.has("deepseek2.attention.q_lora_rank"));
    CHECK_FALSE(g.has("deepseek2.expert_group_count"));
    CHECK_FALSE(g.has("deepseek2.expert_group_used_count"));
    CHECK_FALSE(g.has("deepseek2.expert_weights_norm"));
    CHECK(g.get_u32("deepseek2.expert_gating_func") == 1);  // softmax
    CHECK(g.get_f32("deepseek2.expert_weights_scale") == 1.0f);
    CHECK(g.get_u32("deepseek2.attention.kv_lora_rank") == 64);
    CHECK(g.get_u32("deepseek2.attention.key_length") == 64 + 16);
    CHECK(g.get_u32("deepseek2.attention.value_length") == 64);
    CHECK(g.get_u32("deepseek2.attention.key_length_mla") == 48);
    CHECK(g.get_u32("deepseek2.attention.value_length_mla") == 32);
    CHECK(g.get_u32("deepseek2.attention.head_count") == 2);
    CHECK(g.get_u32("deepseek2.attention.head_count_kv") == 1);
    CHECK(g.get_u32("deepseek2.expert_count") == 4);
    CHECK(g.get_u32("deepseek2.expert_used_count") == 2);
    CHECK(g.get_u32("deepseek2.expert_shared_count") == 2);
    CHECK(g.get_u32("deepseek2.expert_feed_forward_length") == 32);
    CHECK(g.get_u32("deepseek2.feed_forward_length") == 128);
    CHECK(g.get_u32("deepseek2.leading_dense_block_count") == 1);
    CHECK(g.get_u32("deepseek2.rope.dimension_count") == 16);
    CHECK(g.get_f32("deepseek2.rope.scaling.yarn_log_multiplier") == static_cast<float>(0.1 * 0.707));
    CHECK(g.get_string("deepseek2.rope.scaling.type") == "yarn");
    CHECK(g.get_string("tokenizer.ggml.pre") == "deepseek-v3");

    // Values: BF16/F16 sources widen exactly; k_b is kv_b's nope rows transposed per head.
    const float* q = f32_data(g.tensor("blk.1.attn_q.weight"));
    CHECK(std::memcmp(q, m.tensors["model.layers.1.self_attn.q_proj.weight"].values.data(), 4 * 96 * 64) == 0);
    const auto& kv = m.tensors["model.layers.1.self_attn.kv_b_proj.weight"].values;
    const float* kb = f32_data(g.tensor("blk.1.attn_k_b.weight"));
    size_t bad = 0;
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < KV; ++c)
        for (int j = 0; j < NOPE; ++j) bad += kb[(h * KV + c) * NOPE + j] != kv[(h * (NOPE + VD) + j) * KV + c];
    CHECK(bad == 0);
    const auto& e3 = m.tensors["model.layers.1.mlp.experts.3.down_proj.weight"].values;
    CHECK(std::memcmp(f32_data(g.tensor("blk.1.ffn_down_exps.weight")) + 3 * E * MFF, e3.data(), 4 * E * MFF) == 0);

    // Our runtime loads and runs it.
    const auto r = moe::test::run_command({moe::test::bin_dir() + "/moe", "-m", out, "-p", "hi", "-n", "4"});
    INFO("moe stderr: " << r.err);
    CHECK(r.exit_code == 0);
  }
}

TEST_CASE("moe-convert: bad checkpoints give errors naming the file, tensor or key") {
  const std::string tokdir = hf_fixture("hf-tiny-dsv3");
  if (tokdir.empty()) return moe::test::skip("hf-tiny-dsv3 fixture (tokenizer files) absent");
  const std::string base = moe::test::temp_dir();
  moe::ConvertOptions o;
  auto fresh = [&](const std::string& name) {
    const std::string d = base + "/" + name;
    fs::create_directories(d);
    V2Lite().build(d, tokdir);
    return d;
  };
  {
    const std::string d = fresh("arch");
    std::string cfg = V2Lite::config_json();
    cfg.replace(cfg.find("DeepseekV2ForCausalLM"), 21, "LlamaForCausalLM");
    V2Lite::write_config(d, cfg);
    expect_error([&] { moe::convert_hf_checkpoint(d, d + "/o.gguf", o); }, {"config.json", "LlamaForCausalLM"});
  }
  {
    const std::string d = fresh("json");
    V2Lite::write_config(d, "{\"architectures\": [\"DeepseekV2ForCausalLM\"], ");
    expect_error([&] { moe::convert_hf_checkpoint(d, d + "/o.gguf", o); }, {"config.json", "JSON"});
  }
  {
    const std::string d = fresh("key");
    std::string cfg = V2Lite::config_json();
    cfg.replace(cfg.find("\"kv_lora_rank\": 64"), 18, "\"kv_lora_rank\": \"x\"");
    V2Lite::write_config(d, cfg);
    expect_error([&] { moe::convert_hf_checkpoint(d, d + "/o.gguf", o); }, {"config.json", "kv_lora_rank"});
  }
  {
    // A config that disagrees with the tensors: the shape error names the tensor.
    const std::string d = fresh("shape");
    std::string cfg = V2Lite::config_json();
    cfg.replace(cfg.find("\"intermediate_size\": 128"), 24, "\"intermediate_size\": 96");
    V2Lite::write_config(d, cfg);
    expect_error([&] { moe::convert_hf_checkpoint(d, d + "/o.gguf", o); }, {"model.layers.0.mlp.down_proj.weight", "expected [64, 96]"});
    CHECK_FALSE(fs::exists(d + "/o.gguf"));
  }
  {
    // One more layer than the file has: the missing tensor is named.
    const std::string d = fresh("missing");
    std::string cfg = V2Lite::config_json();
    cfg.replace(cfg.find("\"num_hidden_layers\": 2"), 22, "\"num_hidden_layers\": 4");
    V2Lite::write_config(d, cfg);
    expect_error([&] { moe::convert_hf_checkpoint(d, d + "/o.gguf", o); }, {"model.layers.3.", "missing"});
  }
}
