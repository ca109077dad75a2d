// DeepSeek-V4's MTP module (model/deepseek4_mtp.cpp) from an MTP companion
// GGUF (moe-synth --mtp-companion, ik_llama.cpp's layout): drafts never
// change the output, drafts of many sequences in one pass equal each one's
// alone, and a companion that does not belong to the model is refused.
//
// Random weights draft tokens the trunk never picks, which would leave the
// accepting half of the loop untested. So the files' heads are narrowed to
// one channel: the trunk's output norm and the module's shared head norm
// keep channel 7 alone, and every logit is W_out[v][7] times that channel's
// value: each head picks one of two tokens by the channel's sign, the trunk
// and the module then agree on part of the steps, and answers go through
// accepted, partly accepted and rejected drafts.
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "core/error.h"
#include "model/deepseek4.h"
#include "runtime/generate.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {

const std::string kVocab = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

// A copy of `src` whose F32 vector `name` keeps only channel `ch`, set to `value`.
std::string with_one_channel(const std::string& src, const std::string& out, const std::string& name, int64_t ch,
                             float value) {
  const GgufFile in = GgufFile::open(src);
  GgufWriter w(out, in.alignment());
  for (const auto& kv : in.metadata()) w.set(kv.key, kv.value);
  for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape);
  w.begin();
  bool found = false;
  for (const auto& t : in.tensors()) {
    if (t.name != name) {
      w.write_tensor_data(t.data, t.nbytes);
      continue;
    }
    REQUIRE(t.type == GgmlType::F32);
    std::vector<float> v(t.nbytes / sizeof(float), 0.0f);
    v[static_cast<size_t>(ch)] = value;
    w.write_tensor_data(v.data(), t.nbytes);
    found = true;
  }
  w.finish();
  REQUIRE(found);
  return out;
}

struct Files {
  std::string model, companion;
};

// A tiny V4 (window, CSA, HCA and CSA layers, a hash layer) and its MTP
// companion, whose layer has compress ratio mtp_ratio (the release's: 0),
// with the heads narrowed (above).
Files tiny_v4_with_mtp(int64_t mtp_ratio, float mtp_sign) {
  const std::string dir = test::temp_dir() + "/dsv4-mtp-" + std::to_string(mtp_ratio);
  nlohmann::json config = test::tiny_dsv4_config();
  config["compress_ratios"].push_back(mtp_ratio);
  config["num_nextn_predict_layers"] = 1;
  test::synth_from_config(config, dir,
                          {"-o", dir + "/raw.gguf", "--mtp-companion", dir + "/raw-mtp.gguf", "--type", "F32"});
  Files f;
  f.model = with_one_channel(dir + "/raw.gguf", dir + "/v4.gguf", "output_norm.weight", 7, 1.0f);
  f.companion = with_one_channel(dir + "/raw-mtp.gguf", dir + "/v4-mtp.gguf", "blk.4.nextn.shared_head_norm.weight", 7,
                                 mtp_sign);
  return f;
}

GenerateResult greedy_answer(InferenceSession& s, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                             int64_t n_predict, int64_t n_draft, int64_t chunk) {
  SamplerParams p;
  p.temp = 0.0f;
  return test::answer(s, tok, p, prompt, n_predict, n_draft, chunk);
}

std::vector<int32_t> prompt_of(const Tokenizer& tok, int64_t n) {
  const std::string text = "In the beginning God created the heaven and the earth. And the earth was without form, "
                           "and void; and darkness was upon the face of the deep. And the Spirit of God moved upon "
                           "the face of the waters. And God said, Let there be light: and there was light. ";
  std::vector<int32_t> t;
  while (static_cast<int64_t>(t.size()) < n) {
    const std::vector<int32_t> more = tok.encode(text, t.empty(), false);
    t.insert(t.end(), more.begin(), more.end());
  }
  t.resize(static_cast<size_t>(n));
  return t;
}

}  // namespace

TEST_CASE("deepseek4 MTP: greedy answers with drafts are token for token the answers without them") {
  for (const auto& [ratio, sign] : {std::pair<int64_t, float>{0, -1.0f}, {4, -1.0f}}) {
    CAPTURE(ratio);
    const Files f = tiny_v4_with_mtp(ratio, sign);
    auto model = Deepseek4Model::load(f.model);
    const Tokenizer tok = Tokenizer::from_gguf(model->file());
    {  // the trunk alone first: attaching the module changes nothing it computes
      Deepseek4Session plain(*model, 256, 16, 2);
      const GenerateResult want = greedy_answer(plain, tok, prompt_of(tok, 40), 40, 0, 16);
      model->attach_mtp(f.companion);
      Deepseek4Session with(*model, 256, 16, 2, 1, LatentType::kF32, true);
      REQUIRE(with.has_mtp());
      const GenerateResult got = greedy_answer(with, tok, prompt_of(tok, 40), 40, 2, 16);
      CHECK(got.generated == want.generated);
    }
    int64_t drafted = 0, accepted = 0;
    // Prompt lengths around the window (32) and the blocks (4, 128), prompt
    // chunks of the step size and less, one to three drafts; and the
    // context nearly full (n_ctx 200: the answer stops there).
    for (const auto& [n_prompt, n_ctx, chunk] : {std::array<int64_t, 3>{5, 256, 16}, {33, 256, 7}, {150, 256, 16},
                                                 {170, 200, 16}}) {
      CAPTURE(n_prompt);
      const std::vector<int32_t> prompt = prompt_of(tok, n_prompt);
      Deepseek4Session plain(*model, n_ctx, 16, 2);
      const GenerateResult want = greedy_answer(plain, tok, prompt, 60, 0, chunk);
      REQUIRE(want.generated.size() >= 20);
      for (int64_t n_draft : {1, 3}) {
        CAPTURE(n_draft);
        Deepseek4Session spec(*model, n_ctx, 16, 2, 1, LatentType::kF32, true);
        const GenerateResult got = greedy_answer(spec, tok, prompt, 60, n_draft, chunk);
        CHECK(got.generated == want.generated);
        CHECK(got.finish == want.finish);
        CHECK(got.n_drafted > 0);
        drafted += got.n_drafted;
        accepted += got.n_accepted;
      }
    }
    // Both halves of the loop ran: drafts kept and drafts thrown away.
    CHECK(accepted > 0);
    CHECK(accepted < drafted);
  }
}

