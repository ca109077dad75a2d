// Quantized fixture models against their f32 originals: every tensor of each
// quantized GGUF (written by llama.cpp's llama-quantize) dequantizes to within
// the quantization error of the same tensor in the f32 file. A wrong block
// layout gives a relative error near 1 or above; the per-type bounds below are
// about 1.7 times the worst error measured on these fixtures.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "gguf/gguf_reader.h"
#include "quant/dequantize.h"
#include "test_util.h"

namespace {

using moe::GgmlType;

// Largest relative RMS error ||deq - f32|| / ||f32|| accepted for one tensor:
// about 1.7x the worst tensor measured on the fixtures (the table the test
// prints; measured worst in the comments). f16 is bounded by its rounding,
// at most 2^-11 relative per element.
double rel_rms_bound(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 0.0;     // must be bit-exact
    case GgmlType::F16: return 5e-4;    // measured 2.14e-4
    case GgmlType::Q8_0: return 0.01;   // measured 5.52e-3
    case GgmlType::Q6_K: return 0.03;   // measured 1.78e-2
    case GgmlType::Q5_0: return 0.08;   // measured 4.43e-2
    case GgmlType::Q4_K: return 0.12;   // measured 7.17e-2
    case GgmlType::Q4_0: return 0.15;   // measured 8.68e-2
    default: return -1;  // not in these fixtures: add a bound from a measurement
  }
}

struct TypeStats {
  int tensors = 0;
  int64_t elements = 0;
  double worst = 0;          // worst per-tensor relative RMS error
  std::string worst_tensor;  // file: tensor
  double err2 = 0, ref2 = 0; // sums over all tensors of this type
};

void compare_to_f32(const std::string& quant_rel, const std::string& f32_rel,
                    std::map<GgmlType, TypeStats>& stats) {
  const std::string quant_path = moe::test::shared_fixture("models/" + quant_rel);
  const std::string f32_path = moe::test::shared_fixture("models/" + f32_rel);
  REQUIRE(!quant_path.empty());
  REQUIRE(!f32_path.empty());
  const moe::GgufFile quant = moe::GgufFile::open(quant_path);
  const moe::GgufFile ref = moe::GgufFile::open(f32_path);
  CHECK(quant.tensors().size() == ref.tensors().size());

  for (const moe::GgufTensorInfo& t : quant.tensors()) {
    CAPTURE(quant_rel);
    CAPTURE(t.name);
    const moe::GgufTensorInfo* r = ref.find_tensor(t.name);
    REQUIRE_MESSAGE(r != nullptr, "tensor missing from " << f32_rel);
    REQUIRE(r->type == GgmlType::F32);
    REQUIRE(r->shape == t.shape);

    const std::vector<float> deq = moe::dequantize_tensor_ref(t.type, t.data, t.n_elements);
    std::vector<float> want(static_cast<size_t>(r->n_elements));
    std::memcpy(want.data(), r->data, want.size() * sizeof(float));

    if (t.type == GgmlType::F32) {
      CHECK(std::memcmp(deq.data(), want.data(), want.size() * sizeof(float)) == 0);
    }
    double err2 = 0, ref2 = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      const double d = static_cast<double>(deq[i]) - want[i];
      err2 += d * d;
      ref2 += static_cast<double>(want[i]) * want[i];
    }
    REQUIRE(std::isfinite(err2));
    const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : (err2 > 0 ? INFINITY : 0.0);

    TypeStats& s = stats[t.type];
    ++s.tensors;
    s.elements += t.n_elements;
    s.err2 += err2;
    s.ref2 += ref2;
    if (rel >= s.worst) {
      s.worst = rel;
      s.worst_tensor = quant_rel + ": " + t.name;
    }
    const double bound = rel_rms_bound(t.type);
    CHECK_MESSAGE(bound >= 0, "no error bound for type " << moe::ggml_type_name(t.type));
    CHECK_MESSAGE(rel <= bound, moe::ggml_type_name(t.type) << " relative RMS error " << rel
                                                            << " above " << bound);
  }
}

}  // namespace

TEST_CASE("quantized fixture models dequantize close to their f32 originals") {
  struct Pair {
    const char* quant;
    const char* f32;
  };
  const Pair pairs[] = {
      {"tiny-dsv3.Q8_0.gguf", "tiny-dsv3.f32.gguf"},
      {"tiny-dsv3.Q6_K.gguf", "tiny-dsv3.f32.gguf"},
      {"tiny-dsv3.Q4_K_M.gguf", "tiny-dsv3.f32.gguf"},
      {"tiny-dsv3.Q4_0.gguf", "tiny-dsv3.f32.gguf"},
      {"tiny-dsv2lite.F16.gguf", "tiny-dsv2lite.f32.gguf"},
      {"tiny-dsv2lite.Q8_0.gguf", "tiny-dsv2lite.f32.gguf"},
      {"tiny-dsv2lite.Q4_K_M.gguf", "tiny-dsv2lite.f32.gguf"},
  };
  std::map<GgmlType, TypeStats> stats;
  int compared = 0;
  for (const Pair& p : pairs) {
    if (moe::test::shared_fixture(std::string("models/") + p.quant).empty() ||
        moe::test::shared_fixture(std::string("models/") + p.f32).empty()) {
      MESSAGE("fixture missing: " << p.quant << " or " << p.f32);
      continue;
    }
    compare_to_f32(p.quant, p.f32, stats);
    ++compared;
  }
  if (compared == 0)
    return moe::test::skip("no quantized fixture models in ../shared/fixtures/models");

  std::string table = "relative RMS error ||deq - f32|| / ||f32|| per type:\n";
  table += "  type   tensors    elements   overall     worst      bound   (worst tensor)\n";
  for (const auto& [type, s] : stats) {
    char line[512];
    std::snprintf(line, sizeof line, "  %-6s %7d %11lld   %.3e   %.3e   %.2e   (%s)\n",
                  moe::ggml_type_name(type), s.tensors, static_cast<long long>(s.elements),
                  s.ref2 > 0 ? std::sqrt(s.err2 / s.ref2) : 0.0, s.worst, rel_rms_bound(type),
                  s.worst_tensor.c_str());
    table += line;
  }
  MESSAGE(table);
}
