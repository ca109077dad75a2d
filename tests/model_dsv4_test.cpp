// DeepSeek-V4 (deepseek4): what the logits comparison against llama.cpp
// (model_conformance_test, tiny-dsv4.*) does not pin down on its own — the
// prompt in chunks, the sequence operations, the indexer's part, layer kinds
// llama.cpp cannot run — and the row ops' invariants.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cpu/dsv4_ops.h"
#include "cpu/moe_route.h"
#include "cpu/ops.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/deepseek4.h"
#include "test_util.h"

using namespace moe;

namespace {

struct Fixture {
  std::string gguf;
  std::vector<int32_t> prompt, greedy;
};

// tiny-dsv4.f32 and its prompt, or gguf empty (skipped).
Fixture fixture() {
  Fixture f;
  f.gguf = test::shared_fixture("models/tiny-dsv4.f32.gguf");
  if (f.gguf.empty()) return f;
  const auto j = nlohmann::json::parse(std::ifstream(f.gguf.substr(0, f.gguf.size() - 5) + ".json"));
  f.prompt = j["prompt_tokens"].get<std::vector<int32_t>>();
  f.greedy = j["greedy_tokens"].get<std::vector<int32_t>>();
  return f;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

// Every prompt row's logits, in steps of n_batch tokens.
std::vector<float> prompt_logits(const Deepseek4Model& m, const std::vector<int32_t>& tokens, int64_t n_batch) {
  Deepseek4Session s(m, 256, n_batch, 2);
  std::vector<float> out(tokens.size() * size_t(s.n_vocab()));
  s.forward(tokens.data(), static_cast<int64_t>(tokens.size()), out.data(), true);
  return out;
}

// The logits of the last of `t`, evaluated after what s holds.
std::vector<float> last_logits(Deepseek4Session& s, const std::vector<int32_t>& t) {
  std::vector<float> out(static_cast<size_t>(s.n_vocab()));
  s.forward(t.data(), static_cast<int64_t>(t.size()), out.data(), false);
  return out;
}

// A copy of `src` with its metadata changed by `edit`.
std::string edited_copy(const std::string& src, const std::string& name,
                        const std::function<void(GgufWriter&)>& edit) {
  const GgufFile in = GgufFile::open(src);
  const std::string out = test::temp_dir() + "/" + name;
  GgufWriter w(out, in.alignment());
  for (const auto& kv : in.metadata()) w.set(kv.key, kv.value);
  edit(w);
  for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape);
  w.begin();
  for (const auto& t : in.tensors()) w.write_tensor_data(t.data, t.nbytes);
  w.finish();
  return out;
}

}  // namespace

TEST_CASE("deepseek4: a prompt in steps of 1, 7 or 64 tokens gives the logits of one step") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const auto m = Deepseek4Model::load(f.gguf);
  const std::vector<float> whole = prompt_logits(*m, f.prompt, 256);
  for (int64_t n_batch : {1, 7, 64}) {
    CAPTURE(n_batch);
    // Blocks of the compressors and the indexer's choice span steps; only
    // the products' float order changes with the batch.
    CHECK(max_abs_diff(prompt_logits(*m, f.prompt, n_batch), whole) <= 1e-4);
  }
}

