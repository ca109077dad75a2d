// The threaded products give exactly what one thread gives: each output is
// computed by one thread with the same kernel, whatever the thread count and
// however rows and jobs are split. Shapes are large enough to take the
// parallel paths (the tiny fixtures mostly stay on one thread).
#include <doctest/doctest.h>

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
  for (int64_t n : {1, 2, 23}) {
    const std::vector<float> h = random_floats(static_cast<size_t>(n * D), rng);
    // Distinct experts per token, unevenly used: token t takes base, base+3,
    // base+5 (mod 8) with base = t*t mod 3, so experts 5 and 0 differ in load.
    std::vector<int32_t> ids(static_cast<size_t>(n * K));
    for (int64_t t = 0; t < n; ++t) {
      const int64_t base = (t * t) % 3, offset[K] = {0, 3, 5};
      for (int64_t k = 0; k < K; ++k) ids[static_cast<size_t>(t * K + k)] = static_cast<int32_t>((base + offset[k]) % E);
    }

    // Reference: each (token, slot) on its own through matmul_serial.
    std::vector<float> ref(static_cast<size_t>(n * K * D));
    std::vector<uint8_t> scratch(64 * 1024);
    std::vector<float> g(F), u(F);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const int32_t e = ids[static_cast<size_t>(t * K + k)];
        matmul_serial(gate.view.matrix(e), &h[static_cast<size_t>(t * D)], 1, g.data(), scratch.data());
        matmul_serial(up.view.matrix(e), &h[static_cast<size_t>(t * D)], 1, u.data(), scratch.data());
        swiglu(g.data(), u.data(), F, g.data());
        matmul_serial(down.view.matrix(e), g.data(), 1, &ref[static_cast<size_t>((t * K + k) * D)], scratch.data());
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
