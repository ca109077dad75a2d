// The GEMM's tile (cpu/gemm_q8.h) straight from rows interleaved four at a
// time (quant/q4k_r4.h, quant/q32_r4.h), with AVX-512: what gemm_rows did
// before was to unpack the tile's groups to the file's layout and repack
// those rows, and the unpacking alone cost half the product at the few
// dozen tokens an expert gets in a prompt. Built with AVX-512 VNNI's flags
// for this file only; chosen at run time.
//
// Both interleaved layouts hold, per 32 values of four rows, four vectors k
// of 8 dwords: dword 2r + h is row r's values 8k + 4h .. 8k + 4h + 3. With
// the vectors of the tile's four groups side by side, one two-source dword
// permute gathers the even dwords (values 8k .. 8k + 3 of the 16 rows: the
// tile's group 2k) and one the odd (group 2k + 1). Scales, mins and the
// fp16 row scales go to their lanes as gemm_decode_row_ref puts them. The
// bytes are the reference's (unpacking, then gemm_repack_ref): the test in
// tests/cpu_interleaved_test.cpp compares them.
#include "cpu/gemm_q8.h"
#include "quant/interleaved.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/error.h"

#include "quant/byte_moves.h"
#include "quant/q32_r4.h"
#include "quant/q4k_r4.h"

// GCC 12's AVX-512 headers initialise their "undefined" vectors from
// themselves (__Y = __Y), which -Wmaybe-uninitialized reports at every
// inlined shift and conversion here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace moe {
namespace {

static_assert(kGemmRows == 4 * kInterleavedRows, "a tile is four interleaved groups");

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
inline uint64_t load8(const void* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Two vectors k side by side per argument (a: groups 0 and 1, b: groups 2
// and 3) into the tile's groups 2k (even dwords) and 2k + 1 (odd) at out.
inline void store_group_pair(__m512i a, __m512i b, uint8_t* out) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  _mm512_storeu_si512(out, _mm512_permutex2var_epi32(a, even, b));
  _mm512_storeu_si512(out + 64, _mm512_permutex2var_epi32(a, odd, b));
}

// The four groups' fp16 row scales (4 per group, 8 bytes at p[g]) as 16 floats.
inline __m512 row_scales(const uint8_t* const p[4]) {
  return _mm512_cvtph_ps(_mm256_setr_epi64x(static_cast<long long>(load8(p[0])), static_cast<long long>(load8(p[1])),
                                            static_cast<long long>(load8(p[2])), static_cast<long long>(load8(p[3]))));
}
// Two groups' 32-byte vectors side by side.
inline __m512i pair(const uint8_t* lo, const uint8_t* hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi)), 1);
}

// -x exactly (gemm_decode_row_ref's dm = -dmin, -0 included).
inline __m512 negate(__m512 x) { return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))); }

void tile_q4_k_r4(const TensorView& W, int64_t r0, GemmTile& tile) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const BlockQ4_KR4* g[4];
  for (int j = 0; j < 4; ++j) g[j] = reinterpret_cast<const BlockQ4_KR4*>(W.row(r0 + 4 * j));
  for (int64_t i = 0; i < tile.n / 256; ++i) {
    const uint8_t* d[4];
    const uint8_t* dmin[4];
    for (int j = 0; j < 4; ++j) d[j] = reinterpret_cast<const uint8_t*>(g[j][i].d), dmin[j] = reinterpret_cast<const uint8_t*>(g[j][i].dmin);
    _mm512_storeu_ps(tile.d.data() + i * kGemmRows, row_scales(d));
    _mm512_storeu_ps(tile.dm.data() + i * kGemmRows, negate(row_scales(dmin)));
    // mins[r][s] of 16 rows as 16 qwords (rows 0..7, 8..15): byte s of each.
    const __m512i mins_lo = pair(g[0][i].mins[0], g[1][i].mins[0]);
    const __m512i mins_hi = pair(g[2][i].mins[0], g[3][i].mins[0]);
    for (int s = 0; s < 8; ++s) {
      const int64_t b = 8 * i + s;
      const __m128i sc = _mm_setr_epi32(static_cast<int>(load4(g[0][i].sc[s])), static_cast<int>(load4(g[1][i].sc[s])),
                                        static_cast<int>(load4(g[2][i].sc[s])), static_cast<int>(load4(g[3][i].sc[s])));
      _mm512_storeu_si512(tile.sc.data() + b * kGemmRows, _mm512_cvtepu8_epi32(sc));
      const __m128i mn = _mm_unpacklo_epi64(_mm512_cvtepi64_epi8(_mm512_srli_epi64(mins_lo, 8 * s)),
                                            _mm512_cvtepi64_epi8(_mm512_srli_epi64(mins_hi, 8 * s)));
      _mm512_storeu_si512(tile.mn.data() + b * kGemmRows, _mm512_cvtepu8_epi32(mn));
      // qs[s]: bytes 0..31 hold vectors 0 (low nibbles) and 1 (high), 32..63 vectors 2 and 3.
      const __m512i q0 = load64(g[0][i].qs[s]), q1 = load64(g[1][i].qs[s]);
      const __m512i q2 = load64(g[2][i].qs[s]), q3 = load64(g[3][i].qs[s]);
      const __m512i a01 = _mm512_shuffle_i64x2(q0, q1, 0x44), b01 = _mm512_shuffle_i64x2(q2, q3, 0x44);
      const __m512i a23 = _mm512_shuffle_i64x2(q0, q1, 0xEE), b23 = _mm512_shuffle_i64x2(q2, q3, 0xEE);
      uint8_t* out = tile.vals.data() + b * 32 * kGemmRows;
      store_group_pair(_mm512_and_si512(a01, m4), _mm512_and_si512(b01, m4), out);
      store_group_pair(_mm512_and_si512(_mm512_srli_epi16(a01, 4), m4), _mm512_and_si512(_mm512_srli_epi16(b01, 4), m4),
                       out + 128);
      store_group_pair(_mm512_and_si512(a23, m4), _mm512_and_si512(b23, m4), out + 256);
      store_group_pair(_mm512_and_si512(_mm512_srli_epi16(a23, 4), m4), _mm512_and_si512(_mm512_srli_epi16(b23, 4), m4),
                       out + 384);
    }
  }
}