TEST_CASE("deepseek4: truncate, copy and drop leave the cache a fresh evaluation would") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const auto m = Deepseek4Model::load(f.gguf);
  const int64_t V = m->config().vocab_size;
  const std::vector<int32_t> head(f.prompt.begin(), f.prompt.begin() + 150);
  const std::vector<int32_t> tail(f.prompt.begin() + 150, f.prompt.end());
  Deepseek4Session fresh(*m, 256, 64, 2);
  const std::vector<float> want = last_logits(fresh, f.prompt);

  Deepseek4Session s(*m, 256, 64, 2, 2);
  last_logits(s, f.greedy);  // something else first, then forgotten
  s.truncate(0);
  last_logits(s, f.prompt);
  s.truncate(150);  // mid-block for CSA (4) and HCA (128): rows of the cut block are rebuilt
  CHECK(s.n_past() == 150);
  CHECK(max_abs_diff(last_logits(s, tail), want) <= 1e-5);

  // Sequence 1 takes the first 150 positions of sequence 0 and goes on alone.
  s.seq_copy(0, 1, 150);
  CHECK(s.seq_pos(1) == 150);
  std::vector<float> row(static_cast<size_t>(V));
  s.forward_spans(tail.data(), {SeqSpan{1, static_cast<int64_t>(tail.size()), true, false}}, row.data());
  CHECK(max_abs_diff(row, want) <= 1e-5);

  // Dropping [1, 11) leaves what evaluating the prompt without them gives.
  std::vector<int32_t> shifted(f.prompt);
  shifted.erase(shifted.begin() + 1, shifted.begin() + 11);
  s.seq_drop(0, 1, 11);
  CHECK(s.n_past() == static_cast<int64_t>(shifted.size()));
  const std::vector<float> after = last_logits(s, {f.greedy[0]});
  shifted.push_back(f.greedy[0]);
  Deepseek4Session again(*m, 256, 64, 2);
  CHECK(max_abs_diff(after, last_logits(again, shifted)) <= 1e-4);
}

TEST_CASE("deepseek4: the indexer's choice is in the logits (a top-k past the context changes them)") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const auto m = Deepseek4Model::load(f.gguf);
  const std::string all = edited_copy(f.gguf, "dsv4-topk-all.gguf", [](GgufWriter& w) {
    w.set("deepseek4.attention.indexer.top_k", GgufValue::u32(1000));
  });
  const auto dense = Deepseek4Model::load(all);
  const int64_t V = m->config().vocab_size, k = m->config().index_topk;
  const std::vector<float> a = prompt_logits(*m, f.prompt, 64), b = prompt_logits(*dense, f.prompt, 64);
  // A CSA row sees (pos + 1) / 4 compressed rows: until more than top_k
  // exist the choice is all of them, and the two agree exactly.
  const int64_t first = 4 * (k + 1) - 1;
  double before = 0, after = 0;
  for (int64_t r = 0; r < static_cast<int64_t>(f.prompt.size()); ++r)
    for (int64_t v = 0; v < V; ++v) {
      const double d = std::fabs(a[size_t(r * V + v)] - b[size_t(r * V + v)]);
      (r < first ? before : after) = std::max(r < first ? before : after, d);
    }
  MESSAGE("top-k " << k << " vs all: rows before " << first << " differ by " << before << ", after by " << after);
  CHECK(before == 0.0);
  CHECK(after > 1e-2);
}

// llama.cpp divides by the HCA ratio when a file has none (SIGFPE).
TEST_CASE("deepseek4: a file whose compress_ratios has no HCA layer runs") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const std::string path = edited_copy(f.gguf, "dsv4-no-hca.gguf", [](GgufWriter& w) {
    w.set("deepseek4.attention.compress_ratios", GgufValue::array<uint32_t>(GgufType::UINT32, {0, 4, 0, 4}));
  });
  const auto m = Deepseek4Model::load(path);
  CHECK(m->config().attention_kind(2) == Dsv4Attention::kWindow);
  const std::vector<float> logits = prompt_logits(*m, f.prompt, 64);
  bool finite = true;
  for (float x : logits) finite = finite && std::isfinite(x);
  CHECK(finite);
  // Layer 2 now sees its window only, rotated with the model's base instead
  // of the compressed layers': other logits than the file's own.
  const auto own = Deepseek4Model::load(f.gguf);
  const std::vector<float> ref = prompt_logits(*own, f.prompt, 64);
  CHECK(max_abs_diff(logits, ref) > 1e-3);
}

TEST_CASE("deepseek4: a compress ratio the model does not define is refused naming the key") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const std::string path = edited_copy(f.gguf, "dsv4-bad-ratio.gguf", [](GgufWriter& w) {
    w.set("deepseek4.attention.compress_ratios", GgufValue::array<uint32_t>(GgufType::UINT32, {0, 4, 64, 4}));
  });
  CHECK_THROWS_WITH(Deepseek4Model::load(path), doctest::Contains("deepseek4.attention.compress_ratios[2] = 64"));
}

