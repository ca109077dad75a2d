// CUDA dequantization kernels against the scalar reference: random blocks of
// every dequantizable type, awkward block counts, bit-exact equality (the
// kernels run the same MOE_HD block decoders).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/ggml_type.h"
#include "cuda_api.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "../test_util.h"

namespace {

using moe::GgmlType;

// A finite half of modest size (|x| in about [2^-10, 8)), random sign.
uint16_t random_scale_half(std::mt19937& rng) {
  const float mant = 1.0f + static_cast<float>(rng() % 1024) / 1024.0f;
  const float x = std::ldexp(mant, static_cast<int>(rng() % 13) - 10);
  return moe::fp32_to_fp16(rng() % 2 ? -x : x);
}

// Random bytes for n_blocks blocks of `type`, with the fp16/fp32 scale fields
// overwritten by finite values (quants and packed sub-scales stay random).
std::vector<uint8_t> random_blocks(GgmlType type, int64_t n_blocks, std::mt19937& rng) {
  const moe::GgmlTypeTraits& t = moe::ggml_type_traits(type);
  std::vector<uint8_t> bytes(static_cast<size_t>(n_blocks) * t.type_size);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  moe::visit_block_format(type, [&]<GgmlType T>() {
    using Block = typename moe::BlockFormat<T>::Block;
    if constexpr (T == GgmlType::F32 || T == GgmlType::F16 || T == GgmlType::BF16) {
      return;  // every bit pattern, nan and inf included, must decode the same
    } else {
      for (int64_t i = 0; i < n_blocks; ++i) {
        Block b;
        std::memcpy(&b, bytes.data() + i * sizeof(Block), sizeof b);
        if constexpr (T == GgmlType::Q8_K) {
          b.d = moe::fp16_to_fp32(random_scale_half(rng));
        } else if constexpr (T == GgmlType::MXFP4) {
          b.e = static_cast<uint8_t>(rng() % 255);  // every exponent but E8M0's NaN, the denormal halves included
        } else {
          b.d = random_scale_half(rng);
        }
        if constexpr (requires { b.m; }) b.m = random_scale_half(rng);
        if constexpr (requires { b.dmin; }) b.dmin = random_scale_half(rng);
        if constexpr (requires { b.s; }) b.s = random_scale_half(rng);
        std::memcpy(bytes.data() + i * sizeof(Block), &b, sizeof b);
      }
    }
  });
  return bytes;
}

}  // namespace

TEST_CASE("cuBLAS is linked and reports its version") {
  const int v = moe::cuda_cublas_version();
  MESSAGE("cuBLAS " << v / 10000 << "." << v / 100 % 100 << "." << v % 100);
  CHECK(v >= 10000);
}

TEST_CASE("cuda_dequantize_row rejects bad arguments before touching the device") {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(1024);
  CHECK_THROWS_AS(moe::cuda_dequantize_row(GgmlType::Q4_0, src.data(), dst.data(), 33), moe::Error);
  CHECK_THROWS_AS(moe::cuda_dequantize_row(GgmlType::IQ2_XXS, src.data(), dst.data(), 256),
                  moe::Error);
  CHECK_NOTHROW(moe::cuda_dequantize_row(GgmlType::Q4_K, nullptr, nullptr, 0));
}

TEST_CASE("dequantize kernels equal dequantize_row_ref for every type") {
  if (moe::cuda_device_count() == 0) return moe::test::skip("no CUDA device");
  MESSAGE("device 0: " << moe::cuda_device_name(0));
  std::mt19937 rng(20240607);
  for (uint32_t id = 0; id < static_cast<uint32_t>(moe::kGgmlTypeIdLimit); ++id) {
    const moe::GgmlTypeTraits* t = moe::ggml_type_traits(id);
    if (t == nullptr || !t->can_dequantize) continue;
    const GgmlType type = static_cast<GgmlType>(id);
    if (!moe::visit_block_format(type, []<GgmlType>() {})) {
      MESSAGE(t->name << ": no CUDA dequantization kernel yet (IQ types come with the CUDA backend)");
      continue;
    }
    for (const int64_t n_blocks : {1, 7, 1000, 4099}) {
      CAPTURE(t->name);
      CAPTURE(n_blocks);
      const int64_t n = n_blocks * t->block_size;
      const std::vector<uint8_t> src = random_blocks(type, n_blocks, rng);
      std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n), -1.0f);
      moe::dequantize_row_ref(type, src.data(), want.data(), n);
      moe::cuda_dequantize_row(type, src.data(), got.data(), n);
      int64_t bad = 0, first = -1;
      for (int64_t i = 0; i < n; ++i) {
        if (moe::f32_to_bits(got[i]) != moe::f32_to_bits(want[i])) {
          if (first < 0) first = i;
          ++bad;
        }
      }
      CHECK_MESSAGE(bad == 0, bad << " elements differ, first at " << first << ": gpu "
                                  << (first >= 0 ? got[first] : 0) << " cpu "
                                  << (first >= 0 ? want[first] : 0));
    }
  }
}
