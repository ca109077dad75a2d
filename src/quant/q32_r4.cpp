#include "quant/q32_r4.h"

#include <cstring>

#include "core/fp16.h"
#include "quant/byte_moves.h"

namespace moe {

namespace {

// Four values e0 = 8k + 4h .. e0 + 3 of row r sit at bytes 4 (2r + h) ..
// of vector k.
inline int lane_byte(int r, int h) { return 4 * (2 * r + h); }

template <typename Block>
const Block& row_block(const uint8_t* rows, size_t row_stride, int r, int64_t i) {
  return reinterpret_cast<const Block*>(rows + static_cast<size_t>(r) * row_stride)[i];
}
template <typename Block>
Block& row_block(uint8_t* rows, size_t row_stride, int r, int64_t i) {
  return reinterpret_cast<Block*>(rows + static_cast<size_t>(r) * row_stride)[i];
}

}  // namespace

void repack_q8_0_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ8_0R4* out) {
  for (int64_t i = 0; i < n / 32; ++i)
    for (int r = 0; r < 4; ++r) {
      const BlockQ8_0& b = row_block<BlockQ8_0>(rows, row_stride, r, i);
      out[i].d[r] = b.d;
      for (int k = 0; k < 4; ++k)
        for (int h = 0; h < 2; ++h)
          store4(out[i].u[k] + lane_byte(r, h), load4(reinterpret_cast<const uint8_t*>(b.qs) + 8 * k + 4 * h) ^ 0x80808080u);
    }
}

void unpack_q8_0_r4(const BlockQ8_0R4* x, int64_t n, uint8_t* rows, size_t row_stride) {
  for (int64_t i = 0; i < n / 32; ++i)
    for (int r = 0; r < 4; ++r) {
      BlockQ8_0& b = row_block<BlockQ8_0>(rows, row_stride, r, i);
      b.d = x[i].d[r];
      for (int k = 0; k < 4; ++k)
        for (int h = 0; h < 2; ++h)
          store4(reinterpret_cast<uint8_t*>(b.qs) + 8 * k + 4 * h, load4(x[i].u[k] + lane_byte(r, h)) ^ 0x80808080u);
    }
}

void repack_q5_0_r4(const uint8_t* rows, size_t row_stride, int64_t n, BlockQ5_0R4* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    BlockQ5_0R4& o = out[i];
    std::memset(&o, 0, sizeof o);
    for (int r = 0; r < 4; ++r) {
      const BlockQ5_0& b = row_block<BlockQ5_0>(rows, row_stride, r, i);
      o.d[r] = b.d;
      const uint32_t qh = load4(b.qh);
      for (int k = 0; k < 4; ++k)
        for (int h = 0; h < 2; ++h) {
          // Positions e < 16 are qs[e]'s low nibbles, the others qs[e - 16]'s high.
          const int e0 = 8 * k + 4 * h, at = lane_byte(r, h);
          const uint32_t nib = (load4(b.qs + e0 % 16) >> (4 * (e0 / 16))) & 0x0f0f0f0fu;
          or4(o.qs[k / 2] + at, nib << (4 * (k % 2)));
          o.hmask[k] |= ((qh >> e0) & 0xfu) << at;
        }
    }
  }
}

void unpack_q5_0_r4(const BlockQ5_0R4* x, int64_t n, uint8_t* rows, size_t row_stride) {
  for (int64_t i = 0; i < n / 32; ++i)
    for (int r = 0; r < 4; ++r) {
      BlockQ5_0& b = row_block<BlockQ5_0>(rows, row_stride, r, i);
      b.d = x[i].d[r];
      std::memset(b.qs, 0, sizeof b.qs);
      uint32_t qh = 0;
      for (int k = 0; k < 4; ++k)
        for (int h = 0; h < 2; ++h) {
          const int e0 = 8 * k + 4 * h, at = lane_byte(r, h);
          const uint32_t nib = (load4(x[i].qs[k / 2] + at) >> (4 * (k % 2))) & 0x0f0f0f0fu;
          or4(b.qs + e0 % 16, nib << (4 * (e0 / 16)));
          qh |= ((x[i].hmask[k] >> at) & 0xfu) << e0;
        }
      std::memcpy(b.qh, &qh, 4);
    }
}

int q8_0_r4_value(const BlockQ8_0R4& b, int r, int e) {
  const int k = e / 8, h = (e % 8) / 4;
  return b.u[k][lane_byte(r, h) + e % 4];
}

int q5_0_r4_value(const BlockQ5_0R4& b, int r, int e) {
  const int k = e / 8, h = (e % 8) / 4, at = lane_byte(r, h) + e % 4;
  const int lo = (b.qs[k / 2][at] >> (4 * (k % 2))) & 0x0f;
  return lo | static_cast<int>((b.hmask[k] >> at) & 1u) << 4;
}

namespace {
template <typename Block, int (*Value)(const Block&, int, int)>
void dot_ref(const Block* x, const BlockQ8_0* y, int64_t nb, int offset, float out[4]) {
  for (int r = 0; r < 4; ++r) {
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      int32_t isum = 0;
      for (int e = 0; e < 32; ++e) isum += (Value(x[i], r, e) - offset) * y[i].qs[e];
      sum += fp16_to_fp32(x[i].d[r]) * fp16_to_fp32(y[i].d) * static_cast<float>(isum);
    }
    out[r] = sum;
  }
}
}  // namespace

void q8_0_r4_dot_ref(const BlockQ8_0R4* x, const BlockQ8_0* y, int64_t nb, float out[4]) {
  dot_ref<BlockQ8_0R4, q8_0_r4_value>(x, y, nb, kQ8_0R4Offset, out);
}

void q5_0_r4_dot_ref(const BlockQ5_0R4* x, const BlockQ8_0* y, int64_t nb, float out[4]) {
  dot_ref<BlockQ5_0R4, q5_0_r4_value>(x, y, nb, kQ5_0R4Offset, out);
}

}  // namespace moe