TEST_CASE("deepseek4 ops: Sinkhorn leaves every row and column of the stream mix summing to about 1") {
  const int64_t hc = 4;
  std::vector<float> mixes(24), base(24), scale{0.7f, 1.3f, 2.1f};
  for (int i = 0; i < 24; ++i) mixes[size_t(i)] = std::sin(1.7f * float(i)), base[size_t(i)] = 0.1f * float(i % 5) - 0.2f;
  std::vector<float> pre(hc), post(hc), comb(hc * hc);
  dsv4_hc_weights(mixes.data(), scale.data(), base.data(), hc, 1e-6f, 20, pre.data(), post.data(), comb.data());
  for (int64_t a = 0; a < hc; ++a) {
    float rows = 0, cols = 0;
    for (int64_t b = 0; b < hc; ++b) rows += comb[size_t(b + hc * a)], cols += comb[size_t(a + hc * b)];
    CHECK(rows == doctest::Approx(1.0).epsilon(1e-4));
    CHECK(cols == doctest::Approx(1.0).epsilon(1e-4));
    CHECK(pre[size_t(a)] > 0.0f);
    CHECK(post[size_t(a)] > 0.0f);
    CHECK(post[size_t(a)] < 2.0f);
  }
}

TEST_CASE("deepseek4 ops: RoPE of the tail turns back exactly under its inverse, and leaves the head alone") {
  std::vector<float> v(64), w;
  for (int i = 0; i < 64; ++i) v[size_t(i)] = std::cos(0.37f * float(i));
  w = v;
  dsv4_rope_tail(w.data(), 64, 32, 1234, 160000.0f, false);
  for (int i = 0; i < 32; ++i) CHECK(w[size_t(i)] == v[size_t(i)]);
  CHECK(std::fabs(w[40] - v[40]) > 1e-3);
  dsv4_rope_tail(w.data(), 64, 32, 1234, 160000.0f, true);
  for (int i = 32; i < 64; ++i) CHECK(w[size_t(i)] == doctest::Approx(v[size_t(i)]).epsilon(1e-5));
}

TEST_CASE("deepseek4 ops: a compressed row is the per-channel softmax-weighted sum of its block") {
  // ratio 2, dim 1, overlap: the previous block's first-half channel and the
  // current block's second-half channel compete in one softmax.
  const float prev_kv[] = {1.0f, 100.0f, 2.0f, 100.0f}, prev_score[] = {0.0f, -50.0f, 0.0f, -50.0f};
  const float cur_kv[] = {100.0f, 3.0f, 100.0f, 4.0f}, cur_score[] = {-50.0f, 0.0f, -50.0f, std::log(2.0f)};
  float out = 0;
  dsv4_compress_block(prev_kv, prev_score, cur_kv, cur_score, 2, 1, true, &out);
  // weights e^0, e^0, e^0, 2 over values 1, 2, 3, 4: (1 + 2 + 3 + 8) / 5
  CHECK(out == doctest::Approx(14.0 / 5.0).epsilon(1e-6));
  dsv4_compress_block(nullptr, nullptr, cur_kv, cur_score, 2, 1, true, &out);  // first block: current only
  CHECK(out == doctest::Approx(11.0 / 3.0).epsilon(1e-6));
}

TEST_CASE("deepseek4 ops: attention sinks take their share of the softmax") {
  const float q[] = {1.0f, 0.0f}, k0[] = {2.0f, 0.0f}, k1[] = {0.0f, 5.0f};
  const float* keys[] = {k0, k1};
  const float sinks[] = {std::log(2.0f)};
  float scores[2], out[2];
  dsv4_attention_sinks(q, 1, 2, keys, 2, sinks, 1.0f, scores, out);
  // logits 2 and 0, sink log 2: p = e^2, 1 over e^2 + 1 + 2
  const double z = std::exp(2.0) + 3.0;
  CHECK(out[0] == doctest::Approx(2.0 * std::exp(2.0) / z).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(5.0 / z).epsilon(1e-6));
  float ref[2];
  dsv4_attention_sinks_ref(q, 1, 2, keys, 2, sinks, 1.0f, scores, ref);
  CHECK(ref[0] == out[0]);
  CHECK(ref[1] == out[1]);
}

