#include "core/weight_memory.h"

#include <fstream>
#include <sstream>

namespace moe {

uint64_t parse_mem_available(const std::string& meminfo) {
  std::istringstream in(meminfo);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    uint64_t kib = 0;
    std::string unit;
    if (!(fields >> kib >> unit) || unit != "kB") return 0;
    return kib * 1024;
  }
  return 0;
}

uint64_t mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  if (!f) return 0;
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_mem_available(ss.str());
}

bool read_weights_into_memory(WeightMemory m, uint64_t model_bytes, uint64_t available_bytes) {
  if (m != WeightMemory::kAuto) return m == WeightMemory::kRead;
  constexpr uint64_t kSpare = uint64_t{1} << 30;
  return available_bytes > kSpare && model_bytes <= (available_bytes - kSpare) / 2;
}

}  // namespace moe
