// moe-synth: random weights in the exact layout and types of a real file.
// The independent reference is llama.cpp: the fixture tiny-dsv3.Q4_K_M.gguf
// was converted by llama.cpp's converter from hf-tiny-dsv3 and quantized by
// llama-quantize, so a synthesized file of the same config must have its
// tensor names, shapes, order and types, and its deepseek2.* metadata.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "convert/deepseek2_gguf_layout.h"
#include "convert/hf_config.h"
#include "gguf/gguf_reader.h"
#include "model/deepseek2.h"
#include "test_util.h"

using namespace moe;

namespace {

test::CommandResult synth(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {test::bin_dir() + "/moe-synth"};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv);
}

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

uint64_t tensor_data_hash(const std::string& path) {
  const GgufFile f = GgufFile::open(path);
  uint64_t h = 0;
  for (const GgufTensorInfo& t : f.tensors()) h = h * 31 + fnv1a(t.data, t.nbytes);
  return h;
}

}  // namespace

TEST_CASE("moe-synth: hf-tiny-dsv3's config gives llama.cpp's layout and Q4_K_M types") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string ref_path = test::shared_fixture("models/tiny-dsv3.Q4_K_M.gguf");
  if (hf.empty() || ref_path.empty()) return test::skip("hf-tiny-dsv3 / tiny-dsv3.Q4_K_M.gguf fixtures not found");
  const std::string out = test::temp_dir() + "/synth.gguf";
  // The fixture's own tokenizer, so the vocabulary (and so the shapes) match.
  const auto r = synth({"--config", hf, "--vocab", ref_path, "--type", "Q4_K_M", "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const GgufFile got = GgufFile::open(out), ref = GgufFile::open(ref_path);
  REQUIRE(got.tensors().size() == ref.tensors().size());
  for (size_t i = 0; i < ref.tensors().size(); ++i) {
    const GgufTensorInfo &a = got.tensors()[i], &b = ref.tensors()[i];
    CAPTURE(b.name);
    CHECK(a.name == b.name);
    CHECK(a.shape == b.shape);
    CHECK(a.type == b.type);
  }
  for (const GgufKv& kv : ref.metadata()) {
    if (kv.key.rfind("deepseek2.", 0) != 0 && kv.key.rfind("tokenizer.", 0) != 0 && kv.key != "general.file_type")
      continue;
    CAPTURE(kv.key);
    const GgufValue* v = got.find(kv.key);
    REQUIRE(v != nullptr);
    CHECK(*v == kv.value);
  }
  // And it runs.
  auto model = Deepseek2Model::load(out);
  Deepseek2Session s(*model, 64, 16, 1);
  const int32_t toks[4] = {1, 5, 9, 200};
  std::vector<float> logits(static_cast<size_t>(model->config().vocab_size));
  s.forward(toks, 4, logits.data(), false);
  for (float x : logits) REQUIRE(std::isfinite(x));
}

TEST_CASE("moe-synth: deterministic by seed, different across seeds") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string vocab = test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || vocab.empty()) return test::skip("hf-tiny-dsv3 fixture not found");
  const std::string dir = test::temp_dir();
  for (const char* name : {"a", "b", "c"}) {
    const std::string seed = std::string(name) == "c" ? "2" : "1";
    const auto r = synth({"--config", hf, "--vocab", vocab, "--type", "Q8_0", "--seed", seed, "-o", dir + "/" + name + ".gguf"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  CHECK(test::read_file(dir + "/a.gguf") == test::read_file(dir + "/b.gguf"));
  CHECK(tensor_data_hash(dir + "/a.gguf") != tensor_data_hash(dir + "/c.gguf"));
}

TEST_CASE("moe-synth: --hot-experts skews routing towards a few experts") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string vocab = test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || vocab.empty()) return test::skip("hf-tiny-dsv3 fixture not found");
  const std::string dir = test::temp_dir();
  auto max_over_mean = [&](const std::string& path) {
    auto model = Deepseek2Model::load(path);
    const Deepseek2Config& c = model->config();
    Deepseek2Session s(*model, 256, 256, 1);
    std::vector<int32_t> toks(200);
    for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 7919) % static_cast<size_t>(c.vocab_size));
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    s.forward(toks.data(), static_cast<int64_t>(toks.size()), logits.data(), false);
    double worst = 0;
    const int64_t E = c.n_routed_experts;
    for (int64_t il = c.first_k_dense_replace; il < c.num_hidden_layers; ++il) {
      uint64_t mx = 0, total = 0;
      for (int64_t e = 0; e < E; ++e) {
        const uint64_t n = s.expert_counts()[static_cast<size_t>(il * E + e)];
        mx = std::max(mx, n);
        total += n;
      }
      REQUIRE(total == toks.size() * static_cast<size_t>(c.num_experts_per_tok));
      worst = std::max(worst, static_cast<double>(mx) * static_cast<double>(E) / static_cast<double>(total));
    }
    return worst;
  };
  REQUIRE(synth({"--config", hf, "--vocab", vocab, "--type", "Q8_0", "-o", dir + "/flat.gguf"}).exit_code == 0);
  REQUIRE(synth({"--config", hf, "--vocab", vocab, "--type", "Q8_0", "--hot-experts", "zipf:1.5", "-o", dir + "/hot.gguf"})
              .exit_code == 0);
  const double flat = max_over_mean(dir + "/flat.gguf"), hot = max_over_mean(dir + "/hot.gguf");
  MESSAGE("busiest expert / mean load: uniform " << flat << ", zipf:1.5 " << hot);
  CHECK(hot > 1.5 * flat);
}

