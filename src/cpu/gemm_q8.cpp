#include "cpu/gemm_q8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "cpu/matmul.h"
#include "cpu/qdot.h"
#include "quant/blocks.h"
#include "quant/interleaved.h"
#include "quant/blocks_iq.h"
#include "quant/vec_dot.h"

namespace moe {

GemmTileFn gemm_tile_kernel_avx512vnni();     // gemm_x86.inc, in qdot_avx512.cpp
GemmRepackFn gemm_repack_avx512vnni();        // gemm_repack_x86.inc, there too
GemmQuantizeFn gemm_quantize_avx512vnni();    // gemm_quantize_x86.inc, there too
GemmRepackFn gemm_repack_interleaved_avx512vnni();  // gemm_repack_interleaved_avx512.cpp

namespace {

inline size_t sz(int64_t v) { return static_cast<size_t>(v); }
inline size_t pad64(size_t n) { return (n + 63) / 64 * 64; }

template <typename B>
const B* blocks_of(const uint8_t* row) {
  return reinterpret_cast<const B*>(row);
}

}  // namespace

void gemm_decode_row_ref(GgmlType t, const uint8_t* row, int64_t n, const GemmRowParts& p) {
  switch (t) {
    case GgmlType::Q4_0:
    case GgmlType::Q4_1: {
      const bool one = t == GgmlType::Q4_1;
      const size_t bytes = one ? 20 : 18;
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* b = row + sz(i) * bytes;
        const uint8_t* qs = b + (one ? 4 : 2);
        uint16_t d16, m16 = 0;
        std::memcpy(&d16, b, 2);
        if (one) std::memcpy(&m16, b + 2, 2);
        for (int j = 0; j < 16; ++j) p.u[32 * i + j] = qs[j] & 15, p.u[32 * i + 16 + j] = qs[j] >> 4;
        p.d[i] = fp16_to_fp32(d16);
        if (one) p.dm[i] = fp16_to_fp32(m16);
      }
      return;
    }
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
      const bool one = t == GgmlType::Q5_1;
      const size_t bytes = one ? 24 : 22;
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* b = row + sz(i) * bytes;
        uint16_t d16, m16 = 0;
        std::memcpy(&d16, b, 2);
        if (one) std::memcpy(&m16, b + 2, 2);
        uint32_t qh;
        std::memcpy(&qh, b + (one ? 4 : 2), 4);
        const uint8_t* qs = b + (one ? 8 : 6);
        for (int j = 0; j < 16; ++j) {
          p.u[32 * i + j] = static_cast<uint8_t>((qs[j] & 15) | ((qh >> j) & 1) << 4);
          p.u[32 * i + 16 + j] = static_cast<uint8_t>((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
        }
        p.d[i] = fp16_to_fp32(d16);
        if (one) p.dm[i] = fp16_to_fp32(m16);
      }
      return;
    }
    case GgmlType::Q8_0:
      for (int64_t i = 0; i < n / 32; ++i) {
        const auto* b = blocks_of<BlockQ8_0>(row) + i;
        for (int j = 0; j < 32; ++j) p.u[32 * i + j] = static_cast<uint8_t>(b->qs[j] + 128);
        p.d[i] = fp16_to_fp32(b->d);
      }
      return;
    case GgmlType::MXFP4:  // the doubled E2M1 values + 128, the power-of-two half scale as d
      for (int64_t i = 0; i < n / 32; ++i) {
        const auto* b = blocks_of<BlockMXFP4>(row) + i;
        for (int j = 0; j < 16; ++j) {
          p.u[32 * i + j] = static_cast<uint8_t>(kMxfp4Values[b->qs[j] & 15] + 128);
          p.u[32 * i + 16 + j] = static_cast<uint8_t>(kMxfp4Values[b->qs[j] >> 4] + 128);
        }
        p.d[i] = e8m0_to_fp32_half(b->e);
      }
      return;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      for (int64_t i = 0; i < n / 256; ++i) {
        const bool five = t == GgmlType::Q5_K;
        const uint8_t* b = row + sz(i) * (five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K));
        uint16_t d16, dm16;
        std::memcpy(&d16, b, 2);
        std::memcpy(&dm16, b + 2, 2);
        p.d[i] = fp16_to_fp32(d16);
        p.dm[i] = -fp16_to_fp32(dm16);
        const uint8_t* scales = b + 4;
        const uint8_t* qh = five ? b + 16 : nullptr;
        const uint8_t* qs = b + (five ? 48 : 16);
        for (int j = 0; j < 8; ++j) {
          k_scale_min(j, scales, &p.sc[8 * i + j], &p.mn[8 * i + j]);
          const uint8_t* q = qs + 32 * (j / 2);
          for (int l = 0; l < 32; ++l) {
            int v = (q[l] >> (4 * (j % 2))) & 15;
            if (five) v |= ((qh[l] >> j) & 1) << 4;
            p.u[256 * i + 32 * j + l] = static_cast<uint8_t>(v);
          }
        }
      }
      return;
    case GgmlType::Q6_K:
      for (int64_t i = 0; i < n / 256; ++i) {
        const auto* b = blocks_of<BlockQ6_K>(row) + i;
        p.d[i] = fp16_to_fp32(b->d);
        for (int j = 0; j < 16; ++j) p.sc[16 * i + j] = b->scales[j];
        for (int h = 0; h < 2; ++h)
          for (int q = 0; q < 4; ++q)
            for (int l = 0; l < 32; ++l) {
              const int low = (b->ql[64 * h + l + 32 * (q % 2)] >> (4 * (q / 2))) & 15;
              const int high = (b->qh[32 * h + l] >> (2 * q)) & 3;
              p.u[256 * i + 128 * h + 32 * q + l] = static_cast<uint8_t>(low | high << 4);
            }
      }
      return;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
      for (int64_t i = 0; i < n / 256; ++i) {
        const bool three = t == GgmlType::Q3_K;
        const uint8_t* base = row + sz(i) * (three ? sizeof(BlockQ3_K) : sizeof(BlockQ2_K));
        BlockQ2_K b2;
        BlockQ3_K b3;
        if (three) std::memcpy(&b3, base, sizeof b3);
        else std::memcpy(&b2, base, sizeof b2);
        p.d[i] = fp16_to_fp32(three ? b3.d : b2.d);
        if (!three) p.dm[i] = -fp16_to_fp32(b2.dmin);
        for (int half = 0; half < 2; ++half)
          for (int plane = 0; plane < 4; ++plane)
            for (int sub = 0; sub < 2; ++sub) {
              const int j = 8 * half + 2 * plane + sub;
              if (three) {
                p.sc[16 * i + j] = q3_k_scale(j, b3.scales);
              } else {
                p.sc[16 * i + j] = b2.scales[j] & 15;
                p.mn[16 * i + j] = b2.scales[j] >> 4;
              }
              for (int l = 16 * sub; l < 16 * sub + 16; ++l) {
                const uint8_t* q = (three ? b3.qs : b2.qs) + 32 * half;
                int v = (q[l] >> (2 * plane)) & 3;
                if (three) v += ((b3.hmask[l] >> (4 * half + plane)) & 1) ? 4 : 0;  // low - 4 * !high, plus 4
                p.u[256 * i + 128 * half + 32 * plane + l] = static_cast<uint8_t>(v);
              }
            }
      }
      return;
    default:
      break;
  }
  // IQ types: values and an integer scale per 16 (blocks_iq.h), offset by
  // the largest magnitude so they are unsigned.
  MOE_ASSERT(is_iq_type(t), "gemm: no repacking for %s", ggml_type_name(t));
  const GgmlTypeTraits& tr = ggml_type_traits(t);
  const GemmFormat f = gemm_format(t);
  IqGroup g;
  for (int64_t i = 0; i < n / tr.block_size; ++i) {
    const uint8_t* b = row + sz(i) * tr.type_size;
    p.d[i] = iq_block_d(t, b) * iq_fraction(t);
    for (int gi = 0; gi < tr.block_size / 32; ++gi) {
      iq_decode_group(t, b, gi, g);
      const int64_t e0 = i * tr.block_size + 32 * gi;
      for (int j = 0; j < 32; ++j) p.u[e0 + j] = static_cast<uint8_t>(g.v[j] + f.zero);
      for (int h = 0; h < 32 / f.block; ++h) p.sc[e0 / f.block + h] = g.scale[h];
    }
  }
}

