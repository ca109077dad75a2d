// Q4_K rows interleaved four at a time (src/quant/q4k_r4.h,
// src/cpu/matmul_interleaved.h): the repack keeps every byte, the scalar
// reference is the Q4_K product up to float order, the AVX-512 kernel agrees
// with the reference and gives a token the same result with or without a
// neighbour, and matmul over an interleaved tensor is matmul over the Q4_K
// tensor (exactly, through the GEMM).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/ggml_type.h"
#include "core/thread_pool.h"
#include "cpu/gemm_q8.h"
#include "cpu/matmul.h"
#include "cpu/matmul_interleaved.h"
#include "quant/interleaved.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "quant/vec_dot.h"
#include "test_util.h"

using namespace moe;

namespace {

struct Rows {
  int64_t n;
  size_t stride;
  std::vector<uint8_t> q4k;         // 4 rows of Q4_K
  std::vector<BlockQ4_KR4> r4;      // the same, interleaved
  std::vector<uint8_t> act;         // 2 tokens of Q8_K
};

Rows make_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Rows x;
  x.n = n;
  x.stride = ggml_row_size(GgmlType::Q4_K, n);
  x.q4k = test::random_weights(GgmlType::Q4_K, 4 * n, rng);
  x.r4.resize(static_cast<size_t>(n / 256));
  repack_q4_k_r4(x.q4k.data(), x.stride, n, x.r4.data());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t act_row = ggml_row_size(GgmlType::Q8_K, n);
  x.act.resize(2 * act_row);
  for (int t = 0; t < 2; ++t) {
    std::vector<float> a(static_cast<size_t>(n));
    for (float& v : a) v = normal(rng);
    quantize_activation_row(GgmlType::Q8_K, a.data(), x.act.data() + t * act_row, n);
  }
  return x;
}

const BlockQ8_K* token(const Rows& x, int t) {
  return reinterpret_cast<const BlockQ8_K*>(x.act.data() + t * ggml_row_size(GgmlType::Q8_K, x.n));
}

}  // namespace

TEST_CASE("q4_k_r4: the interleaved rows hold every value of the four Q4_K rows") {
  for (const int64_t n : {256, 1024}) {
    const Rows x = make_rows(n, 3);
    for (int r = 0; r < 4; ++r) {
      std::vector<float> want(static_cast<size_t>(n)), got(want.size());
      dequantize_row_ref(GgmlType::Q4_K, x.q4k.data() + r * x.stride, want.data(), n);
      dequantize_q4_k_r4_row(x.r4.data(), r, n, got.data());
      for (int64_t i = 0; i < n; ++i) REQUIRE(std::memcmp(&want[size_t(i)], &got[size_t(i)], 4) == 0);
    }
  }
}

TEST_CASE("q4_k_r4: the reference product is Q4_K's, and the kernel the reference's, up to float order") {
  const Q4KR4DotFn fast = q4_k_r4_dot_kernel();
  for (const int64_t n : {256, 2048}) {
    const Rows x = make_rows(n, 5);
    const int64_t nb = n / 256;
    for (int t = 0; t < 2; ++t) {
      float ref[4];
      q4_k_r4_dot_ref(x.r4.data(), token(x, t), nb, ref);
      for (int r = 0; r < 4; ++r) {
        const float want = vec_dot_row(GgmlType::Q4_K, x.q4k.data() + r * x.stride, token(x, t), n);
        CHECK(std::fabs(ref[r] - want) <= 1e-5f * (1.0f + std::fabs(want)) * float(nb));
      }
    }
    if (!fast) continue;
    const BlockQ8_K* ys[2] = {token(x, 0), token(x, 1)};
    for (const int nt : {1, 2}) {
      std::vector<float> got(size_t(4 * nt));
      fast(x.r4.data(), ys, nt, nb, got.data());
      for (int t = 0; t < nt; ++t) {
        float ref[4];
        q4_k_r4_dot_ref(x.r4.data(), ys[t], nb, ref);
        for (int r = 0; r < 4; ++r) CHECK(std::fabs(got[size_t(4 * t + r)] - ref[r]) <= 1e-5f * (1.0f + std::fabs(ref[r])) * float(nb));
      }
    }
  }
  if (!fast) MESSAGE("no AVX-512 VNNI on this CPU: the kernel is not built for it");
}

