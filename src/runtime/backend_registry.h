// The backends of a run, chosen once at start from the command line: a host
// CPU backend always (it computes the routed experts left in host memory),
// and a device backend when one is asked for and present. This is the one
// place that knows the concrete backends.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "convert/imatrix_file.h"
#include "runtime/backend.h"

namespace moe {

struct BackendOptions {
  // "cpu": the CPU alone. "cuda": a CUDA GPU (not built yet). "cpu-device":
  // a second CPU backend standing in for a device, with its own threads and
  // memory budget (tests of the hybrid path; hidden from --help).
  std::string device = "cpu";
  int n_threads = 1;       // the host backend's threads
  int device_threads = 0;  // the stand-in device's threads; 0: n_threads
  int64_t device_mem = -1;  // --gpu-mem bytes for the device; -1: its default
  // moe-imatrix: the host backend adds up the squared activations entering
  // each weight matrix into these sums (runtime/imatrix_collector.h).
  ImatrixSums* collect_imatrix = nullptr;
  bool imatrix_process_output = false;  // output.weight too
};

struct BackendSet {
  std::unique_ptr<Backend> host;    // a CPU backend
  std::unique_ptr<Backend> device;  // null: the host computes everything
  int64_t device_budget = -1;       // bytes of weights and cache the device may hold; -1: no limit
  Backend& compute() const { return device ? *device : *host; }
  // "CPU (...)", or the device's description and the host's.
  std::string describe() const { return device ? device->describe() + " + " + host->describe() : host->describe(); }
};

// Throws naming the option at fault (an unknown --device, no CUDA in this build).
BackendSet make_backends(const BackendOptions& o);

// Whether this CPU has kernels for the repacked weight layouts
// (model/repacked_tensors.h): loaders repack when it does, unless told not to.
bool host_reads_repacked_weights();

}  // namespace moe