namespace {

// Offsets of the parts of an activation row of n elements.
struct ActRow {
  const int8_t* q;
  const float* d;
  const float* s;
  const int32_t* c32;
  const int32_t* c16;
  ActRow(const uint8_t* row, int64_t n)
      : q(reinterpret_cast<const int8_t*>(row)),
        d(reinterpret_cast<const float*>(row + n)),
        s(d + n / 32),
        c32(reinterpret_cast<const int32_t*>(s + n / 32)),
        c16(c32 + n / 32) {}
};

}  // namespace

size_t gemm_act_row_bytes(int64_t n) { return pad64(sz(n) + 4 * sz(3 * (n / 32) + n / 16)); }

void gemm_quantize_row_ref(GgmlType weight_type, const float* x, int64_t n, uint8_t* row) {
  auto* q = reinterpret_cast<int8_t*>(row);
  float* d = reinterpret_cast<float*>(row + n);
  float* s = d + n / 32;
  auto* c32 = reinterpret_cast<int32_t*>(s + n / 32);
  int32_t* c16 = c32 + n / 32;
  // ggml's activation blocks, one at a time, spread into the layout above.
  const GgmlType act = vec_dot_type(weight_type);
  const int64_t blk = ggml_type_traits(act).block_size;
  MOE_ASSERT(n % blk == 0, "gemm: %lld activations are not whole %s blocks", static_cast<long long>(n),
             ggml_type_name(act));
  alignas(8) uint8_t buf[sizeof(BlockQ8_K)];
  for (int64_t b0 = 0; b0 < n; b0 += blk) {
    quantize_activation_row(act, x + b0, buf, blk);
    const int8_t* qs;
    float db, sb = 0.0f;
    if (act == GgmlType::Q8_K) {
      const auto* k = reinterpret_cast<const BlockQ8_K*>(buf);
      qs = k->qs, db = k->d;
    } else if (act == GgmlType::Q8_1) {
      const auto* k = reinterpret_cast<const BlockQ8_1*>(buf);
      qs = k->qs, db = fp16_to_fp32(k->d), sb = fp16_to_fp32(k->s);
    } else {
      const auto* k = reinterpret_cast<const BlockQ8_0*>(buf);
      qs = k->qs, db = fp16_to_fp32(k->d);
    }
    std::memcpy(q + b0, qs, sz(blk));
    for (int64_t b = b0 / 32; b < (b0 + blk) / 32; ++b) {
      int32_t h[2] = {0, 0};
      for (int j = 0; j < 32; ++j) h[j / 16] += q[32 * b + j];
      d[b] = db;
      s[b] = sb;
      c32[b] = h[0] + h[1];
      c16[2 * b] = h[0];
      c16[2 * b + 1] = h[1];
    }
  }
}