TEST_CASE("deepseek4 ops: the key-blocked attention equals the head-by-head reference exactly") {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  for (int64_t n : {1, 7, 8, 9, 61}) {
    CAPTURE(n);
    const int64_t H = 5, d = 64;
    std::vector<float> q(size_t(H * d)), rows(size_t(n * d)), sinks(static_cast<size_t>(H)), a(size_t(H * d)), b(size_t(H * d));
    for (float& v : q) v = g(rng);
    for (float& v : rows) v = g(rng);
    for (float& v : sinks) v = g(rng);
    std::vector<const float*> keys;
    for (int64_t j = n - 1; j >= 0; --j) keys.push_back(rows.data() + j * d);  // any order of rows
    std::vector<float> scores(size_t(H * n));
    dsv4_attention_sinks_ref(q.data(), H, d, keys.data(), n, sinks.data(), 0.125f, scores.data(), a.data());
    dsv4_attention_sinks(q.data(), H, d, keys.data(), n, sinks.data(), 0.125f, scores.data(), b.data());
    CHECK(a == b);
  }
}

TEST_CASE("deepseek4 ops: routing by sqrt-softplus with a selection bias, and clamped SwiGLU") {
  const float logits[] = {-1.0f, 0.5f, 30.0f, 0.0f};
  float probs[4];
  moe_gate_scores(ScoringFunc::kSqrtSoftplus, logits, 4, probs);
  CHECK(probs[0] == doctest::Approx(std::sqrt(std::log1p(std::exp(-1.0)))));
  CHECK(probs[2] == doctest::Approx(std::sqrt(30.0)));
  const std::vector<float> bias{10.0f, 0.0f, 0.0f, 0.0f};
  MoeRouteParams p;
  p.n_experts = 4;
  p.top_k = 2;
  p.scoring = ScoringFunc::kSqrtSoftplus;
  p.bias = TensorView::contiguous("bias", GgmlType::F32, {4, 1, 1, 1}, reinterpret_cast<const uint8_t*>(bias.data()));
  p.norm_topk_prob = true;
  p.routed_scaling_factor = 1.5f;
  int32_t ids[2];
  float w[2], scratch[8];
  moe_route_topk(p, logits, ids, w, scratch);  // the bias picks expert 0; its weight stays its prob
  CHECK(ids[0] == 0);
  CHECK(ids[1] == 2);
  CHECK(w[0] == doctest::Approx(1.5 * probs[0] / (probs[0] + probs[2])));
  CHECK(w[0] + w[1] == doctest::Approx(1.5));
  float g[] = {20.0f, -3.0f, 1.0f};
  const float u[] = {-20.0f, 2.0f, 0.5f};
  swiglu_clamped(g, u, 3, 10.0f);
  CHECK(g[0] == doctest::Approx(10.0 / (1.0 + std::exp(-10.0)) * -10.0));
  CHECK(g[1] == doctest::Approx(-3.0 / (1.0 + std::exp(3.0)) * 2.0));
  CHECK(g[2] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0)) * 0.5));
}