TEST_CASE("moe-synth: bad arguments are clear errors") {
  const std::string out = test::temp_dir() + "/x.gguf";
  auto r = synth({"--config", "v9", "-o", out});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("v9") != std::string::npos);
  r = synth({"--config", "v2-lite", "--type", "Q7_K", "-o", out});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("Q7_K") != std::string::npos);
  r = synth({"--config", "v2-lite", "--layers", "99", "-o", out});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("--layers") != std::string::npos);
  r = synth({"--config", "v2-lite", "--hot-experts", "pareto:2", "-o", out});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("zipf") != std::string::npos);
}

// The shapes of two models that run on the deepseek2 graph.
TEST_CASE("moe-synth: the built-in kimi-k2 and glm-4.7-flash configs") {
  const auto read = [](const std::string& name) {
    const std::string path = std::string(MOE_MODELS_DIR) + "/configs/" + name;
    const std::vector<uint8_t> b = test::read_file(path);
    return parse_hf_config(std::string(b.begin(), b.end()), path);
  };
  const HfConfig kimi = read("kimi-k2.json");
  CHECK(kimi.n_routed_experts == 384);
  CHECK(kimi.num_experts_per_tok == 8);
  CHECK(kimi.n_group == 1);
  CHECK(kimi.num_attention_heads == 64);
  const HfConfig glm = read("glm-4.7-flash.json");
  CHECK(glm.architecture == "Glm4MoeLiteForCausalLM");
  CHECK(glm.n_routed_experts == 64);
  CHECK(glm.num_experts_per_tok == 4);
  CHECK(glm.qk_nope_head_dim == 192);
  CHECK(glm.v_head_dim == 256);
  // A GLM-4.7-Flash-shaped file with its first two layers loads and runs.
  const std::string out = test::temp_dir() + "/glm.gguf";
  const auto r = synth({"--config", "glm-4.7-flash", "--layers", "2", "--type", "Q4_0", "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto model = Deepseek2Model::load(out);
  CHECK(model->config().n_routed_experts == 64);
  Deepseek2Session s(*model, 8, 8, 2);
  const int32_t tokens[] = {1, 2, 3};
  std::vector<float> logits(static_cast<size_t>(model->config().vocab_size));
  s.forward(tokens, 3, logits.data(), false);
  CHECK(std::isfinite(logits[0]));
}

// DeepSeek-V3.2: a config with the indexer's keys gives the layout and the
// deepseek32 metadata of llama.cpp's converter (the tiny-dsv32 fixture's
// config is hf-tiny-dsv3's with smaller experts and the indexer).
TEST_CASE("moe-synth and the converter's layout: a DeepseekV32ForCausalLM config gives tiny-dsv32's tensors and keys") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string ref_path = test::shared_fixture("models/tiny-dsv32.f32.gguf");
  if (hf.empty() || ref_path.empty()) return test::skip("hf-tiny-dsv3 / tiny-dsv32.f32.gguf fixtures not found");
  const std::vector<uint8_t> text = test::read_file(hf + "/config.json");
  auto config = nlohmann::json::parse(text.begin(), text.end());
  config["architectures"] = {"DeepseekV32ForCausalLM"};
  config["intermediate_size"] = 256;
  config["moe_intermediate_size"] = 128;
  config["n_routed_experts"] = 8;
  config["num_experts_per_tok"] = 2;
  config["index_n_heads"] = 4;
  config["index_head_dim"] = 64;
  config["index_topk"] = 16;
  const std::string dir = test::temp_dir(), cfg = dir + "/config.json", out = dir + "/v32.gguf";
  const std::string dumped = config.dump();
  test::write_file(cfg, dumped.data(), dumped.size());
  const auto r = synth({"--config", cfg, "--vocab", ref_path, "--type", "F32", "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const GgufFile got = GgufFile::open(out), ref = GgufFile::open(ref_path);
  std::set<std::tuple<std::string, std::vector<int64_t>, GgmlType>> a, b;
  for (const auto& t : got.tensors()) a.insert({t.name, t.shape, t.type});
  for (const auto& t : ref.tensors()) b.insert({t.name, t.shape, t.type});
  CHECK(a == b);
  for (const GgufKv& kv : ref.metadata()) {
    if (kv.key.rfind("deepseek32.", 0) != 0) continue;
    CAPTURE(kv.key);
    const GgufValue* v = got.find(kv.key);
    REQUIRE(v != nullptr);
    CHECK(*v == kv.value);
  }
  CHECK(deepseek2_tensor_name("model.layers.2.self_attn.indexer.weights_proj.weight", 3) == "blk.2.indexer.proj.weight");
  CHECK(deepseek2_tensor_name("model.layers.0.self_attn.indexer.k_norm.bias", 3) == "blk.0.indexer.k_norm.bias");
  auto model = Deepseek2Model::load(out);
  CHECK(model->config().has_indexer());
  Deepseek2Session s(*model, 64, 16, 1);
  const int32_t toks[20] = {1, 5, 9, 200, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22};
  std::vector<float> logits(static_cast<size_t>(model->config().vocab_size));
  s.forward(toks, 20, logits.data(), false);
  for (float x : logits) REQUIRE(std::isfinite(x));
}

// A cut inside the leading dense layers is a file of dense layers only
// (it used to keep leading_dense_block_count above block_count, which the
// loader refuses).
TEST_CASE("moe-synth: --layers inside the dense lead writes a file that loads") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  const std::string vocab = test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (hf.empty() || vocab.empty()) return test::skip("hf-tiny-dsv3 fixture not found");
  const std::string out = test::temp_dir() + "/one.gguf";
  const auto r = synth({"--config", hf, "--vocab", vocab, "--layers", "1", "--type", "Q8_0", "-o", out});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(GgufFile::open(out).get_u32("deepseek2.leading_dense_block_count") == 1);
  auto model = Deepseek2Model::load(out);
  CHECK(model->config().num_hidden_layers == 1);
}

// DeepSeek-V4: a config of tiny-dsv4's shape gives the tensors, shapes and
// deepseek4.* keys llama.cpp's converter wrote for that fixture, and the
// file runs (moe and moe-bench).
TEST_CASE("moe-synth: a DeepseekV4ForCausalLM config gives tiny-dsv4's tensors and keys, and the file runs") {
  const std::string fixture = test::shared_fixture("models/tiny-dsv4.f32.gguf");
  if (fixture.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const std::string dir = test::temp_dir();
  const nlohmann::json config = test::tiny_dsv4_config();
  test::write_file(dir + "/config.json", config.dump().data(), config.dump().size());
  const std::string out = dir + "/v4.gguf";
  const auto r = synth({"--config", dir + "/config.json", "--vocab", fixture, "-o", out, "--type", "F32"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  const GgufFile ref = GgufFile::open(fixture), ours = GgufFile::open(out);
  CHECK(ours.tensors().size() == ref.tensors().size());
  for (const GgufTensorInfo& t : ref.tensors()) {
    const GgufTensorInfo* o = ours.find_tensor(t.name);
    CAPTURE(t.name);
    REQUIRE(o != nullptr);
    CHECK(o->shape == t.shape);
    CHECK(o->type == t.type);  // f32, and the hash table's i32
  }
  for (const GgufKv& kv : ref.metadata()) {
    if (kv.key.rfind("deepseek4.", 0) != 0) continue;
    CAPTURE(kv.key);
    const GgufValue* v = ours.find(kv.key);
    REQUIRE(v != nullptr);
    CHECK(v->to_string() == kv.value.to_string());
  }

  const auto run = test::run_command({test::bin_dir() + "/moe", "-m", out, "-p", "Hello", "-n", "4", "--temp", "0"});
  CHECK(run.exit_code == 0);
  const auto bench = test::run_command({test::bin_dir() + "/moe-bench", "-m", out, "-p", "16", "-n", "4", "-r", "1",
                                        "-t", "2", "-o", "jsonl"});
  INFO(bench.err);
  REQUIRE(bench.exit_code == 0);
  const auto rows = test::parse_json_lines(bench.out);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["test"] == "pp16");
  CHECK(rows[1]["avg_ts"].get<double>() > 0.0);
}