void gemm_quantize_row(GgmlType weight_type, const float* x, int64_t n, uint8_t* row) {
  if (cpu_isa_active() == CpuIsa::kAvx512Vnni) {
    if (const GemmQuantizeFn fast = gemm_quantize_avx512vnni()) return fast(weight_type, x, n, row);
  }
  gemm_quantize_row_ref(weight_type, x, n, row);
}

GemmFormat gemm_format(GgmlType t) {
  switch (file_layout_type(t)) {  // interleaved rows: gemm_rows unpacks them first
    case GgmlType::Q4_0: return {32, 32, 8, GemmMin::kNone};
    case GgmlType::Q5_0: return {32, 32, 16, GemmMin::kNone};
    case GgmlType::Q8_0: return {32, 32, 128, GemmMin::kNone};
    case GgmlType::Q4_1: case GgmlType::Q5_1: return {32, 32, 0, GemmMin::kFloat};
    case GgmlType::Q4_K: case GgmlType::Q5_K: return {32, 256, 0, GemmMin::kInt};
    case GgmlType::Q2_K: return {16, 256, 0, GemmMin::kInt};
    case GgmlType::Q3_K: return {16, 256, 4, GemmMin::kNone};
    case GgmlType::Q6_K: return {16, 256, 32, GemmMin::kNone};
    case GgmlType::IQ2_XXS: return {32, 256, 43, GemmMin::kNone};
    case GgmlType::IQ2_XS: case GgmlType::IQ2_S: return {16, 256, 43, GemmMin::kNone};
    case GgmlType::IQ3_XXS: return {32, 256, 62, GemmMin::kNone};
    case GgmlType::IQ3_S: return {32, 256, 15, GemmMin::kNone};
    case GgmlType::IQ1_S: return {32, 256, 9, GemmMin::kNone};
    case GgmlType::IQ1_M: return {16, 256, 9, GemmMin::kNone};
    case GgmlType::IQ4_NL: case GgmlType::MXFP4: return {32, 32, 128, GemmMin::kNone};
    case GgmlType::IQ4_XS: return {32, 256, 128, GemmMin::kNone};
    default: return {};
  }
}

