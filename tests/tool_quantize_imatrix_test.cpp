// moe-quantize --imatrix against llama-quantize --imatrix.
//
// The references are independent of our code: ../shared/fixtures/iq/ holds
// the trained default model quantized by llama.cpp's llama-quantize with an
// importance matrix llama-imatrix made (its README gives the commands), and
// that importance matrix in both of llama-imatrix's formats. Given the same
// f32 input, importance matrix and arguments, moe-quantize must write the
// same file byte for byte. The f32 input is made here by moe-quantize from
// models/tiny-kjv-dsv3.Q4_K_M.gguf, as the README makes it with llama-quantize.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "convert/imatrix_file.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

std::string bin(const char* tool) { return moe::test::bin_dir() + "/" + tool; }

// Runs moe-quantize in `dir` (so that the importance matrix path recorded in
// the file is the bare name, as in the fixtures' commands).
moe::test::CommandResult quantize_in(const std::string& dir, const std::string& args) {
  return moe::test::run_shell("cd " + moe::test::shell_quote(dir) + " && " +
                              moe::test::shell_quote(bin("moe-quantize")) + " " + args);
}

}  // namespace

TEST_CASE("imatrix: the GGUF and legacy files of one importance matrix read alike") {
  const std::string gguf = moe::test::shared_fixture("iq/kjv.imatrix.gguf");
  const std::string dat = moe::test::shared_fixture("iq/kjv.imatrix.dat");
  if (gguf.empty() || dat.empty()) return moe::test::skip("shared fixtures absent (iq/kjv.imatrix.*)");
  const moe::ImportanceMatrix a = moe::load_importance_matrix(gguf);
  const moe::ImportanceMatrix b = moe::load_importance_matrix(dat);
  CHECK_FALSE(a.legacy);
  CHECK(b.legacy);
  CHECK(a.weights.size() == 48);
  CHECK(a.chunk_count == 91);
  CHECK(a.chunk_size == 128);
  CHECK(b.chunk_count == 91);
  REQUIRE(a.datasets.size() == 1);
  CHECK(a.datasets[0] == "genesis1-11.txt");
  CHECK(b.datasets == a.datasets);
  REQUIRE(a.weights.size() == b.weights.size());
  // Experts have a slice each: 16 x 128 columns of ffn_down_exps.
  CHECK(a.weights.at("blk.1.ffn_down_exps.weight").size() == 16 * 128);
  double worst = 0;
  for (const auto& [name, wa] : a.weights) {
    INFO(name);
    const auto it = b.weights.find(name);
    REQUIRE(it != b.weights.end());
    REQUIRE(it->second.size() == wa.size());
    for (size_t i = 0; i < wa.size(); ++i) {
      CHECK(wa[i] >= 0.0f);
      worst = std::max(worst, std::fabs(double(wa[i]) - it->second[i]) / std::max(1e-30, std::fabs(double(wa[i]))));
    }
  }
  // The legacy file stores mean * ncall: one rounding either way.
  CHECK(worst < 1e-6);
}

