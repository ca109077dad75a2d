// latent_row_decode's AVX-512 decoders (latent_decode_x86.inc), for the
// hot readers of typed cache rows: V4's attention over its window and
// compressed rows, the decompressed MLA prompt form, the V3.2 index keys'
// shifts. Built with AVX-512F flags for this file only; chosen at run time
// when the CPU has them. The values are exactly the reference's.
#include "cpu/latent_rows.h"

#include "cpu/matmul.h"
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include "core/fp16.h"
#include "quant/blocks_legacy.h"

namespace moe {
namespace {

#include "cpu/latent_decode_x86.inc"

void decode_f16(const float* src, int64_t dim, float* x) { decode_f16_row(reinterpret_cast<const uint8_t*>(src), dim, x); }
void decode_bf16(const float* src, int64_t dim, float* x) { decode_bf16_row(reinterpret_cast<const uint8_t*>(src), dim, x); }
void decode_q8_0(const float* src, int64_t dim, float* x) { decode_q8_0_row(reinterpret_cast<const uint8_t*>(src), dim, x); }

}  // namespace

LatentRowDecodeFn latent_row_decode_kernel(LatentType t, int64_t dim) {
  if (cpu_isa_active() != CpuIsa::kAvx512Vnni) return nullptr;
  switch (t) {
    case LatentType::kF16: return decode_f16;
    case LatentType::kBf16: return decode_bf16;
    case LatentType::kQ8_0: return dim % 32 == 0 ? decode_q8_0 : nullptr;  // it writes whole blocks
    case LatentType::kF32: return nullptr;
  }
  return nullptr;
}

}  // namespace moe
#else
namespace moe {
LatentRowDecodeFn latent_row_decode_kernel(LatentType, int64_t) { return nullptr; }
}  // namespace moe
#endif
