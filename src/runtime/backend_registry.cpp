#include "runtime/backend_registry.h"

#include "core/error.h"
#include "cpu/cpu_backend.h"

namespace moe {

BackendSet make_backends(const BackendOptions& o) {
  BackendSet s;
  s.host = std::make_unique<CpuBackend>("CPU", o.n_threads);
  if (o.device == "cpu") return s;
  if (o.device == "cpu-device") {
    s.device = std::make_unique<CpuBackend>("CPU-device", o.device_threads > 0 ? o.device_threads : o.n_threads);
    s.device_budget = o.device_mem;  // unlimited unless --gpu-mem says
    return s;
  }
  if (o.device == "cuda")
    throw_error("--device cuda: the CUDA backend is not built yet in this version; run with --device cpu");
  throw_error("--device '%s': expected cpu or cuda", o.device.c_str());
}

}  // namespace moe