// The moe program on a deepseek4 file: one-shot and --batch (two sequences
// at once) give the same greedy answer, and flags whose features deepseek4
// does not have yet are refused naming the flag.
TEST_CASE("moe on a deepseek4 file: one-shot and batch agree, unsupported flags are refused") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const std::string dir = test::temp_dir();
  const std::string prompt = "In the beginning God created the heaven and the earth.";
  {
    std::ofstream lines(dir + "/dsv4.jsonl");
    for (int i = 0; i < 2; ++i) lines << nlohmann::json{{"prompt", prompt}, {"n_predict", 12}, {"temperature", 0}}.dump() << "\n";
  }
  const std::string moe = test::bin_dir() + "/moe";
  const auto one = test::run_command({moe, "-m", f.gguf, "-p", prompt, "-n", "12", "--temp", "0", "--json", "-t", "2"});
  const auto batch = test::run_command({moe, "-m", f.gguf, "--batch", dir + "/dsv4.jsonl", "-np", "2", "-t", "2"});
  INFO("stderr: " << one.err << batch.err);
  REQUIRE(one.exit_code == 0);
  REQUIRE(batch.exit_code == 0);
  const auto j = test::parse_json_lines(one.out);
  const auto b = test::parse_json_lines(batch.out);
  REQUIRE(j.size() == 1);
  REQUIRE(b.size() == 2);
  CHECK(j[0]["generated_tokens"] == 12);
  CHECK(b[0]["text"] == j[0]["text"]);
  CHECK(b[1]["text"] == j[0]["text"]);

  // --prompt-cache: the second run loads the prompt short of its last token
  // and answers as the first; a longer prompt reuses what it shares.
  const std::string cache = dir + "/dsv4.cache";
  std::vector<std::string> cached{moe, "-m", f.gguf, "-p", prompt, "-n", "12", "--temp", "0", "--json", "-t", "2",
                                  "--prompt-cache", cache};
  for (int run = 0; run < 2; ++run) {
    const auto r = test::run_command(cached);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    const auto rj = test::parse_json_lines(r.out);
    CHECK(rj[0]["text"] == j[0]["text"]);
    CHECK(rj[0]["prompt_tokens_cached"] == (run == 0 ? 0 : j[0]["prompt_tokens"].get<int64_t>() - 1));
  }
  cached[4] = prompt + " And the earth was without form, and void.";
  const auto longer = test::run_command(cached);
  const auto fresh = test::run_command({moe, "-m", f.gguf, "-p", cached[4], "-n", "12", "--temp", "0", "--json", "-t", "2"});
  REQUIRE(longer.exit_code == 0);
  REQUIRE(fresh.exit_code == 0);
  CHECK(test::parse_json_lines(longer.out)[0]["text"] == test::parse_json_lines(fresh.out)[0]["text"]);
  CHECK(test::parse_json_lines(longer.out)[0]["prompt_tokens_cached"].get<int64_t>() > 0);

  // -ctk: the run takes it (and reports the cache's size in its type).
  const auto f16 = test::run_command({moe, "-m", f.gguf, "-p", prompt, "-n", "12", "--temp", "0", "--json", "-t", "2",
                                      "-ctk", "f16", "-v"});
  REQUIRE_MESSAGE(f16.exit_code == 0, f16.err);
  CHECK(f16.err.find("cache (f16)") != std::string::npos);

  for (const std::vector<std::string>& flags : std::vector<std::vector<std::string>>{{"--spec-type", "draft-mtp"}}) {
    std::vector<std::string> argv{moe, "-m", f.gguf, "-p", "x", "-n", "1"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const auto r = test::run_command(argv);
    CAPTURE(flags[0]);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find(flags[0]) != std::string::npos);
    CHECK(r.err.find("deepseek4") != std::string::npos);
  }
}

TEST_CASE("deepseek4: YaRN and linear RoPE scaling as llama.cpp applies them (compressed layers only)") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const std::string dir = test::local_fixture("dsv4-rope-scaling");
  const auto info = nlohmann::json::parse(std::ifstream(dir + "/rows.json"));
  const std::vector<int64_t> rows = info["rows"].get<std::vector<int64_t>>();
  const int64_t V = info["n_vocab"].get<int64_t>();
  const std::vector<float> plain = prompt_logits(*Deepseek4Model::load(f.gguf), f.prompt, 256);
  for (const char* type : {"yarn", "linear"}) {
    CAPTURE(type);
    const std::string path = edited_copy(f.gguf, std::string("dsv4-rope-") + type + ".gguf", [&](GgufWriter& w) {
      w.set("deepseek4.rope.scaling.type", GgufValue::string(type));
      w.set("deepseek4.rope.scaling.factor", GgufValue::f32(4.0f));
      w.set("deepseek4.rope.scaling.original_context_length", GgufValue::u32(64));
    });
    const std::vector<float> got = prompt_logits(*Deepseek4Model::load(path), f.prompt, 256);
    const std::vector<uint8_t> bytes = test::read_file(dir + "/tiny-dsv4." + type + ".rows.f32");
    REQUIRE(bytes.size() == rows.size() * size_t(V) * sizeof(float));
    const float* ref = reinterpret_cast<const float*>(bytes.data());
    double worst = 0, moved = 0;
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t v = 0; v < V; ++v) {
        const size_t at = size_t(rows[i] * V + v);
        worst = std::max(worst, double(std::fabs(got[at] - ref[i * size_t(V) + size_t(v)])));
        moved = std::max(moved, double(std::fabs(got[at] - plain[at])));
      }
    CHECK(worst <= 1e-4);  // measured 1.3e-5
    CHECK(moved > 1.0);    // the scaling is in the logits (measured ~10)
  }
  const std::string bad = edited_copy(f.gguf, "dsv4-rope-longrope.gguf", [](GgufWriter& w) {
    w.set("deepseek4.rope.scaling.type", GgufValue::string("longrope"));
  });
  CHECK_THROWS_WITH_AS(Deepseek4Model::load(bad), doctest::Contains("rope.scaling.type = 'longrope'"), Error);
}

