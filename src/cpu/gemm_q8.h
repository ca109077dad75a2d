// Products of a weight matrix with many tokens at once (prompt processing,
// experts that many tokens of a batch chose): the weights are repacked, 16
// rows at a time, into unsigned bytes interleaved so that one 64-byte vector
// holds 4 consecutive elements of each of the 16 rows, with the integer
// scales of each block and the float scales of each super-block. A token's
// 4 activation bytes are broadcast to all lanes and one dpbusd adds 64
// products into the 16 rows' sums: no horizontal sums, and every repacked
// tile is reused by every token. The technique is ik_llama.cpp's (its _R8
// layouts and iqk_convert_repack); the code is ours.
//
// The integers are ggml's: activations are quantized to the weight type's
// vec_dot_type (Q8_0, Q8_1 or Q8_K) with ggml's rounding, and per super-block
// (256 elements for K and IQ quants, 32 for the legacy types) the sum
// sum_b scale_b * sum_i (w_i - zero) * q_i is exact in int32, as in ggml's
// x86 kernels. Only the float steps after it (one or two per super-block)
// are ordered differently from ggml's lanes, so random models, where a
// last-bit change flips a routing choice, stay close to llama.cpp's logits.
// gemm_tile_ref is the scalar reference; the SIMD kernel equals it to the bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moe {

inline constexpr int64_t kGemmRows = 16;        // rows per repacked tile (one int32 lane of a zmm each)
inline constexpr int64_t kGemmMinTokens = 16;   // fewer tokens: the per-row kernels are faster
// Rows interleaved four at a time (quant/interleaved.h) make their tiles
// with one permute per 64 bytes (gemm_repack_interleaved_kernel), so the
// GEMM overtakes their one- and two-token kernels sooner: measured on one
// core (V2-Lite's expert shapes, weights in cache) even at 4-5 tokens for
// Q4_K_R4 and Q5_0_R4, 6 for Q8_0_R4; 1.5x at 8 tokens.
inline constexpr int64_t kGemmMinTokensInterleaved = 6;

// ---- activations --------------------------------------------------------------
// Per token, for n elements (a multiple of 32): n int8 values q, then n/32
// float scales d (one value repeated across a Q8_K block), n/32 floats s
// (Q8_1's stored d * sum(q); zero otherwise), n/32 int32 sum(q) per 32 and
// n/16 int32 sum(q) per 16. Rows are padded to 64 bytes.
size_t gemm_act_row_bytes(int64_t n);
// The scalar definition and the fast version (the same bytes).
void gemm_quantize_row_ref(GgmlType weight_type, const float* x, int64_t n, uint8_t* row);
void gemm_quantize_row(GgmlType weight_type, const float* x, int64_t n, uint8_t* row);
using GemmQuantizeFn = void (*)(GgmlType weight_type, const float* x, int64_t n, uint8_t* row);

// ---- weights --------------------------------------------------------------------
// How a format's block minimum enters: none (a constant zero point, taken
// off the integer sums), an integer min per block times a float per
// super-block (K quants, as ggml's bsums), or a float per block times the
// activations' Q8_1 sum (Q4_1, Q5_1).
enum class GemmMin : uint8_t { kNone, kInt, kFloat };

struct GemmFormat {
  int block = 0;   // elements per integer scale (16 or 32); 0: no repacking
  int super = 0;   // elements per float scale (32 or 256)
  int zero = 0;    // stored value = unsigned value - zero (GemmMin::kNone)
  GemmMin min = GemmMin::kNone;
};
GemmFormat gemm_format(GgmlType t);
// A type the GEMM takes on this CPU (it needs AVX-512 VNNI).
bool gemm_available(GgmlType t);

// kGemmRows rows of n elements: vals[(g * 16 + r) * 4 + k] = byte 4g + k of
// row r; per block b, sc[b * 16 + r] and mn[b * 16 + r]; per super-block s,
// d[s * 16 + r] and dm[s * 16 + r]. Element i of row r, in block b of
// super-block s, is d * sc * (vals - zero) + dm * mn (kInt) or d * (vals -
// zero) + dm (kFloat, where sc = 1). Rows past the matrix are zero.
struct GemmTileScratch {  // the rows decoded before interleaving, kept to allocate once
  std::vector<uint8_t> rows;  // interleaved groups unpacked to the file's rows
  std::vector<uint8_t> u;
  std::vector<int32_t> sc, mn;
  std::vector<float> d, dm;
};
struct GemmTile {
  int64_t n = 0;
  GemmFormat fmt;
  std::vector<uint8_t> vals;
  std::vector<int32_t> sc, mn;
  std::vector<float> d, dm;
  GemmTileScratch scratch;
};
// Rows [r0, r0 + n_rows) of W, n_rows <= kGemmRows: the scalar definition
// and the fast version (the same bytes).
void gemm_repack_ref(const TensorView& W, int64_t r0, int64_t n_rows, GemmTile& tile);
// What both repacks do first: check that W's type and row length can be
// repacked, and size the tile's arrays for its rows.
void gemm_tile_shape(const TensorView& W, GemmTile& tile);
void gemm_repack(const TensorView& W, int64_t r0, int64_t n_rows, GemmTile& tile);
using GemmRepackFn = void (*)(const TensorView& W, int64_t r0, int64_t n_rows, GemmTile& tile);
// Rows [r0, r0 + 16) of an interleaved W (quant/interleaved.h; r0 a
// multiple of 4) straight from its groups: the bytes gemm_repack gives for
// the same rows in the file's layout. Null without AVX-512 VNNI (gemm_rows
// then unpacks the groups first).
GemmRepackFn gemm_repack_interleaved_kernel();

// One row decoded for a tile: unsigned values (stored integer + zero), per
// block the integer scale and min, per super-block the float scale and min
// scale. sc, mn, dm stay as the caller set them (1, 0, 0) where a format has
// none. The scalar decoder of every type (the fast repack falls back on it).
struct GemmRowParts {
  uint8_t* u;
  int32_t* sc;
  int32_t* mn;
  float* d;
  float* dm;
};
void gemm_decode_row_ref(GgmlType t, const uint8_t* row, int64_t n, const GemmRowParts& p);

// y[t * y_stride + i] for tile rows i < n_rows and n_tok tokens (activation
// rows act_stride bytes apart).
void gemm_tile_ref(const GemmTile& tile, int64_t n_rows, const uint8_t* act, size_t act_stride, int64_t n_tok,
                   float* y, int64_t y_stride);
using GemmTileFn = void (*)(const GemmTile& tile, int64_t n_rows, const uint8_t* act, size_t act_stride,
                            int64_t n_tok, float* y, int64_t y_stride);
GemmTileFn gemm_tile_kernel();  // the VNNI kernel, or null

// Rows [r0, r1) of W against n_tok activation rows: y[t * y_stride + r],
// repacking into `tile` (a caller's buffer, reused so nothing is allocated).
void gemm_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_stride, int64_t n_tok,
               float* y, int64_t y_stride, GemmTile& tile);

}  // namespace moe