// Sequences of different lengths draft together (mtp_draft_many, rows of
// several sequences in one pass of the module) for a few rounds; each one's
// drafts equal those it gets in a session of its own.
TEST_CASE("deepseek4 MTP: drafts of many sequences in one pass equal each sequence's drafts alone") {
  const Files f = tiny_v4_with_mtp(4, -1.0f);
  auto model = Deepseek4Model::load(f.model);
  model->attach_mtp(f.companion);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const std::vector<int32_t> all = prompt_of(tok, 120);
  const Deepseek4Model& m = *model;
  auto make = [&m](int64_t n_seq) {
    return std::make_unique<Deepseek4Session>(m, 128, 64, 2, n_seq, LatentType::kF32, true);
  };
  // first, length, drafts; the first asked twice drafts once
  test::check_drafts_together_equal_alone(make, all, {{0, 20, 3}, {30, 7, 1}, {50, 45, 2}, {100, 12, 0}}, 3, true);
}

TEST_CASE("deepseek4 MTP: a file that is not the model's companion is refused by name") {
  const Files f = tiny_v4_with_mtp(0, -1.0f);
  auto model = Deepseek4Model::load(f.model);
  // The model itself: no module in it.
  CHECK_THROWS_WITH_AS(model->attach_mtp(f.model), doctest::Contains("is not an MTP companion"), Error);
  // A companion made for another shape (a bigger window).
  const std::string other = test::temp_dir() + "/dsv4-mtp-other.gguf";
  {
    const GgufFile in = GgufFile::open(f.companion);
    GgufWriter w(other, in.alignment());
    for (const auto& kv : in.metadata()) w.set(kv.key, kv.value);
    w.set("deepseek4.attention.sliding_window", GgufValue::u32(64));
    for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape);
    w.begin();
    for (const auto& t : in.tensors()) w.write_tensor_data(t.data, t.nbytes);
    w.finish();
  }
  CHECK_THROWS_WITH_AS(model->attach_mtp(other), doctest::Contains("was made for another model: its sliding window is 64"),
                       Error);
  // Drafting without a module says how to give one.
  CHECK_THROWS_WITH_AS(Deepseek4Session(*model, 64, 16, 2, 1, LatentType::kF32, true), doctest::Contains("-md FILE"),
                       Error);

  // The command line: -md runs drafts (the answer unchanged), a model
  // without one is told where the module is, -md for a deepseek2 file is refused.
  const std::string moe = test::bin_dir() + "/moe";
  const std::vector<std::string> common = {moe, "-m", f.model, "-p", "In the beginning", "-n", "24", "--temp", "0", "-t", "2"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return test::run_command(a);
  };
  const auto plain = with({});
  const auto drafted = with({"-md", f.companion, "--spec-draft-n-max", "2"});
  INFO(drafted.err);
  REQUIRE(plain.exit_code == 0);
  REQUIRE(drafted.exit_code == 0);
  CHECK(drafted.out == plain.out);
  CHECK(drafted.err.find("drafts ") != std::string::npos);
  // --batch at -np 3: every record's text as without drafts.
  const std::string batch = test::temp_dir() + "/dsv4-mtp-batch.jsonl";
  std::ofstream(batch) << "{\"prompt\":\"In the beginning\"}\n{\"prompt\":\"And God said\"}\n"
                          "{\"prompt\":\"The earth was without form and void and darkness\"}\n";
  auto texts = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {moe, "-m", f.model, "--batch", batch, "-np", "3", "-n", "24", "--temp", "0", "-t", "2"};
    a.insert(a.end(), extra.begin(), extra.end());
    const auto r = test::run_command(a);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::vector<std::string> t;
    for (const auto& j : test::parse_json_lines(r.out)) t.push_back(j["text"].get<std::string>());
    return t;
  };
  const std::vector<std::string> batch_plain = texts({});
  CHECK(batch_plain.size() == 3);
  CHECK(texts({"-md", f.companion, "--spec-draft-n-max", "2"}) == batch_plain);
  // A saved prompt cache, written then loaded (the module starts over after it).
  const std::string cache = test::temp_dir() + "/dsv4-mtp.cache";
  std::filesystem::remove(cache);
  for (int run = 0; run < 2; ++run) {
    CAPTURE(run);
    const auto r = with({"-md", f.companion, "--prompt-cache", cache});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == plain.out);
  }
  const auto no_module = with({"--spec-type", "draft-mtp"});
  CHECK(no_module.exit_code != 0);
  CHECK(no_module.err.find("-md FILE") != std::string::npos);
  const auto v3 = test::run_command({moe, "-m", kVocab, "-md", f.companion, "-p", "x", "-n", "2"});
  CHECK(v3.exit_code != 0);
  CHECK(v3.err.find("only a deepseek4 model's MTP companion") != std::string::npos);
  const auto synth = test::run_command({test::bin_dir() + "/moe-synth", "--config", "v4-flash", "--layers", "1", "-o",
                                        test::temp_dir() + "/never.gguf", "--mtp"});
  CHECK(synth.exit_code != 0);
  CHECK(synth.err.find("--mtp-companion FILE") != std::string::npos);
}
