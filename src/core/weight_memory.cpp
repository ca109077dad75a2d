#include "core/weight_memory.h"

#include <algorithm>
#include <cstdint>
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

namespace {

// The whole text of a file; empty when it cannot be read.
std::string slurp(const std::string& path) {
  std::ifstream f(path);
  if (!f) return {};
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The value of the line "key N" of a memory.stat text; false without it.
bool stat_value(const std::string& stat, const std::string& key, uint64_t& value) {
  std::istringstream in(stat);
  std::string name;
  uint64_t v = 0;
  while (in >> name >> v)
    if (name == key) {
      value = v;
      return true;
    }
  return false;
}

bool parse_bytes(const std::string& text, uint64_t& value) {
  std::istringstream in(text);
  return static_cast<bool>(in >> value);
}

// This process's cgroup path for a hierarchy from /proc/self/cgroup: the
// line "0::/path" (v2) or "N:...memory...:/path" (v1); empty without one.
std::string cgroup_path(bool v1) {
  std::istringstream in(slurp("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1);
    if (v1 ? controllers.find("memory") != std::string::npos : line.rfind("0::", 0) == 0) return line.substr(c2 + 1);
  }
  return {};
}

// The tightest headroom of this process's cgroup and its ancestors under
// mount (where the hierarchy is mounted; in a container the mount's root is
// the container's own cgroup, so leading parts of the path may not exist
// under it: they are dropped until a directory does).
uint64_t cgroup_headroom(const std::string& mount, bool v1) {
  const std::string limit_file = v1 ? "/memory.limit_in_bytes" : "/memory.max";
  const std::string usage_file = v1 ? "/memory.usage_in_bytes" : "/memory.current";
  std::string path = cgroup_path(v1);
  while (!path.empty() && !std::ifstream(mount + path + limit_file)) {
    const size_t next = path.find('/', 1);
    path = next == std::string::npos ? std::string() : path.substr(next);
  }
  uint64_t headroom = UINT64_MAX;
  for (;;) {
    const std::string dir = mount + path;
    headroom = std::min(headroom, parse_cgroup_headroom(slurp(dir + limit_file), slurp(dir + usage_file),
                                                        slurp(dir + "/memory.stat"), v1));
    if (path.empty() || path == "/") break;
    path = path.substr(0, path.rfind('/'));
  }
  return headroom;
}

}  // namespace

uint64_t parse_cgroup_headroom(const std::string& limit, const std::string& usage, const std::string& stat, bool v1) {
  constexpr uint64_t kNone = UINT64_MAX;
  // v1 writes "no limit" as a page-rounded 2^63 - 1; anything past 2^60
  // bytes is no limit either way.
  constexpr uint64_t kUnlimited = uint64_t{1} << 60;
  uint64_t lim = 0, used = 0, cache = 0;
  if (!parse_bytes(limit, lim) || lim >= kUnlimited || !parse_bytes(usage, used)) return kNone;
  if (v1) {
    uint64_t inactive = 0, active = 0;
    if (!stat_value(stat, "total_inactive_file", inactive) || !stat_value(stat, "total_active_file", active))
      return kNone;
    cache = inactive + active;
  } else if (!stat_value(stat, "file", cache)) {
    return kNone;
  }
  const uint64_t pinned = used > cache ? used - cache : 0;  // what reclaim cannot take back
  return lim > pinned ? lim - pinned : 0;
}

uint64_t mem_available_bytes() {
  const uint64_t available = parse_mem_available(slurp("/proc/meminfo"));
  if (available == 0) return 0;
  const uint64_t headroom =
      std::min(cgroup_headroom("/sys/fs/cgroup", false), cgroup_headroom("/sys/fs/cgroup/memory", true));
  // 0 means "unknown" to the callers; a cgroup with no headroom left is
  // known to have none, so it reads as the least that is not 0.
  return std::max<uint64_t>(1, std::min(available, headroom));
}

bool read_weights_into_memory(WeightMemory m, uint64_t model_bytes, uint64_t available_bytes) {
  if (m != WeightMemory::kAuto) return m == WeightMemory::kRead;
  constexpr uint64_t kSpare = uint64_t{1} << 30;
  return available_bytes > kSpare && model_bytes <= (available_bytes - kSpare) / 2;
}

}  // namespace moe