TEST_CASE("deepseek4: a saved state loads into a session of another step size, at its end or a little before") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const auto m = Deepseek4Model::load(f.gguf);
  // Saved at 160 of the 197 prompt tokens, by a session that went on to the
  // end (its rings still hold 160's neighbourhood) and one that went far on
  // (it evaluates the 160 again to save them).
  const int64_t n = 160;
  for (int64_t n_batch : {64, 16}) {
    CAPTURE(n_batch);
    Deepseek4Session a(*m, 512, n_batch, 2);
    std::vector<int32_t> all(f.prompt);
    if (n_batch == 16) all.insert(all.end(), f.prompt.begin(), f.prompt.end());  // 394 positions: 160 is far back
    last_logits(a, all);
    PromptCacheData d;
    d.tokens.assign(f.prompt.begin(), f.prompt.begin() + n);
    a.saved_cache_export(n, d);
    CHECK(a.n_past() >= n);
    // Through the file format, then into sessions with other rings.
    const PromptCacheData back = decode_prompt_cache(encode_prompt_cache(a.saved_cache_shape(), d),
                                                     a.saved_cache_shape(), "test");
    for (int64_t use : {n, n - 5, n - 60}) {  // the end, within the history, before it (evaluated again)
      CAPTURE(use);
      Deepseek4Session b(*m, 512, 7, 2);
      b.saved_cache_import(back, use);
      CHECK(b.n_past() == use);
      const std::vector<int32_t> rest(f.prompt.begin() + use, f.prompt.end());
      Deepseek4Session fresh(*m, 512, 7, 2);
      CHECK(max_abs_diff(last_logits(b, rest), last_logits(fresh, f.prompt)) <= 1e-4);
    }
  }
  // A state cut short or of another length is refused before anything is written.
  Deepseek4Session a(*m, 512, 64, 2);
  last_logits(a, f.prompt);
  PromptCacheData d;
  d.tokens.assign(f.prompt.begin(), f.prompt.begin() + n);
  a.saved_cache_export(n, d);
  PromptCacheData cut = d;
  cut.state.resize(cut.state.size() - 4);
  CHECK_THROWS_WITH_AS(a.saved_cache_import(cut, n), doctest::Contains("DeepSeek-V4 state of"), Error);
  PromptCacheData other = d;
  other.tokens.pop_back();
  CHECK_THROWS_WITH_AS(a.saved_cache_import(other, n - 1), doctest::Contains("positions"), Error);
  CHECK(a.n_past() == static_cast<int64_t>(f.prompt.size()));  // untouched
}

