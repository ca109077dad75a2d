// The threaded products give exactly what one thread gives: each output is
// computed by one thread with the same kernel, whatever the thread count and
// however rows and jobs are split. Shapes are large enough to take the
// parallel paths (the tiny fixtures mostly stay on one thread).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/ggml_type.h"
#include "core/thread_pool.h"
#include "cpu/matmul.h"
#include "cpu/moe_experts.h"
#include "cpu/ops.h"
#include "quant/quantize.h"

using namespace moe;

namespace {

struct RandomWeights {
  std::vector<uint8_t> bytes;
  TensorView view;
  RandomWeights(GgmlType type, int64_t in, int64_t out, int64_t n_mat, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const size_t row = ggml_row_size(type, in);
    bytes.resize(row * static_cast<size_t>(out * n_mat));
    std::vector<float> f(static_cast<size_t>(in));
    for (int64_t r = 0; r < out * n_mat; ++r) {
      for (float& v : f) v = normal(rng);
      quantize_row_ref(type, f.data(), &bytes[row * static_cast<size_t>(r)], in);
    }
    view.type = type;
    view.ne = {in, out, n_mat, 1};
    view.data = bytes.data();
  }
};

std::vector<float> random_floats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

}  // namespace

TEST_CASE("parallel matmul: 1, 2 and 3 threads give identical results") {
  std::mt19937 rng(7);
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16}) {
    const int64_t in = 512, out = 1037;  // rows not a multiple of any block or job
    RandomWeights w(type, in, out, 1, rng);
    for (int64_t n : {1, 5, 19}) {
      const std::vector<float> x = random_floats(static_cast<size_t>(n * in), rng);
      std::vector<uint8_t> scratch(matmul_scratch_bytes(w.view, n));
      std::vector<float> ref(static_cast<size_t>(n * out));
      matmul_serial(w.view, x.data(), n, ref.data(), scratch.data());
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        std::vector<float> y(ref.size(), -1.0f);
        matmul(w.view, x.data(), n, y.data(), scratch.data(), pool);
        CHECK_MESSAGE(std::memcmp(y.data(), ref.data(), ref.size() * sizeof(float)) == 0,
                      ggml_type_name(type) << " n=" << n << " threads=" << threads);
      }
    }
  }
}

TEST_CASE("grouped experts: thread count and uneven expert loads do not change the results") {
  std::mt19937 rng(11);
  const int64_t D = 256, F = 320, E = 8, K = 3;
  RandomWeights gate(GgmlType::Q4_K, D, F, E, rng), up(GgmlType::Q4_K, D, F, E, rng);
  RandomWeights down(GgmlType::Q8_0, F, D, E, rng);
  for (int64_t n : {1, 2, 23, 40}) {
    const std::vector<float> h = random_floats(static_cast<size_t>(n * D), rng);
    // Distinct experts per token, unevenly used: token t takes base, base+3,
    // base+5 (mod 8) with base = t*t mod 3, so experts 5 and 0 differ in load.
    std::vector<int32_t> ids(static_cast<size_t>(n * K));
    for (int64_t t = 0; t < n; ++t) {
      const int64_t base = (t * t) % 3, offset[K] = {0, 3, 5};
      for (int64_t k = 0; k < K; ++k) ids[static_cast<size_t>(t * K + k)] = static_cast<int32_t>((base + offset[k]) % E);
    }

    // Reference: each expert's tokens gathered and put through matmul_serial,
    // which takes the repacked GEMM from kGemmMinTokens tokens on, as the
    // grouped product must for an expert that many tokens chose.
    std::vector<float> ref(static_cast<size_t>(n * K * D));
    for (int32_t e = 0; e < E; ++e) {
      std::vector<int64_t> slots;  // t * K + k
      for (int64_t i = 0; i < n * K; ++i)
        if (ids[static_cast<size_t>(i)] == e) slots.push_back(i);
      const int64_t m = static_cast<int64_t>(slots.size());
      if (m == 0) continue;
      std::vector<float> x(static_cast<size_t>(m * D)), g(static_cast<size_t>(m * F)), u(g.size()), y(x.size());
      for (int64_t i = 0; i < m; ++i)
        std::copy_n(&h[static_cast<size_t>(slots[static_cast<size_t>(i)] / K * D)], D, &x[static_cast<size_t>(i * D)]);
      std::vector<uint8_t> scratch(std::max(matmul_scratch_bytes(gate.view.matrix(e), m),
                                            matmul_scratch_bytes(down.view.matrix(e), m)));
      matmul_serial(gate.view.matrix(e), x.data(), m, g.data(), scratch.data());
      matmul_serial(up.view.matrix(e), x.data(), m, u.data(), scratch.data());
      swiglu(g.data(), u.data(), m * F, g.data());
      matmul_serial(down.view.matrix(e), g.data(), m, y.data(), scratch.data());
      for (int64_t i = 0; i < m; ++i)
        std::copy_n(&y[static_cast<size_t>(i * D)], D, &ref[static_cast<size_t>(slots[static_cast<size_t>(i)] * D)]);
    }
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      GroupedExperts experts;
      std::vector<float> out(ref.size(), -1.0f);
      experts.run(gate.view, up.view, down.view, h.data(), n, ids.data(), K, out.data(), pool);
      CHECK_MESSAGE(std::memcmp(out.data(), ref.data(), ref.size() * sizeof(float)) == 0,
                    "n=" << n << " threads=" << threads);
    }
  }
}