TEST_CASE("q4_k_r4: unpacking gives back the Q4_K bytes that were interleaved, any bytes") {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  const int64_t n = 768;
  const size_t stride = ggml_row_size(GgmlType::Q4_K, n) + 16;  // rows not back to back
  std::vector<uint8_t> rows(4 * stride), back(rows.size(), 0);
  for (uint8_t& b : rows) b = static_cast<uint8_t>(byte(rng));
  std::vector<BlockQ4_KR4> r4(n / 256);
  repack_q4_k_r4(rows.data(), stride, n, r4.data());
  unpack_q4_k_r4(r4.data(), n, back.data(), stride);
  for (int r = 0; r < 4; ++r)
    CHECK(std::memcmp(rows.data() + r * stride, back.data() + r * stride, ggml_row_size(GgmlType::Q4_K, n)) == 0);
}

TEST_CASE("q4_k_r4: a token's result from the kernel is the same alone or beside another token") {
  const Q4KR4DotFn fast = q4_k_r4_dot_kernel();
  if (!fast) {
    MESSAGE("skipped: no AVX-512 VNNI on this CPU");
    return;
  }
  const Rows x = make_rows(1536, 7);
  const BlockQ8_K* pair[2] = {token(x, 0), token(x, 1)};
  float both[8], alone[4];
  fast(x.r4.data(), pair, 2, 6, both);
  for (int t = 0; t < 2; ++t) {
    fast(x.r4.data(), pair + t, 1, 6, alone);
    CHECK(std::memcmp(alone, both + 4 * t, sizeof alone) == 0);
  }
}

TEST_CASE("interleaved: matmul over an interleaved tensor is matmul over the file's rows, for every layout") {
  std::mt19937 rng(13);
  ThreadPool pool(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& [type, n_in] : {std::pair{GgmlType::Q4_K, int64_t{512}}, std::pair{GgmlType::Q8_0, int64_t{1408}},
                                   std::pair{GgmlType::Q5_0, int64_t{1408}}}) {
    CAPTURE(std::string(ggml_type_name(type)));
    const int64_t n_out = 40;
    const std::vector<uint8_t> file = test::random_weights(type, n_in * n_out, rng);
    const TensorView W = TensorView::contiguous("w", type, {n_in, n_out, 1, 1}, file.data());
    REQUIRE(can_interleave(W));
    std::vector<uint8_t> r4(interleaved_bytes(W));
    interleave_tensor(W, r4.data());
    const TensorView W4 = interleaved_view(W, r4.data());
    CHECK(is_interleaved(W4.type));
    CHECK(file_layout_type(W4.type) == type);
    CHECK(W4.nbytes() == r4.size());
    std::vector<uint8_t> back(file.size());
    deinterleave_tensor(W4, back.data());
    CHECK(back == file);

    for (const int64_t n_tok : {1, 2, 3, 5, 16, 21}) {
      std::vector<float> x(static_cast<size_t>(n_tok * n_in));
      for (float& v : x) v = normal(rng);
      std::vector<float> want(static_cast<size_t>(n_tok * n_out)), got(want.size());
      std::vector<uint8_t> scratch(std::max(matmul_scratch_bytes(W, n_tok), matmul_scratch_bytes(W4, n_tok)));
      matmul(W, x.data(), n_tok, want.data(), scratch.data(), pool);
      matmul(W4, x.data(), n_tok, got.data(), scratch.data(), pool);
      const bool gemm = activation_layout(W4, n_tok).gemm;
      CAPTURE(n_tok);
      // Rounding is relative to the sums' scale, not to one output's value
      // (an output near zero is a cancellation).
      float scale = 1.0f;
      for (float v : want) scale = std::max(scale, std::fabs(v));
      for (size_t i = 0; i < want.size(); ++i) {
        // The GEMM unpacks the groups and runs as for the file's type: the
        // same bits. The per-row kernels sum in another order: float rounding.
        if (gemm) REQUIRE(std::memcmp(&got[i], &want[i], 4) == 0);
        else REQUIRE(std::fabs(got[i] - want[i]) <= 2e-5f * scale);
      }
      // Row ranges that cut a group of four compute the group, write the range.
      std::vector<float> part(got.size(), -1.0f);
      std::vector<uint8_t> act(activation_row_bytes(W4) * static_cast<size_t>(n_tok));
      quantize_activations(W4, x.data(), n_tok, act.data());
      matmul_rows(W4, 5, 18, act.data(), n_tok, part.data(), n_out);
      for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t r = 0; r < n_out; ++r) {
          const float v = part[static_cast<size_t>(t * n_out + r)];
          if (r < 5 || r >= 18) CHECK(v == -1.0f);
          else CHECK(std::fabs(v - want[static_cast<size_t>(t * n_out + r)]) <= 2e-5f * scale);
        }
    }
  }
}

