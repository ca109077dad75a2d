#include "cpu/qdot.h"

namespace moe {

CpuIsa cpu_isa_detected() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool vnni = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  if (vnni) return CpuIsa::kAvx512Vnni;
  if (avx2) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kScalar;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512Vnni: return "AVX512-VNNI";
    case CpuIsa::kAvx2: return "AVX2";
    case CpuIsa::kScalar: break;
  }
  return "scalar";
}

QdotFn qdot_kernel(GgmlType type, CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512Vnni: return qdot_kernel_avx512vnni(type);
    case CpuIsa::kAvx2: return qdot_kernel_avx2(type);
    case CpuIsa::kScalar: break;
  }
  return nullptr;
}

}  // namespace moe
