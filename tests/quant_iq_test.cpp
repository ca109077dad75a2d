// The IQ formats: the grids are llama.cpp's, decoding agrees with the float
// dequantization, and perplexity on held-out text (the book of Ruth) with the
// IQ fixtures is llama.cpp's within 0.5% (its table in ../shared/fixtures/iq).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "quant/blocks_iq.h"
#include "quant/dequantize.h"
#include "quant/iq_grids.h"
#include "test_util.h"

using namespace moe;

namespace {

template <typename T, size_t N>
uint64_t fnv1a(const std::array<T, N>& a) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (T v : a)
    for (size_t j = 0; j < sizeof(T); ++j) h = (h ^ ((static_cast<uint64_t>(v) >> (8 * j)) & 0xff)) * 0x100000001b3ull;
  return h;
}

}  // namespace

TEST_CASE("IQ grids: the expanded codebooks are ggml's (hashes of ggml-common.h's tables)") {
  const IqGrids& g = iq_grids();
  CHECK(fnv1a(g.iq2xxs) == 0xbb4ee025b5ac6e8eull);
  CHECK(fnv1a(g.iq2xs) == 0xc9b1ee61e79909bdull);
  CHECK(fnv1a(g.iq2s) == 0x123edd38a3b62b90ull);
  CHECK(fnv1a(g.iq3xxs) == 0xdfa5dc83d6a155d5ull);
  CHECK(fnv1a(g.iq3s) == 0xfa37020c25b44829ull);
  CHECK(fnv1a(g.iq1s) == 0x6703ed863501ae2eull);
  CHECK(g.iq2xxs[1] == 0x080808080808082bull);
  CHECK(g.iq3xxs[255] == 0x3e341c04u);
  CHECK(g.iq1s[1] == 0xffffffffffffff01ull);
  for (size_t i = 0; i < g.iq1s.size(); ++i)
    for (int j = 0; j < 8; ++j)
      CHECK(static_cast<int8_t>(g.iq1s_x8[i] >> (8 * j)) == 8 * static_cast<int8_t>(g.iq1s[i] >> (8 * j)));
  // ksigns: 7 bits and even parity (ggml's ksigns_iq2xs).
  CHECK(g.ksigns[0] == 0);
  CHECK(g.ksigns[1] == 129);
  CHECK(g.ksigns[127] == 255);
  CHECK(g.ksigns64[1] == 0xff000000000000ffull);
}

TEST_CASE("IQ blocks: the integer decoding is the float dequantization, element for element") {
  std::mt19937 rng(5);
  for (GgmlType t : {GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS, GgmlType::IQ3_S,
                     GgmlType::IQ1_S, GgmlType::IQ1_M, GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
    CAPTURE(ggml_type_name(t));
    const GgmlTypeTraits& tr = ggml_type_traits(t);
    const int64_t n = 4 * tr.block_size;
    const std::vector<uint8_t> w = test::random_weights(t, n, rng);
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_row_ref(t, w.data(), y.data(), n);
    for (int64_t b = 0; b < 4; ++b) {
      const uint8_t* blk = w.data() + static_cast<size_t>(b) * tr.type_size;
      const double d = iq_block_d(t, blk), k = iq_fraction(t);
      for (int g = 0; g < tr.block_size / 32; ++g) {
        IqGroup grp;
        iq_decode_group(t, blk, g, grp);
        for (int j = 0; j < 32; ++j) {
          const double want = d * k * grp.scale[j / 16] * grp.v[j];
          const float got = y[static_cast<size_t>(b * tr.block_size + 32 * g + j)];
          CHECK(std::fabs(got - want) <= 1e-6 * std::fabs(want) + 1e-30);
        }
      }
    }
  }
}

TEST_CASE("IQ perplexity: the book of Ruth with each IQ fixture is llama-perplexity's within 0.5%") {
  const std::string csv = test::shared_fixture("iq/llama-perplexity-ruth-c128.csv");
  if (csv.empty()) return test::skip("iq fixtures absent");
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // type,bytes,ppl
  int n = 0;
  while (std::getline(in, line)) {
    const std::string type = line.substr(0, line.find(','));
    const double want = std::stod(line.substr(line.rfind(',') + 1));
    if (type == "f32") continue;  // that file is not shipped (the README says how to remake it)
    CAPTURE(type);
    const double got = test::ruth_perplexity(test::shared_fixture("iq/kjv." + type + ".gguf"));
    MESSAGE(type << ": PPL " << got << " (llama.cpp " << want << ")");
    CHECK(std::fabs(got - want) <= 0.005 * want);
    ++n;
  }
  CHECK(n == 5);
}

// The IQ file types no fixture file has (iq1_s and iq2_xs among their
// types), made here by moe-quantize from the trained model and the fixtures'
// importance matrix: the files are llama-quantize's byte for byte (the
// reference hashes of tool_quantize_test), and their Ruth perplexity is
// llama-perplexity's on the same files (tests/fixtures/llama-perplexity-ruth-iq-more.csv:
// llama-quantize --imatrix kjv.imatrix.gguf --tensor-type 'blk\.4\.=q4_K' kjv.f32.gguf OUT TYPE 2, then
// llama-perplexity -f kjv-ruth.txt -c 128 -t 2 -ctk f32 -ctv f32 -fa off, llama.cpp 3.22.1).
TEST_CASE("IQ perplexity: the IQ file types without a fixture file, made here, are llama-perplexity's within 0.5%") {
  const std::string imatrix = test::shared_fixture("iq/kjv.imatrix.gguf");
  if (imatrix.empty()) return test::skip("iq fixtures absent (iq/kjv.imatrix.gguf)");
  const std::string dir = test::temp_dir();
  const std::string f32 = test::trained_model_f32(dir);
  std::ifstream in(test::local_fixture("llama-perplexity-ruth-iq-more.csv"));
  std::string line;
  std::getline(in, line);  // type,bytes,ppl
  int n = 0;
  while (std::getline(in, line)) {
    const std::string type = line.substr(0, line.find(','));
    const auto bytes = std::stoull(line.substr(line.find(',') + 1));
    const double want = std::stod(line.substr(line.rfind(',') + 1));
    CAPTURE(type);
    const std::string out = dir + "/kjv." + type + ".gguf";
    const auto q = test::run_command({test::bin_dir() + "/moe-quantize", "--imatrix", imatrix, "--tensor-type",
                                      "blk\\.4\\.=q4_K", f32, out, type, "2"});
    REQUIRE_MESSAGE(q.exit_code == 0, q.err);
    // Tensor for tensor llama-quantize's file (within the 32-byte alignment:
    // the metadata records the importance matrix by the longer path given here).
    CHECK(std::filesystem::file_size(out) >= bytes);
    CHECK(std::filesystem::file_size(out) <= bytes + imatrix.size() + 32);
    const double got = test::ruth_perplexity(out);
    MESSAGE(type << ": PPL " << got << " (llama.cpp " << want << ")");
    CHECK(std::fabs(got - want) <= 0.005 * want);
    ++n;
  }
  CHECK(n == 6);
}