namespace {

// Four random rows of a 32-block type, interleaved, and two tokens of Q8_0.
template <typename Block>
struct Rows32 {
  int64_t n;
  size_t stride;
  std::vector<uint8_t> file;
  std::vector<Block> r4;
  std::vector<BlockQ8_0> act[2];
  std::vector<int32_t> sums[2];
};

template <typename Block>
Rows32<Block> make_rows32(GgmlType type, int64_t n, uint32_t seed,
                          void (*repack)(const uint8_t*, size_t, int64_t, Block*)) {
  std::mt19937 rng(seed);
  Rows32<Block> x;
  x.n = n;
  x.stride = ggml_row_size(type, n);
  x.file = test::random_weights(type, 4 * n, rng);
  x.r4.resize(static_cast<size_t>(n / 32));
  repack(x.file.data(), x.stride, n, x.r4.data());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int t = 0; t < 2; ++t) {
    std::vector<float> a(static_cast<size_t>(n));
    for (float& v : a) v = normal(rng);
    x.act[t].resize(static_cast<size_t>(n / 32));
    quantize_activation_row(GgmlType::Q8_0, a.data(), x.act[t].data(), n);
    for (const BlockQ8_0& b : x.act[t]) {
      int32_t s = 0;
      for (int8_t q : b.qs) s += q;
      x.sums[t].push_back(s);
    }
  }
  return x;
}

template <typename Block>
void check_q32(GgmlType type, GgmlType r4_type, void (*repack)(const uint8_t*, size_t, int64_t, Block*),
               void (*unpack)(const Block*, int64_t, uint8_t*, size_t),
               void (*ref)(const Block*, const BlockQ8_0*, int64_t, float*)) {
  CAPTURE(std::string(ggml_type_name(type)));
  // Any bytes survive the round trip.
  {
    std::mt19937 rng(17);
    std::uniform_int_distribution<int> byte(0, 255);
    const int64_t n = 96;
    const size_t stride = ggml_row_size(type, n) + 6;
    std::vector<uint8_t> rows(4 * stride), back(rows.size(), 0);
    for (uint8_t& b : rows) b = static_cast<uint8_t>(byte(rng));
    std::vector<Block> r4(n / 32);
    repack(rows.data(), stride, n, r4.data());
    unpack(r4.data(), n, back.data(), stride);
    for (int r = 0; r < 4; ++r)
      CHECK(std::memcmp(rows.data() + r * stride, back.data() + r * stride, ggml_row_size(type, n)) == 0);
  }
  const Q32R4DotFn fast = q32_r4_dot_kernel(r4_type);
  for (const int64_t n : {32, 1408}) {
    const Rows32<Block> x = make_rows32<Block>(type, n, 19, repack);
    const int64_t nb = n / 32;
    for (int t = 0; t < 2; ++t) {
      float want_r[4];
      ref(x.r4.data(), x.act[t].data(), nb, want_r);
      for (int r = 0; r < 4; ++r) {
        const float want = vec_dot_row(type, x.file.data() + r * x.stride, x.act[t].data(), n);
        CHECK(std::fabs(want_r[r] - want) <= 1e-5f * (1.0f + std::fabs(want)) * float(nb));
      }
    }
    if (!fast) continue;
    const BlockQ8_0* ys[2] = {x.act[0].data(), x.act[1].data()};
    const int32_t* ss[2] = {x.sums[0].data(), x.sums[1].data()};
    float both[8];
    fast(x.r4.data(), ys, ss, 2, nb, both);
    for (int t = 0; t < 2; ++t) {
      float alone[4], want[4];
      fast(x.r4.data(), ys + t, ss + t, 1, nb, alone);
      CHECK(std::memcmp(alone, both + 4 * t, sizeof alone) == 0);  // the neighbour changes nothing
      ref(x.r4.data(), ys[t], nb, want);
      for (int r = 0; r < 4; ++r) CHECK(std::fabs(alone[r] - want[r]) <= 1e-5f * (1.0f + std::fabs(want[r])) * float(nb));
    }
  }
  if (!fast) MESSAGE("no AVX-512 VNNI on this CPU: the kernel is not built for it");
}

}  // namespace