TEST_CASE("imatrix: a damaged importance matrix is a clear error naming the file") {
  const std::string dir = moe::test::temp_dir();
  const std::string dat = moe::test::shared_fixture("iq/kjv.imatrix.dat");
  if (dat.empty()) return moe::test::skip("shared fixtures absent (iq/kjv.imatrix.dat)");
  std::vector<uint8_t> bytes = moe::test::read_file(dat);
  bytes.resize(bytes.size() / 2);
  const std::string cut = dir + "/cut.dat";
  moe::test::write_file(cut, bytes);
  CHECK_THROWS_WITH_AS(moe::load_importance_matrix(cut), doctest::Contains("cut.dat: truncated legacy importance matrix"),
                       moe::Error);
  // An entry claiming ~2^31 values in a small file fails before allocating
  // them (found by fuzz_gguf_set).
  {
    std::vector<uint8_t> b = {1, 0, 0, 0, 1, 0, 0, 0, 'w', 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    moe::test::write_file(dir + "/huge.dat", b);
    CHECK_THROWS_WITH_AS(moe::load_importance_matrix(dir + "/huge.dat"),
                         doctest::Contains("entry 'w' claims 2147483647 values"), moe::Error);
  }
  const std::string empty = dir + "/empty.dat";
  moe::test::write_file(empty, std::vector<uint8_t>(4, 0));
  CHECK_THROWS_WITH_AS(moe::load_importance_matrix(empty), doctest::Contains("empty.dat: not an importance matrix"),
                       moe::Error);
  // A model is a GGUF file, but not an importance matrix.
  CHECK_THROWS_WITH_AS(moe::load_importance_matrix(std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf"),
                       doctest::Contains("missing imatrix metadata"), moe::Error);
}

TEST_CASE("imatrix: --include-weights / --exclude-weights select entries by substring") {
  moe::ImportanceMatrix im;
  for (const char* n : {"blk.0.ffn_up.weight", "blk.1.ffn_up_exps.weight", "blk.1.attn_q_a.weight"})
    im.weights[n] = {1.0f};
  moe::ImportanceMatrix ex = im;
  moe::filter_importance_matrix(ex, {}, {"ffn_up"});
  CHECK(ex.weights.size() == 1);
  CHECK(ex.weights.count("blk.1.attn_q_a.weight") == 1);
  moe::ImportanceMatrix in = im;
  moe::filter_importance_matrix(in, {"blk.1."}, {});
  CHECK(in.weights.size() == 2);
  CHECK(in.weights.count("blk.0.ffn_up.weight") == 0);
}

TEST_CASE("moe-quantize --imatrix: reproduces llama-quantize's IQ files byte for byte") {
  const std::string imatrix = moe::test::shared_fixture("iq/kjv.imatrix.gguf");
  if (imatrix.empty()) return moe::test::skip("shared fixtures absent (iq/)");
  const std::string dir = moe::test::temp_dir();
  fs::copy_file(imatrix, dir + "/kjv.imatrix.gguf");
  const std::string f32 = moe::test::trained_model_f32(dir);
  // The README's commands; the very-low-bit types keep blk.4 (the MTP layer,
  // which the importance matrix has no rows for) at q4_K.
  const std::pair<const char*, const char*> cases[] = {
      {"IQ4_XS", ""},
      {"IQ3_XXS", "--tensor-type 'blk\\.4\\.=q4_K'"},
      {"IQ2_XXS", "--tensor-type 'blk\\.4\\.=q4_K'"},
      {"IQ2_M", "--tensor-type 'blk\\.4\\.=q4_K'"},
      {"IQ1_M", "--tensor-type 'blk\\.4\\.=q4_K'"},
  };
  for (const auto& [type, extra] : cases) {
    INFO(type);
    const std::string expected = moe::test::shared_fixture(std::string("iq/kjv.") + type + ".gguf");
    REQUIRE_FALSE(expected.empty());
    const std::string out = std::string("kjv.") + type + ".gguf";
    const auto r = quantize_in(dir, std::string("--imatrix kjv.imatrix.gguf ") + extra + " kjv.f32.gguf " + out + " " +
                                        type + " 2");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const std::vector<uint8_t> got = moe::test::read_file(dir + "/" + out);
    const std::vector<uint8_t> want = moe::test::read_file(expected);
    if (got != want) {
      // Name the first tensor that differs, for the failure message.
      const moe::GgufFile g = moe::GgufFile::open(dir + "/" + out);
      const moe::GgufFile w = moe::GgufFile::open(expected);
      for (const auto& t : w.tensors()) {
        const moe::GgufTensorInfo* o = g.find_tensor(t.name);
        const bool same = o && o->type == t.type && o->nbytes == t.nbytes &&
                          std::equal(t.data, t.data + t.nbytes, o->data);
        CHECK_MESSAGE(same, t.name << " (" << moe::ggml_type_name(t.type) << ") differs");
      }
    }
    CHECK(got == want);
  }
}

TEST_CASE("moe-quantize --imatrix: refusals name the tensor and write nothing") {
  const std::string dir = moe::test::temp_dir();
  const std::string f32 = moe::test::trained_model_f32(dir);
  for (const char* type : {"Q2_K_S", "IQ2_XXS", "IQ1_M", "IQ3_XXS"}) {
    SUBCASE((std::string("a type that needs an importance matrix, without one: ") + type).c_str()) {
      const auto r = quantize_in(dir, std::string("kjv.f32.gguf out.gguf ") + type);
      CHECK(r.exit_code == 1);
      CHECK(r.err.find("needs an importance matrix") != std::string::npos);
      CHECK(r.err.find("--imatrix") != std::string::npos);
      CHECK(r.err.find("'blk.") != std::string::npos);  // names the tensor at fault
    }
  }
  SUBCASE("an importance matrix without rows for a very-low-bit tensor") {
    // blk.4 (the MTP layer) never runs, so the matrix has no rows for it.
    const std::string imatrix = moe::test::shared_fixture("iq/kjv.imatrix.gguf");
    if (imatrix.empty()) return moe::test::skip("shared fixtures absent (iq/kjv.imatrix.gguf)");
    const auto r = quantize_in(dir, "--imatrix " + moe::test::shell_quote(imatrix) + " kjv.f32.gguf out.gguf IQ2_XXS");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("has no entry for it") != std::string::npos);
    CHECK(r.err.find("'blk.4.") != std::string::npos);
  }
  SUBCASE("both --include-weights and --exclude-weights") {
    const std::string imatrix = moe::test::shared_fixture("iq/kjv.imatrix.gguf");
    if (imatrix.empty()) return moe::test::skip("shared fixtures absent (iq/kjv.imatrix.gguf)");
    const auto r = quantize_in(dir, "--imatrix " + moe::test::shell_quote(imatrix) +
                                        " --include-weights ffn --exclude-weights attn kjv.f32.gguf out.gguf IQ4_XS");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot be used together") != std::string::npos);
  }
  SUBCASE("an importance matrix made for another model") {
    const std::string imatrix = moe::test::shared_fixture("iq/kjv.imatrix.gguf");
    if (imatrix.empty()) return moe::test::skip("shared fixtures absent (iq/kjv.imatrix.gguf)");
    const std::string other = moe::test::shared_fixture("models/tiny-dsv3.f32.gguf");
    if (other.empty()) return moe::test::skip("shared fixtures absent (models/tiny-dsv3.f32.gguf)");
    const auto r = quantize_in(dir, "--imatrix " + moe::test::shell_quote(imatrix) + " " +
                                        moe::test::shell_quote(other) + " out.gguf IQ4_XS");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("another model") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir + "/out.gguf"));
}