// Q8_0_R4 and Q5_0_R4: one fp16 scale per block and row (sc = 1, no min:
// the tile's defaults), unsigned values with the format's zero point.
template <typename Block>
void tile_q32_r4(const TensorView& W, int64_t r0, GemmTile& tile) {
  constexpr bool kQ5 = std::is_same_v<Block, BlockQ5_0R4>;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const Block* g[4];
  for (int j = 0; j < 4; ++j) g[j] = reinterpret_cast<const Block*>(W.row(r0 + 4 * j));
  std::fill(tile.sc.begin(), tile.sc.end(), 1);
  std::fill(tile.mn.begin(), tile.mn.end(), 0);
  std::fill(tile.dm.begin(), tile.dm.end(), 0.0f);
  for (int64_t b = 0; b < tile.n / 32; ++b) {
    const uint8_t* d[4];
    for (int j = 0; j < 4; ++j) d[j] = reinterpret_cast<const uint8_t*>(g[j][b].d);
    _mm512_storeu_ps(tile.d.data() + b * kGemmRows, row_scales(d));
    uint8_t* out = tile.vals.data() + b * 32 * kGemmRows;
    for (int k = 0; k < 4; ++k) {
      __m512i a, c;
      if constexpr (kQ5) {
        // Vector k: nibble k % 2 of qs[k / 2], the fifth bit from hmask[k].
        const int shift = 4 * (k % 2);
        a = _mm512_and_si512(_mm512_srli_epi16(pair(g[0][b].qs[k / 2], g[1][b].qs[k / 2]), shift), m4);
        c = _mm512_and_si512(_mm512_srli_epi16(pair(g[2][b].qs[k / 2], g[3][b].qs[k / 2]), shift), m4);
        const auto high = [&](const Block& x, const Block& y) {
          return _mm512_maskz_set1_epi8(static_cast<__mmask64>(x.hmask[k]) | static_cast<__mmask64>(y.hmask[k]) << 32, 16);
        };
        a = _mm512_or_si512(a, high(g[0][b], g[1][b]));
        c = _mm512_or_si512(c, high(g[2][b], g[3][b]));
      } else {
        a = pair(g[0][b].u[k], g[1][b].u[k]);
        c = pair(g[2][b].u[k], g[3][b].u[k]);
      }
      store_group_pair(a, c, out + 128 * k);
    }
  }
}

void gemm_repack_interleaved_vnni(const TensorView& W, int64_t r0, int64_t n_rows, GemmTile& tile) {
  MOE_ASSERT(n_rows == kGemmRows && r0 % kInterleavedRows == 0,
             "gemm: an interleaved tile is 16 rows from a group's first (rows %lld + %lld)", static_cast<long long>(r0),
             static_cast<long long>(n_rows));
  gemm_tile_shape(W, tile);  // gemm_format reads an interleaved type as its file type
  switch (W.type) {
    case GgmlType::Q4_K_R4: return tile_q4_k_r4(W, r0, tile);
    case GgmlType::Q8_0_R4: return tile_q32_r4<BlockQ8_0R4>(W, r0, tile);
    case GgmlType::Q5_0_R4: return tile_q32_r4<BlockQ5_0R4>(W, r0, tile);
    default: MOE_ASSERT(false, "gemm: no interleaved tile for %s", ggml_type_name(W.type));
  }
}

}  // namespace

GemmRepackFn gemm_repack_interleaved_avx512vnni() { return gemm_repack_interleaved_vnni; }

}  // namespace moe

#else

namespace moe {
GemmRepackFn gemm_repack_interleaved_avx512vnni() { return nullptr; }
}  // namespace moe

#endif