TEST_CASE("q8_0_r4 and q5_0_r4: bytes kept, the reference is the file type's product, the kernel the reference's") {
  check_q32<BlockQ8_0R4>(GgmlType::Q8_0, GgmlType::Q8_0_R4, repack_q8_0_r4, unpack_q8_0_r4, q8_0_r4_dot_ref);
  check_q32<BlockQ5_0R4>(GgmlType::Q5_0, GgmlType::Q5_0_R4, repack_q5_0_r4, unpack_q5_0_r4, q5_0_r4_dot_ref);
}

TEST_CASE("interleaved: the GEMM's tile straight from the groups is the tile of the unpacked rows, byte for byte") {
  const GemmRepackFn direct = gemm_repack_interleaved_kernel();
  if (direct == nullptr) {
    MESSAGE("skipped: this CPU has no AVX-512 VNNI (the tiles come from unpacked rows)");
    return;
  }
  std::mt19937 rng(29);
  for (const auto& [type, n_in] : {std::pair{GgmlType::Q4_K, int64_t{768}}, std::pair{GgmlType::Q8_0, int64_t{1408}},
                                   std::pair{GgmlType::Q5_0, int64_t{1408}}}) {
    CAPTURE(std::string(ggml_type_name(type)));
    const int64_t n_out = 36;
    // Any bytes: scales and mins of every value, fp16 of any sign.
    std::vector<uint8_t> file(ggml_row_size(type, n_in) * static_cast<size_t>(n_out));
    for (uint8_t& b : file) b = static_cast<uint8_t>(rng());
    if (type == GgmlType::Q4_K) {  // ggml's 6-bit packing has no spare bits; keep fp16 finite
      for (size_t r = 0; r < file.size(); r += sizeof(BlockQ4_K)) file[r + 1] &= 0x3b, file[r + 3] &= 0x3b;
    } else {
      const size_t blk = ggml_type_traits(type).type_size;
      for (size_t r = 0; r < file.size(); r += blk) file[r + 1] &= 0x3b;
    }
    const TensorView W = TensorView::contiguous("w", type, {n_in, n_out, 1, 1}, file.data());
    std::vector<uint8_t> r4(interleaved_bytes(W));
    interleave_tensor(W, r4.data());
    const TensorView W4 = interleaved_view(W, r4.data());
    for (const int64_t r0 : {int64_t{0}, int64_t{4}, int64_t{20}}) {
      CAPTURE(r0);
      GemmTile want, got;
      gemm_repack_ref(W, r0, kGemmRows, want);
      got.vals.assign(want.vals.size(), 0xAA);  // what the tile held before must not show
      direct(W4, r0, kGemmRows, got);
      CHECK(got.n == want.n);
      CHECK(got.vals == want.vals);
      CHECK(got.sc == want.sc);
      CHECK(got.mn == want.mn);
      CHECK(std::memcmp(got.d.data(), want.d.data(), want.d.size() * 4) == 0);
      CHECK(std::memcmp(got.dm.data(), want.dm.data(), want.dm.size() * 4) == 0);
    }
  }
}