namespace {

// Mean of |a - b| / max(|a|, |b|) over the columns of two weight vectors.
double mean_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double m = std::max(std::fabs(double(a[i])), std::fabs(double(b[i])));
    if (m > 0) sum += std::fabs(double(a[i]) - b[i]) / m;
  }
  return a.empty() ? 0 : sum / double(a.size());
}

}  // namespace

TEST_CASE("moe-imatrix: the importance matrix of llama-imatrix's run, and files as good as its") {
  const std::string text = moe::test::shared_fixture("iq/genesis1-11.txt");
  const std::string theirs = moe::test::shared_fixture("iq/kjv.imatrix.gguf");
  if (text.empty() || theirs.empty()) return moe::test::skip("shared fixtures absent (iq/)");
  const std::string dir = moe::test::temp_dir();
  const std::string f32 = moe::test::trained_model_f32(dir);
  // The README's llama-imatrix command, and the same in the legacy format.
  for (const char* fmt : {"gguf", "dat"}) {
    const auto r = moe::test::run_command({bin("moe-imatrix"), "-m", f32, "-f", text, "-c", "128", "-t", "2", "-o",
                                           dir + "/ours." + fmt, "--output-format", fmt});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out.find("Final estimate: PPL = ") != std::string::npos);
  }
  const moe::ImportanceMatrix ours = moe::load_importance_matrix(dir + "/ours.gguf");
  const moe::ImportanceMatrix ours_dat = moe::load_importance_matrix(dir + "/ours.dat");
  const moe::ImportanceMatrix ref = moe::load_importance_matrix(theirs);
  CHECK(ours.chunk_count == ref.chunk_count);  // 91 chunks of 128 tokens
  CHECK(ours.chunk_size == ref.chunk_size);
  CHECK(ours.datasets == std::vector<std::string>{text});
  CHECK(ours_dat.chunk_count == ref.chunk_count);
  REQUIRE(ours.weights.size() == ref.weights.size());
  double worst = 0;
  for (const auto& [name, w] : ref.weights) {
    INFO(name);
    REQUIRE(ours.weights.count(name) == 1);
    const std::vector<float>& o = ours.weights.at(name);
    REQUIRE(o.size() == w.size());
    const double d = mean_relative_difference(o, w);
    worst = std::max(worst, d);
    // The two formats of our run agree to rounding.
    CHECK(mean_relative_difference(o, ours_dat.weights.at(name)) < 1e-6);
  }
  // The activations differ only by float summation order and the odd expert
  // a near-tie routes elsewhere.
  MESSAGE("worst mean relative difference of an entry from llama-imatrix's: " << worst);
  CHECK(worst < 0.02);

  // What matters: a file quantized with either matrix is as good.
  const std::string theirs_copy = dir + "/kjv.imatrix.gguf";
  if (!fs::exists(theirs_copy)) fs::copy_file(theirs, theirs_copy);
  for (const auto& [im, out] : {std::pair{dir + "/ours.gguf", dir + "/ours.IQ2_XXS.gguf"},
                                std::pair{theirs_copy, dir + "/theirs.IQ2_XXS.gguf"}}) {
    const auto r = moe::test::run_command({bin("moe-quantize"), "--imatrix", im, "--tensor-type", "blk\\.4\\.=q4_K",
                                           f32, out, "IQ2_XXS", "2"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  const double ppl_ours = moe::test::ruth_perplexity(dir + "/ours.IQ2_XXS.gguf");
  const double ppl_theirs = moe::test::ruth_perplexity(dir + "/theirs.IQ2_XXS.gguf");
  MESSAGE("Ruth perplexity of IQ2_XXS: with moe-imatrix's matrix " << ppl_ours << ", with llama-imatrix's "
                                                                    << ppl_theirs);
  CHECK(std::fabs(ppl_ours / ppl_theirs - 1) < 0.005);
}

TEST_CASE("moe-imatrix: --in-file adds to a previous matrix as if the text had run once") {
  const std::string text = moe::test::shared_fixture("iq/genesis1-11.txt");
  if (text.empty()) return moe::test::skip("shared fixtures absent (iq/genesis1-11.txt)");
  const std::string dir = moe::test::temp_dir();
  const std::string f32 = moe::test::trained_model_f32(dir);
  auto imatrix = [&](std::vector<std::string> extra, const std::string& out) {
    std::vector<std::string> argv = {bin("moe-imatrix"), "-m", f32, "-f", text, "-c", "128", "-t", "2", "--no-ppl",
                                     "-o", out};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto r = moe::test::run_command(argv);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  };
  imatrix({"--chunks", "6"}, dir + "/first.gguf");
  imatrix({"--chunk", "6", "--chunks", "6", "--in-file", dir + "/first.gguf"}, dir + "/both.gguf");
  imatrix({"--chunks", "12"}, dir + "/whole.gguf");
  const moe::ImportanceMatrix both = moe::load_importance_matrix(dir + "/both.gguf");
  const moe::ImportanceMatrix whole = moe::load_importance_matrix(dir + "/whole.gguf");
  CHECK(both.chunk_count == 12);
  CHECK(both.datasets.size() == 2);  // the text, twice: once per run
  REQUIRE(both.weights.size() == whole.weights.size());
  for (const auto& [name, w] : whole.weights) {
    INFO(name);
    CHECK(mean_relative_difference(both.weights.at(name), w) < 1e-5);
  }
  // A matrix for another model is refused, naming the entry.
  const std::string other = moe::test::shared_fixture("models/tiny-dsv3.f32.gguf");
  if (other.empty()) return;
  const auto r = moe::test::run_command({bin("moe-imatrix"), "-m", other, "-f", text, "-c", "128", "--chunks", "1",
                                         "--in-file", dir + "/whole.gguf", "-o", dir + "/bad.gguf"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("was seen with") != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/bad.gguf"));
}

// DeepSeek-V4: moe-imatrix's matrix for tiny-dsv4 is llama-imatrix's
// (tests/fixtures/tiny-dsv4.llama-imatrix.gguf, scripts/make-imatrix-reference.sh),
// the grouped output projection attn_output_a included (one slice per group;
// llama-quantize 3.22.1 refuses that entry for a 2-D tensor), and
// moe-quantize applies each group's slice to that group's rows.
TEST_CASE("moe-imatrix on deepseek4: llama-imatrix's matrix, and each group's slice quantizes its rows") {
  const std::string f32 = moe::test::shared_fixture("models/tiny-dsv4.f32.gguf");
  if (f32.empty()) return moe::test::skip("tiny-dsv4.f32 fixture absent");
  const std::string dir = moe::test::temp_dir();
  const std::string theirs = moe::test::local_fixture("tiny-dsv4.llama-imatrix.gguf");
  const auto r = moe::test::run_command({bin("moe-imatrix"), "-m", f32, "-f", moe::test::local_fixture("perplexity-text.txt"),
                                         "-c", "128", "-t", "2", "-o", dir + "/ours.gguf"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const moe::ImportanceMatrix ours = moe::load_importance_matrix(dir + "/ours.gguf");
  const moe::ImportanceMatrix ref = moe::load_importance_matrix(theirs);
  CHECK(ours.chunk_count == ref.chunk_count);
  REQUIRE(ours.weights.size() == ref.weights.size());  // hc, compressors, indexer, grouped output, experts, ...
  double worst = 0;
  for (const auto& [name, w] : ref.weights) {
    INFO(name);
    REQUIRE(ours.weights.count(name) == 1);
    REQUIRE(ours.weights.at(name).size() == w.size());
    worst = std::max(worst, mean_relative_difference(ours.weights.at(name), w));
  }
  // Float order, and the odd token a near-tie routes to another expert
  // (measured 0.0017 on blk.2's experts).
  MESSAGE("worst mean relative difference of an entry from llama-imatrix's: " << worst);
  CHECK(worst < 0.01);

  // Quantized with llama-imatrix's matrix: every row block of attn_output_a
  // (a group's rows) is quantized with that group's slice.
  const std::string out = dir + "/v4.IQ4_XS.gguf";
  const auto q = moe::test::run_command({bin("moe-quantize"), "--imatrix", theirs, f32, out, "IQ4_XS", "2"});
  REQUIRE_MESSAGE(q.exit_code == 0, q.err);
  const moe::GgufFile in = moe::GgufFile::open(f32), res = moe::GgufFile::open(out);
  const std::string name = "blk.1.attn_output_a.weight";
  const moe::GgufTensorInfo& src = in.tensor(name);
  const moe::GgufTensorInfo& dst = res.tensor(name);
  const std::vector<float>& im = ref.weights.at(name);
  const int64_t cols = src.shape[0], rows = src.shape[1], groups = static_cast<int64_t>(im.size()) / cols;
  REQUIRE(groups == 2);
  const int64_t block = rows / groups;
  const size_t row_bytes = moe::ggml_row_size(dst.type, cols);
  std::vector<uint8_t> want(row_bytes * static_cast<size_t>(block));
  for (int64_t g = 0; g < groups; ++g) {
    CAPTURE(g);
    const float* x = reinterpret_cast<const float*>(src.data) + g * block * cols;
    moe::quantize_rows(dst.type, x, want.data(), block, cols, im.data() + g * cols);
    CHECK(std::equal(want.begin(), want.end(), dst.data + static_cast<size_t>(g) * want.size()));
  }
  // The slices differ, so the first group's slice gives other bytes for the second group.
  const float* x1 = reinterpret_cast<const float*>(src.data) + block * cols;
  moe::quantize_rows(dst.type, x1, want.data(), block, cols, im.data());
  CHECK_FALSE(std::equal(want.begin(), want.end(), dst.data + want.size()));
}

// What enters a V4 routed expert's down projection is its clamped SwiGLU,
// silu(min(g, L)) * clamp(u, -L, L), whose magnitude is at most
// L * max(L, 0.279) (silu's minimum is -0.278): with a tight clamp the
// importance of every ffn_down_exps column stays below that bound's square,
// where the unclamped products would exceed it.
TEST_CASE("moe-imatrix on deepseek4: the routed experts' down projection sees the clamped SwiGLU") {
  const std::string dir = moe::test::temp_dir();
  nlohmann::json config = moe::test::tiny_dsv4_config();
  const double limit = 0.05;
  config["swiglu_limit"] = limit;
  moe::test::synth_from_config(config, dir, {"--type", "F32", "-o", dir + "/v4.gguf"});
  auto r = moe::test::run_command({bin("moe-imatrix"), "-m", dir + "/v4.gguf", "-f", moe::test::local_fixture("kjv-ruth.txt"),
                              "-c", "128", "--chunks", "2", "-t", "2", "--no-ppl", "-o", dir + "/im.gguf"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const moe::ImportanceMatrix im = moe::load_importance_matrix(dir + "/im.gguf");
  const double bound = std::pow(limit * std::max(limit, 0.279), 2);
  int checked = 0;
  for (const auto& [name, w] : im.weights) {
    if (name.find("ffn_down_exps") == std::string::npos) continue;
    INFO(name);
    ++checked;
    CHECK(*std::max_element(w.begin(), w.end()) <= bound);
    CHECK(*std::max_element(w.begin(), w.end()) > 0);
  }
  CHECK(checked == 4);
}
