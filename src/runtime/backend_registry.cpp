#include "runtime/backend_registry.h"

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "cpu/matmul_interleaved.h"
#include "runtime/imatrix_collector.h"

namespace moe {

BackendSet make_backends(const BackendOptions& o) {
  BackendSet s;
  s.host = std::make_unique<CpuBackend>("CPU", o.n_threads);
  if (o.collect_imatrix) {
    // The collector sees the ops the host runs; a device would run them unseen.
    MOE_ASSERT(o.device == "cpu", "collecting an importance matrix runs on the CPU only (not --device %s)",
               o.device.c_str());
    s.host = std::make_unique<ImatrixCollector>(std::move(s.host), *o.collect_imatrix, o.imatrix_process_output);
  }
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

bool host_reads_repacked_weights() { return q4_k_r4_dot_kernel() != nullptr; }

}  // namespace moe
