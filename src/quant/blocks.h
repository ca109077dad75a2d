// Every ggml block format moe.cpp computes with, and a compile-time table from
// GgmlType to its block struct and decoder, shared by the CPU reference
// (quant/dequantize.cpp) and the CUDA kernels (cuda/dequantize.cu).
//
// The plain float types are one-element "blocks" so one loop serves all types.
#pragma once

#include <cstdint>

#include "core/fp16.h"
#include "core/ggml_type.h"
#include "core/host_device.h"
#include "quant/blocks_k.h"
#include "quant/blocks_legacy.h"
#include "quant/blocks_mxfp4.h"

namespace moe {

struct BlockF32 {
  static constexpr int kElements = 1;
  float v;
};
struct BlockF16 {
  static constexpr int kElements = 1;
  uint16_t h;  // IEEE half bits
};
struct BlockBF16 {
  static constexpr int kElements = 1;
  uint16_t h;  // bfloat16 bits
};

static_assert(sizeof(BlockF32) == 4 && sizeof(BlockF16) == 2 && sizeof(BlockBF16) == 2);

MOE_HD void dequant_block_f32(const BlockF32& b, float* y) { y[0] = b.v; }
MOE_HD void dequant_block_f16(const BlockF16& b, float* y) { y[0] = fp16_to_fp32(b.h); }
MOE_HD void dequant_block_bf16(const BlockBF16& b, float* y) { y[0] = bf16_to_fp32(b.h); }

// BlockFormat<T>::Block is the block struct of type T, decode() its decoder.
template <typename B, void (*Decode)(const B&, float*)>
struct BlockFormatOf {
  using Block = B;
  static constexpr int kElements = B::kElements;
  MOE_HD static void decode(const B& b, float* y) { Decode(b, y); }
};

template <GgmlType T>
struct BlockFormat;
template <> struct BlockFormat<GgmlType::F32> : BlockFormatOf<BlockF32, dequant_block_f32> {};
template <> struct BlockFormat<GgmlType::F16> : BlockFormatOf<BlockF16, dequant_block_f16> {};
template <> struct BlockFormat<GgmlType::BF16> : BlockFormatOf<BlockBF16, dequant_block_bf16> {};
template <> struct BlockFormat<GgmlType::Q4_0> : BlockFormatOf<BlockQ4_0, dequant_block_q4_0> {};
template <> struct BlockFormat<GgmlType::Q4_1> : BlockFormatOf<BlockQ4_1, dequant_block_q4_1> {};
template <> struct BlockFormat<GgmlType::Q5_0> : BlockFormatOf<BlockQ5_0, dequant_block_q5_0> {};
template <> struct BlockFormat<GgmlType::Q5_1> : BlockFormatOf<BlockQ5_1, dequant_block_q5_1> {};
template <> struct BlockFormat<GgmlType::Q8_0> : BlockFormatOf<BlockQ8_0, dequant_block_q8_0> {};
template <> struct BlockFormat<GgmlType::Q8_1> : BlockFormatOf<BlockQ8_1, dequant_block_q8_1> {};
template <> struct BlockFormat<GgmlType::Q2_K> : BlockFormatOf<BlockQ2_K, dequant_block_q2_k> {};
template <> struct BlockFormat<GgmlType::Q3_K> : BlockFormatOf<BlockQ3_K, dequant_block_q3_k> {};
template <> struct BlockFormat<GgmlType::Q4_K> : BlockFormatOf<BlockQ4_K, dequant_block_q4_k> {};
template <> struct BlockFormat<GgmlType::Q5_K> : BlockFormatOf<BlockQ5_K, dequant_block_q5_k> {};
template <> struct BlockFormat<GgmlType::Q6_K> : BlockFormatOf<BlockQ6_K, dequant_block_q6_k> {};
template <> struct BlockFormat<GgmlType::Q8_K> : BlockFormatOf<BlockQ8_K, dequant_block_q8_k> {};
template <> struct BlockFormat<GgmlType::MXFP4> : BlockFormatOf<BlockMXFP4, dequant_block_mxfp4> {};

// Calls f.template operator()<T>() with the compile-time type for `type`;
// returns false (calling nothing) for a type without a decoder. The one
// switch over dequantizable types that both the CPU and CUDA paths use.
template <typename F>
bool visit_block_format(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::F32: f.template operator()<GgmlType::F32>(); return true;
    case GgmlType::F16: f.template operator()<GgmlType::F16>(); return true;
    case GgmlType::BF16: f.template operator()<GgmlType::BF16>(); return true;
    case GgmlType::Q4_0: f.template operator()<GgmlType::Q4_0>(); return true;
    case GgmlType::Q4_1: f.template operator()<GgmlType::Q4_1>(); return true;
    case GgmlType::Q5_0: f.template operator()<GgmlType::Q5_0>(); return true;
    case GgmlType::Q5_1: f.template operator()<GgmlType::Q5_1>(); return true;
    case GgmlType::Q8_0: f.template operator()<GgmlType::Q8_0>(); return true;
    case GgmlType::Q8_1: f.template operator()<GgmlType::Q8_1>(); return true;
    case GgmlType::Q2_K: f.template operator()<GgmlType::Q2_K>(); return true;
    case GgmlType::Q3_K: f.template operator()<GgmlType::Q3_K>(); return true;
    case GgmlType::Q4_K: f.template operator()<GgmlType::Q4_K>(); return true;
    case GgmlType::Q5_K: f.template operator()<GgmlType::Q5_K>(); return true;
    case GgmlType::Q6_K: f.template operator()<GgmlType::Q6_K>(); return true;
    case GgmlType::Q8_K: f.template operator()<GgmlType::Q8_K>(); return true;
    case GgmlType::MXFP4: f.template operator()<GgmlType::MXFP4>(); return true;
    default: return false;
  }
}

}  // namespace moe