bool gemm_available(GgmlType t) { return gemm_format(t).block != 0 && cpu_isa_active() == CpuIsa::kAvx512Vnni; }

GemmRepackFn gemm_repack_interleaved_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? gemm_repack_interleaved_avx512vnni() : nullptr;
}

GemmTileFn gemm_tile_kernel() {
  return cpu_isa_active() == CpuIsa::kAvx512Vnni ? gemm_tile_kernel_avx512vnni() : nullptr;
}

void gemm_tile_shape(const TensorView& W, GemmTile& tile) {
  const int64_t n = W.ne[0];
  const GemmFormat f = gemm_format(W.type);
  MOE_ASSERT(f.block != 0 && n % f.super == 0, "gemm: cannot repack %s rows of %lld", ggml_type_name(W.type),
             static_cast<long long>(n));
  const int64_t nb = n / f.block, ns = n / f.super;
  tile.n = n;
  tile.fmt = f;
  tile.vals.resize(sz(kGemmRows * n));
  tile.sc.resize(sz(kGemmRows * nb));
  tile.mn.resize(sz(kGemmRows * nb));
  tile.d.resize(sz(kGemmRows * ns));
  tile.dm.resize(sz(kGemmRows * ns));
}

void gemm_repack_ref(const TensorView& W, int64_t r0, int64_t n_rows, GemmTile& tile) {
  gemm_tile_shape(W, tile);
  const int64_t n = tile.n, nb = n / tile.fmt.block, ns = n / tile.fmt.super;
  std::vector<uint8_t> u(sz(n));
  std::vector<int32_t> sc(sz(nb)), mn(sz(nb));
  std::vector<float> d(sz(ns)), dm(sz(ns));
  for (int64_t r = 0; r < kGemmRows; ++r) {
    std::fill(sc.begin(), sc.end(), 1);
    std::fill(mn.begin(), mn.end(), 0);
    std::fill(dm.begin(), dm.end(), 0.0f);
    if (r < n_rows) {
      gemm_decode_row_ref(W.type, W.row(r0 + r), n, GemmRowParts{u.data(), sc.data(), mn.data(), d.data(), dm.data()});
    } else {
      std::fill(u.begin(), u.end(), 0);
      std::fill(d.begin(), d.end(), 0.0f);
    }
    for (int64_t g = 0; g < n / 4; ++g) std::memcpy(&tile.vals[sz((g * kGemmRows + r) * 4)], &u[sz(4 * g)], 4);
    for (int64_t b = 0; b < nb; ++b) {
      tile.sc[sz(b * kGemmRows + r)] = sc[sz(b)];
      tile.mn[sz(b * kGemmRows + r)] = mn[sz(b)];
    }
    for (int64_t b = 0; b < ns; ++b) {
      tile.d[sz(b * kGemmRows + r)] = d[sz(b)];
      tile.dm[sz(b * kGemmRows + r)] = dm[sz(b)];
    }
  }
}

