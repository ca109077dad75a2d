// Lane masks and loads shared by the f32 AVX-512 kernels (gemm_f32,
// attention). Include only in files built with AVX-512F flags; the helpers
// sit in an anonymous namespace so that files built with different flags
// each keep their own copy.
#pragma once

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

namespace moe {
namespace {

// The first n of 16 lanes (none for n <= 0, all for n >= 16).
inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// 16 floats, masked only where a tile runs past its data. Kernels call the
// plain form for whole vectors: a masked load from memory that misses L1 is
// far slower than a plain one on recent Xeons (the MLA rebuild's products
// ran at 57 GFLOPS with every load masked and 125 with plain ones, one
// thread of the Emerald Rapids in the README).
template <bool kMasked>
inline __m512 load16(__mmask16 m, const float* p) {
  if constexpr (kMasked) return _mm512_maskz_loadu_ps(m, p);
  return _mm512_loadu_ps(p);
}

}  // namespace
}  // namespace moe
#endif