TEST_CASE("deepseek4: -ctk f16, bf16 and q8_0 store the raw and compressed rows and the index keys in that type") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  const auto m = Deepseek4Model::load(f.gguf);
  const int64_t V = m->config().vocab_size;
  const std::vector<float> exact = prompt_logits(*m, f.prompt, 64);
  for (LatentType t : {LatentType::kF16, LatentType::kBf16, LatentType::kQ8_0}) {
    CAPTURE(std::string(latent_type_name(t)));
    Deepseek4Session s(*m, 256, 64, 2, 1, t);
    std::vector<float> got(f.prompt.size() * size_t(V));
    s.forward(f.prompt.data(), int64_t(f.prompt.size()), got.data(), true);
    // Rounding the cached rows moves the logits: a little for f16 (measured
    // top-1 1.0, mean KL 2.4e-5, max |d| 0.61 where a rounded index key
    // changes a choice); bf16 and q8_0 move this random model's most
    // sensitive rows by up to 13 (as llama.cpp's own f16 cache does;
    // measured top-1 0.995 / 0.985, mean KL 0.017 / 0.018 against the f32
    // cache, and 0.0019 / 0.0020 against llama.cpp's f16 cache).
    CHECK(max_abs_diff(got, exact) > 0);
    const test::LogitAgreement a = test::logit_agreement(exact.data(), got.data(), int64_t(f.prompt.size()), V);
    MESSAGE(std::string(latent_type_name(t)) << ": top-1 " << a.top1 << ", mean KL " << a.mean_kl);
    if (t == LatentType::kF16) CHECK(a.mean_kl < 1e-3);
    CHECK(a.top1 >= 0.95);
    CHECK(a.mean_kl <= 0.05);
    // Every row that grows with the context is in the type: the 16-bit
    // types take half of f32's bytes per token.
    if (t != LatentType::kQ8_0) CHECK(2 * m->cache_bytes_per_token(t) == m->cache_bytes_per_token(LatentType::kF32));
    else CHECK(m->cache_bytes_per_token(t) < m->cache_bytes_per_token(LatentType::kF16));
    // Chunked prompts and saved states work in the type too.
    Deepseek4Session c(*m, 256, 7, 2, 1, t);
    std::vector<float> chunked(f.prompt.size() * size_t(V));
    c.forward(f.prompt.data(), int64_t(f.prompt.size()), chunked.data(), true);
    CHECK(max_abs_diff(chunked, got) <= 1e-4);
  }
  // A state saved with one type is refused by a session of another, by name.
  Deepseek4Session a(*m, 256, 64, 2, 1, LatentType::kF16), b(*m, 256, 64, 2);
  std::vector<float> last(static_cast<size_t>(V));
  a.forward(f.prompt.data(), 40, last.data(), false);
  PromptCacheData d;
  d.tokens.assign(f.prompt.begin(), f.prompt.begin() + 40);
  a.saved_cache_export(40, d);
  const std::string bytes = encode_prompt_cache(a.saved_cache_shape(), d);
  CHECK_THROWS_WITH_AS(decode_prompt_cache(bytes, b.saved_cache_shape(), "test"), doctest::Contains("deepseek4 f16"),
                       Error);
}

TEST_CASE("moe-logits runs deepseek4 files: llama.cpp's logits and greedy tokens for tiny-dsv4") {
  const Fixture f = fixture();
  if (f.gguf.empty()) return test::skip("tiny-dsv4.f32 fixture not found");
  std::string list;
  for (int32_t t : f.prompt) {
    if (!list.empty()) list += ',';
    list += std::to_string(t);
  }
  const std::string out = test::temp_dir() + "/dsv4-logits";
  const auto r = test::run_command({test::bin_dir() + "/moe-logits", "-m", f.gguf, "--tokens", list, "--gen", "4",
                                    "--out", out, "-t", "2"});
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const std::string base = f.gguf.substr(0, f.gguf.size() - 5);
  const std::vector<uint8_t> got = test::read_file(out + ".prefill.f32"), want = test::read_file(base + ".prefill.f32");
  REQUIRE(got.size() == want.size());
  const auto* a = reinterpret_cast<const float*>(got.data());
  const auto* b = reinterpret_cast<const float*>(want.data());
  double worst = 0;
  for (size_t i = 0; i < got.size() / 4; ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  CHECK(worst <= 1e-4);
  const auto j = nlohmann::json::parse(std::ifstream(out + ".json"));
  const std::vector<int32_t> greedy = j["greedy_tokens"].get<std::vector<int32_t>>();
  REQUIRE(greedy.size() == 4);
  CHECK(std::equal(greedy.begin(), greedy.end(), f.greedy.begin()));
}