void gemm_repack(const TensorView& W, int64_t r0, int64_t n_rows, GemmTile& tile) {
  if (cpu_isa_active() == CpuIsa::kAvx512Vnni) {
    if (const GemmRepackFn fast = gemm_repack_avx512vnni()) return fast(W, r0, n_rows, tile);
  }
  gemm_repack_ref(W, r0, n_rows, tile);
}

void gemm_tile_ref(const GemmTile& tile, int64_t n_rows, const uint8_t* act, size_t act_stride, int64_t n_tok,
                   float* y, int64_t y_stride) {
  const int64_t n = tile.n, B = tile.fmt.block, S = tile.fmt.super;
  for (int64_t t = 0; t < n_tok; ++t) {
    const ActRow a(act + sz(t) * act_stride, n);
    const int32_t* c = B == 32 ? a.c32 : a.c16;
    for (int64_t r = 0; r < n_rows; ++r) {
      float acc = 0.0f;
      for (int64_t sb = 0; sb < n / S; ++sb) {
        int32_t isup = 0, msup = 0;
        for (int64_t b = sb * (S / B); b < (sb + 1) * (S / B); ++b) {
          int32_t isum = 0;
          for (int64_t i = b * B; i < (b + 1) * B; ++i)
            isum += static_cast<int32_t>(tile.vals[sz(((i / 4) * kGemmRows + r) * 4 + i % 4)]) * a.q[i];
          isum -= tile.fmt.zero * c[b];
          isup += isum * tile.sc[sz(b * kGemmRows + r)];
          msup += tile.mn[sz(b * kGemmRows + r)] * c[b];
        }
        const float da = a.d[(sb * S) / 32];
        acc = std::fma(tile.d[sz(sb * kGemmRows + r)] * da, static_cast<float>(isup), acc);
        if (tile.fmt.min == GemmMin::kInt)
          acc = std::fma(tile.dm[sz(sb * kGemmRows + r)] * da, static_cast<float>(msup), acc);
        else if (tile.fmt.min == GemmMin::kFloat)
          acc = std::fma(tile.dm[sz(sb * kGemmRows + r)], a.s[sb], acc);
      }
      y[t * y_stride + r] = acc;
    }
  }
}

void gemm_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_stride, int64_t n_tok,
               float* y, int64_t y_stride, GemmTile& tile) {
  const GemmTileFn kernel = gemm_tile_kernel();
  const GemmRepackFn interleaved = gemm_repack_interleaved_kernel();
  for (int64_t r = r0; r < r1; r += kGemmRows) {
    const int64_t nr = std::min(kGemmRows, r1 - r);
    if (!is_interleaved(W.type)) {
      gemm_repack(W, r, nr, tile);
    } else if (nr == kGemmRows && r % kInterleavedRows == 0 && interleaved) {
      interleaved(W, r, nr, tile);  // straight from the groups (the same bytes as below)
    } else {
      // The definition: the tile's groups back to the file's layout, then
      // repacked as the file's rows (tiles that cut a group, no AVX-512).
      const int64_t g0 = r / kInterleavedRows * kInterleavedRows;
      const int64_t g1 = (r + nr + kInterleavedRows - 1) / kInterleavedRows * kInterleavedRows;
      const TensorView groups = TensorView::contiguous(W.name, W.type, {W.ne[0], g1 - g0, 1, 1}, W.row(g0));
      const GgmlType file = file_layout_type(W.type);
      tile.scratch.rows.resize(ggml_row_size(file, W.ne[0]) * sz(g1 - g0));
      deinterleave_tensor(groups, tile.scratch.rows.data());
      gemm_repack(TensorView::contiguous(W.name, file, groups.ne, tile.scratch.rows.data()), r - g0, nr, tile);
    }
    if (kernel) kernel(tile, nr, act, act_stride, n_tok, y + r, y_stride);
    else gemm_tile_ref(tile, nr, act, act_stride, n_tok, y + r, y_stride);
  }
}

}  // namespace moe
