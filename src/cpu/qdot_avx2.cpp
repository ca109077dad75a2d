// AVX2 + FMA + F16C kernels (compiled with those flags only; chosen at run
// time by cpu_isa_detected()).
#include "cpu/qdot.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MOE_QDOT_VNNI 0
#include "cpu/qdot_x86.inc"
namespace moe {
QdotFn qdot_kernel_avx2(GgmlType type) { return qdot_x86_kernel(type); }
}  // namespace moe
#else
namespace moe {
QdotFn qdot_kernel_avx2(GgmlType) { return nullptr; }
}  // namespace moe
#endif
