// The SIMD dot-product kernels against the scalar reference, bit for bit,
// over awkward shapes: row counts that are not multiples of the row block,
// token counts that are not multiples of the token tile, one block per row.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "core/ggml_type.h"
#include "cpu/qdot.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"
#include "test_util.h"

using namespace moe;

namespace {

struct Case {
  GgmlType type;
  int64_t block;
};

void check_isa(CpuIsa isa) {
  // F16/BF16 rows of 37, 111, 296 elements: whole 32-element steps and a tail.
  const Case cases[] = {{GgmlType::Q8_0, 32}, {GgmlType::Q4_0, 32}, {GgmlType::Q5_0, 32}, {GgmlType::Q4_1, 32},
                        {GgmlType::Q5_1, 32}, {GgmlType::F16, 37}, {GgmlType::BF16, 37},
                        {GgmlType::Q2_K, 256}, {GgmlType::Q3_K, 256}, {GgmlType::Q4_K, 256}, {GgmlType::Q5_K, 256},
                        {GgmlType::Q6_K, 256}, {GgmlType::MXFP4, 32}};
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int checked = 0;
  for (const Case& c : cases) {
    const QdotFn kernel = qdot_kernel(c.type, isa);
    REQUIRE_MESSAGE(static_cast<bool>(kernel), ggml_type_name(c.type));
    const GgmlType at = vec_dot_type(c.type);
    for (int64_t blocks : {1, 3, 8}) {
      const int64_t n = blocks * c.block;
      for (int64_t rows : {1, 5, 16, 37}) {
        for (int64_t toks : {1, 2, 3, 4, 5, 7, 8, 9, 14}) {
          std::vector<float> wf(static_cast<size_t>(rows * n)), af(static_cast<size_t>(toks * n));
          for (float& v : wf) v = normal(rng);
          // Heavy-tailed activations: some blocks dominated by one value.
          for (float& v : af) v = normal(rng) * (rng() % 16 == 0 ? 30.0f : 1.0f);
          const size_t wrow = ggml_row_size(c.type, n), arow = ggml_row_size(at, n);
          std::vector<uint8_t> w(wrow * static_cast<size_t>(rows)), a(arow * static_cast<size_t>(toks));
          for (int64_t r = 0; r < rows; ++r) quantize_row_ref(c.type, &wf[static_cast<size_t>(r * n)], &w[wrow * r], n);
          for (int64_t t = 0; t < toks; ++t)
            quantize_activation_row(at, &af[static_cast<size_t>(t * n)], &a[arow * t], n);
          const int64_t y_stride = rows + 3;  // outputs need not be dense
          std::vector<float> y(static_cast<size_t>(toks * y_stride), -1.0f);
          kernel(QdotArgs{w.data(), wrow, rows, a.data(), arow, toks, n, y.data(), y_stride});
          for (int64_t t = 0; t < toks; ++t)
            for (int64_t r = 0; r < rows; ++r) {
              const float want = vec_dot_row(c.type, &w[wrow * r], &a[arow * t], n);
              const float got = y[static_cast<size_t>(t * y_stride + r)];
              if (got != want) {
                FAIL_CHECK(std::string(ggml_type_name(c.type)) << " n=" << n << " rows=" << rows << " toks=" << toks << " r=" << r
                                                  << " t=" << t << ": " << got << " != " << want);
                return;
              }
              ++checked;
            }
          for (int64_t t = 0; t < toks; ++t)
            for (int64_t r = rows; r < y_stride; ++r) CHECK(y[static_cast<size_t>(t * y_stride + r)] == -1.0f);
        }
      }
    }
  }
  MESSAGE(std::string(cpu_isa_name(isa)) << ": " << checked << " dot products equal the reference");
}

// Weight blocks of random bytes (test::random_weights): every bit pattern of
// the packed scales, mins and high bits, which a quantizer's output may never
// produce, must be unpacked as the reference does.
void check_isa_random_blocks(CpuIsa isa) {
  const GgmlType types[] = {GgmlType::Q8_0,    GgmlType::Q4_0,   GgmlType::Q5_0,    GgmlType::Q4_1,   GgmlType::Q5_1,
                            GgmlType::Q2_K,    GgmlType::Q3_K,   GgmlType::Q4_K,    GgmlType::Q5_K,   GgmlType::Q6_K,
                            GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S,   GgmlType::IQ3_XXS, GgmlType::IQ3_S,
                            GgmlType::IQ1_S,   GgmlType::IQ1_M,  GgmlType::IQ4_NL,  GgmlType::IQ4_XS, GgmlType::MXFP4};
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int checked = 0;
  for (const GgmlType type : types) {
    const QdotFn kernel = qdot_kernel(type, isa);
    REQUIRE(static_cast<bool>(kernel));
    const GgmlType at = vec_dot_type(type);
    const int64_t n = 3 * ggml_type_traits(type).block_size, rows = 23;
    const size_t wrow = ggml_row_size(type, n), arow = ggml_row_size(at, n);
    for (int64_t toks : {1, 2, 3, 5, 8, 9}) {
      const std::vector<uint8_t> w = test::random_weights(type, rows * n, rng);
      std::vector<uint8_t> a(arow * static_cast<size_t>(toks));
      std::vector<float> af(static_cast<size_t>(n));
      for (int64_t t = 0; t < toks; ++t) {
        for (float& v : af) v = normal(rng);
        quantize_activation_row(at, af.data(), &a[arow * t], n);
      }
      std::vector<float> y(static_cast<size_t>(toks * rows));
      kernel(QdotArgs{w.data(), wrow, rows, a.data(), arow, toks, n, y.data(), rows});
      for (int64_t t = 0; t < toks; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          const float want = vec_dot_row(type, &w[wrow * r], &a[arow * t], n);
          const float got = y[static_cast<size_t>(t * rows + r)];
          if (got != want) {
            FAIL_CHECK(std::string(ggml_type_name(type)) << " random blocks, toks=" << toks << " r=" << r << " t=" << t << ": " << got
                                            << " != " << want);
            return;
          }
          ++checked;
        }
    }
  }
  MESSAGE(std::string(cpu_isa_name(isa)) << ": " << checked << " products over random-byte blocks equal the reference");
}

}  // namespace

TEST_CASE("qdot: AVX2 kernels equal the scalar reference bit for bit") {
  if (cpu_isa_detected() == CpuIsa::kScalar || qdot_kernel(GgmlType::Q8_0, CpuIsa::kAvx2) == nullptr)
    return moe::test::skip("this CPU or build has no AVX2 kernels");
  check_isa(CpuIsa::kAvx2);
  check_isa_random_blocks(CpuIsa::kAvx2);
}

TEST_CASE("qdot: AVX-512 VNNI kernels equal the scalar reference bit for bit") {
  if (cpu_isa_detected() != CpuIsa::kAvx512Vnni || qdot_kernel(GgmlType::Q8_0, CpuIsa::kAvx512Vnni) == nullptr)
    return moe::test::skip("this CPU or build has no AVX-512 VNNI kernels");
  check_isa(CpuIsa::kAvx512Vnni);
  check_isa_random_blocks(CpuIsa::kAvx512Vnni);
}
