// Where the weights live: mapped from the file (the page cache's pages) or
// read into memory the process owns (2 MiB-aligned, transparent huge pages).
//
// Measured on the V2-Lite-shaped Q4_K_M (9.7 GiB, 2 threads, 24 GiB
// machine): generation reads ~1.2 GB of weights per token, and from owned
// huge-page memory it runs 19.3 t/s against 16.6 t/s from the mapping
// (moe-bench -p 0 -n 64 --mmap 0|1, alternating, 3 rounds), as ik_llama.cpp
// gains from -rtr's owned copy. So the automatic choice reads the model
// into memory when that is safe and maps it otherwise, which keeps models
// larger than RAM running from the mmap.
#pragma once

#include <cstdint>
#include <string>

namespace moe {

enum class WeightMemory { kAuto, kMap, kRead };

// The memory this process may still fill, in bytes: MemAvailable from
// /proc/meminfo, or less where a memory cgroup (a container's limit,
// systemd's MemoryMax, v2 or v1) leaves less (at least 1: a cgroup at its
// limit still counts as known); 0 when MemAvailable cannot be read.
// Without the cgroup a container with a 16 GiB limit on a 64 GiB host
// would read a 20 GiB model into memory and be killed.
uint64_t mem_available_bytes();
// MemAvailable parsed from a meminfo text (tests); 0 without the line.
uint64_t parse_mem_available(const std::string& meminfo);

// What a memory cgroup leaves: limit - usage + the page cache charged to it
// (the kernel reclaims that before it kills), from the texts of its files:
// v2 memory.max ("max" or bytes), memory.current and memory.stat
// ("file N"); v1 memory.limit_in_bytes, memory.usage_in_bytes and
// memory.stat ("total_inactive_file N", "total_active_file N"). UINT64_MAX
// when there is no limit or a text does not parse (then MemAvailable rules).
uint64_t parse_cgroup_headroom(const std::string& limit, const std::string& usage, const std::string& stat, bool v1);

// Read the weights into memory? kAuto: when twice the file fits in the
// available memory with 1 GiB to spare: the owned copy, plus the page
// cache's copy left by reading it, which keeps the next start fast (and
// which the kernel may drop, so this is the conservative side). Unknown
// available memory (0) maps.
bool read_weights_into_memory(WeightMemory m, uint64_t model_bytes, uint64_t available_bytes);

// A model loaded as `m` asks: load(map) for kMap/kRead; for kAuto mapped
// first (that reads only the metadata and gives the set's size), then read
// into memory when read_weights_into_memory says so. load(bool) returns a
// pointer to a model with file().total_size().
template <typename Load>
auto load_with_weight_memory(WeightMemory m, const Load& load) {
  if (m != WeightMemory::kAuto) return load(m == WeightMemory::kMap);
  auto mapped = load(true);
  if (!read_weights_into_memory(m, mapped->file().total_size(), mem_available_bytes())) return mapped;
  mapped.reset();
  return load(false);
}

}  // namespace moe
