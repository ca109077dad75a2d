// gguf-split sets: the first shard loads the whole set with the logits of the
// unsplit file; moe-quantize and moe-convert write sets that are llama-gguf-
// split's own byte for byte; a missing, foreign or truncated shard, or a later
// shard given first, is an error naming the file.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/deepseek2.h"
#include "test_util.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

std::string bin(const std::string& tool) { return test::bin_dir() + "/" + tool; }

// Prefill logits of a fixed prompt.
std::vector<float> logits_of(const std::string& path) {
  auto model = Deepseek2Model::load(path);
  Deepseek2Session s(*model, 32, 32, 1);
  const std::vector<int32_t> tokens = {0, 672, 646, 1194, 292, 1073, 114, 286};
  std::vector<float> out(tokens.size() * static_cast<size_t>(model->config().vocab_size));
  s.forward(tokens.data(), static_cast<int64_t>(tokens.size()), out.data(), true);
  return out;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Splits `src` with moe-quantize (tensors copied, not converted: requantizing
// Q4_K_M as Q4_K_M keeps every type) into dir/PREFIX-0000i-of-0000N.gguf.
std::vector<std::string> split(const std::string& src, const std::string& dir, const std::string& prefix,
                               const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {bin("moe-quantize"), src, dir + "/" + prefix + ".gguf", "Q4_K_M",
                                   "--allow-requantize"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  const auto r = test::run_command(argv);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix + "-", 0) == 0) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("gguf-split: llama-gguf-split's set gives exactly the logits of the unsplit file") {
  const std::string first = test::shared_fixture("split/tiny-dsv3.Q4_K_M-00001-of-00003.gguf");
  const std::string whole = test::shared_fixture("models/tiny-dsv3.Q4_K_M.gguf");
  if (first.empty() || whole.empty()) return test::skip("split fixtures absent");
  const GgufFile f = GgufFile::open(first);
  CHECK(f.shards().size() == 3);
  CHECK(f.tensors().size() == 52);
  CHECK(f.find_tensor("blk.2.ffn_down_exps.weight")->shard == 2);
  CHECK(same(logits_of(first), logits_of(whole)));
  // moe-quantize writes the same three files byte for byte.
  const std::string dir = test::temp_dir();
  const std::vector<std::string> ours =
      split(test::shared_fixture("models/tiny-dsv3.f32.gguf"), dir, "tiny-dsv3.Q4_K_M", {"--split-max-tensors", "20"});
  REQUIRE(ours.size() == 3);
  for (int i = 0; i < 3; ++i)
    CHECK_MESSAGE(test::read_file(ours[size_t(i)]) == test::read_file(f.shards()[size_t(i)].path), ours[size_t(i)]);
}

TEST_CASE("gguf-split: sets written by moe-quantize load as the unsplit file, by tensor count or by size") {
  const std::string src = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::vector<float> ref = logits_of(src);
  const std::string dir = test::temp_dir();
  const std::vector<std::string> by_count = split(src, dir, "count", {"--split-max-tensors", "7"});
  CHECK(by_count.size() == 8);  // 52 tensors
  CHECK(by_count.front() == dir + "/count-00001-of-00008.gguf");
  CHECK(same(logits_of(by_count.front()), ref));
  const std::vector<std::string> by_size = split(src, dir, "size", {"--split-max-size", "1M"});
  REQUIRE(by_size.size() > 3);
  for (const std::string& p : by_size) {
    const GgufFile shard = GgufFile::open(p, true, false);
    uint64_t bytes = 0;
    for (const GgufTensorInfo& t : shard.tensors()) bytes += t.nbytes;
    CHECK_MESSAGE((bytes <= 1000000 || shard.tensors().size() == 1), p);
  }
  CHECK(same(logits_of(by_size.front()), ref));
  // moe-gguf describes the whole set from its first file, and a later one alone.
  const auto all = test::run_command({bin("moe-gguf"), by_count.front()});
  CHECK(all.exit_code == 0);
  CHECK(all.out.find("gguf-split set   8 files") != std::string::npos);
  CHECK(all.out.find("tensors: 52") != std::string::npos);
  const auto one = test::run_command({bin("moe-gguf"), by_count[1]});
  CHECK(one.exit_code == 0);
  CHECK(one.out.find("shard 2 of 8 of a gguf-split set, described alone") != std::string::npos);
  // moe itself runs from the first shard.
  const auto run = test::run_command({bin("moe"), "-m", by_count.front(), "-p", "Hello", "-n", "4", "-t", "1"});
  CHECK_MESSAGE(run.exit_code == 0, run.err);
}

TEST_CASE("gguf-split: missing, foreign and truncated shards, and a later shard first, name the file") {
  const std::string src = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::string dir = test::temp_dir(), other = test::temp_dir();
  const std::vector<std::string> a = split(src, dir, "m", {"--split-max-tensors", "20"});
  const std::vector<std::string> b = split(src, other, "m", {"--split-max-tensors", "18"});
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  CHECK_THROWS_WITH_AS(GgufFile::open(a[1]), doctest::Contains("give the first shard"), GgufError);
  CHECK_THROWS_WITH_AS(Deepseek2Model::load(a[2]), doctest::Contains("shard 3 of 3"), GgufError);

  const std::vector<uint8_t> a3 = test::read_file(a[2]);
  fs::copy_file(b[2], a[2], fs::copy_options::overwrite_existing);  // another set's third shard
  CHECK_THROWS_WITH_AS(GgufFile::open(a[0]), doctest::Contains("different set"), GgufError);
  test::write_file(a[2], a3.data(), a3.size() / 2);  // truncated
  CHECK_THROWS_WITH_AS(GgufFile::open(a[0]), doctest::Contains(a[2].c_str()), GgufError);
  fs::remove(a[2]);
  CHECK_THROWS_WITH_AS(GgufFile::open(a[0]), doctest::Contains("m-00003-of-00003.gguf: shard 3 of 3"), GgufError);
  test::write_file(a[2], a3.data(), a3.size());
  CHECK_NOTHROW(GgufFile::open(a[0]));
  // The first shard must be named so that the others can be found.
  fs::rename(a[0], dir + "/renamed.gguf");
  CHECK_THROWS_WITH_AS(GgufFile::open(dir + "/renamed.gguf"), doctest::Contains("PREFIX-00001-of-00003.gguf"), GgufError);
}

TEST_CASE("gguf-split: a first shard holding no tensors (llama-gguf-split --no-tensor-first-split)") {
  const std::string src = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const GgufFile in = GgufFile::open(src);
  const std::string dir = test::temp_dir();
  const auto split_keys = [&](GgufWriter& w, uint16_t no) {
    w.set("split.no", GgufValue::u16(no));
    w.set("split.tensors.count", GgufValue::i32(static_cast<int32_t>(in.tensors().size())));
    w.set("split.count", GgufValue::u16(2));
  };
  {
    GgufWriter w(dir + "/e-00001-of-00002.gguf");
    for (const GgufKv& kv : in.metadata()) w.set(kv.key, kv.value);
    split_keys(w, 0);
    w.begin();
    w.finish();
  }
  {
    GgufWriter w(dir + "/e-00002-of-00002.gguf");
    split_keys(w, 1);
    for (const GgufTensorInfo& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape);
    w.begin();
    for (const GgufTensorInfo& t : in.tensors()) w.write_tensor_data(t.data, t.nbytes);
    w.finish();
  }
  const GgufFile set = GgufFile::open(dir + "/e-00001-of-00002.gguf");
  CHECK(set.shards().at(0).n_tensors == 0);
  CHECK(same(logits_of(dir + "/e-00001-of-00002.gguf"), logits_of(src)));
}

TEST_CASE("gguf-split: moe-convert writes a set that loads as its unsplit output") {
  const std::string hf = test::shared_fixture("hf/hf-tiny-dsv3");
  if (hf.empty()) return test::skip("hf-tiny-dsv3 fixture absent");
  const std::string dir = test::temp_dir();
  const auto one = test::run_command({bin("moe-convert"), hf, "-o", dir + "/one.gguf", "--outtype", "q8_0"});
  REQUIRE_MESSAGE(one.exit_code == 0, one.err);
  const auto set = test::run_command({bin("moe-convert"), hf, "-o", dir + "/set.gguf", "--outtype", "q8_0",
                                      "--split-max-tensors", "16"});
  REQUIRE_MESSAGE(set.exit_code == 0, set.err);
  CHECK(set.err.find("4 files") != std::string::npos);
  CHECK(same(logits_of(dir + "/set-00001-of-00004.gguf"), logits_of(dir + "/one.gguf")));
}
