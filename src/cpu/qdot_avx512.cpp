// AVX-512 VNNI kernels: the AVX2 code with vpdpbusd for the byte dot
// products (256-bit registers, AVX512VL). Chosen at run time.
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define MOE_QDOT_VNNI 1
#include "cpu/qdot_x86.inc"
#include "cpu/gemm_x86.inc"
#include "cpu/gemm_repack_x86.inc"
#include "cpu/gemm_quantize_x86.inc"
namespace moe {
QdotFn qdot_kernel_avx512vnni(GgmlType type) { return qdot_x86_kernel(type); }
}  // namespace moe
#else
#include "cpu/gemm_q8.h"
namespace moe {
QdotFn qdot_kernel_avx512vnni(GgmlType) { return nullptr; }
GemmTileFn gemm_tile_kernel_avx512vnni() { return nullptr; }
GemmRepackFn gemm_repack_avx512vnni() { return nullptr; }
GemmQuantizeFn gemm_quantize_avx512vnni() { return nullptr; }
}  // namespace moe
#endif
