// Where the weights live (core/weight_memory.h): the automatic choice reads
// a model into memory only when twice it fits, so a model larger than the
// available memory keeps running from the mapping.
#include <algorithm>
#include <cstdint>
#include <string>

#include <doctest/doctest.h>

#include "core/weight_memory.h"

using namespace moe;

TEST_CASE("weight memory: auto reads a model that fits twice and maps the rest, unless a flag says") {
  constexpr uint64_t GiB = uint64_t{1} << 30;
  CHECK(read_weights_into_memory(WeightMemory::kAuto, 10 * GiB, 24 * GiB));
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kAuto, 12 * GiB, 24 * GiB));   // 2 x 12 + 1 > 24
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kAuto, 40 * GiB, 24 * GiB));   // larger than RAM
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kAuto, 1 * GiB, 0));           // unknown: map
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kAuto, 1, GiB / 2));           // under the spare
  CHECK(read_weights_into_memory(WeightMemory::kRead, 40 * GiB, 24 * GiB));
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kMap, 1, 24 * GiB));
}

TEST_CASE("weight memory: MemAvailable is read from meminfo text") {
  CHECK(parse_mem_available("MemTotal:       24683520 kB\nMemFree:        12144000 kB\n"
                            "MemAvailable:   24102144 kB\nBuffers:            1234 kB\n") == uint64_t{24102144} * 1024);
  CHECK(parse_mem_available("MemTotal: 100 kB\n") == 0);
  CHECK(parse_mem_available("MemAvailable: lots\n") == 0);
  CHECK(mem_available_bytes() > 0);  // this machine has /proc/meminfo
}

TEST_CASE("weight memory: a memory cgroup's limit caps the available memory") {
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  const std::string g16 = std::to_string(16 * kGiB), g10 = std::to_string(10 * kGiB);
  // v2: 16 GiB limit, 10 GiB charged of which 4 GiB page cache -> 10 GiB left.
  CHECK(parse_cgroup_headroom(g16 + "\n", g10 + "\n", "anon 123\nfile " + std::to_string(4 * kGiB) + "\nshmem 0\n",
                              false) == 10 * kGiB);
  CHECK(parse_cgroup_headroom("max\n", g10, "file 0\n", false) == UINT64_MAX);  // no limit
  CHECK(parse_cgroup_headroom(g16, g10, "anon 5\n", false) == UINT64_MAX);       // no file line: MemAvailable rules
  CHECK(parse_cgroup_headroom("", "", "", false) == UINT64_MAX);                  // no such files
  // v1: the page cache is total_inactive_file + total_active_file.
  CHECK(parse_cgroup_headroom(g16, g10,
                              "cache 99\ntotal_inactive_file " + std::to_string(kGiB) + "\ntotal_active_file " +
                                  std::to_string(3 * kGiB) + "\n",
                              true) == 10 * kGiB);
  CHECK(parse_cgroup_headroom("9223372036854771712\n", g10, "total_inactive_file 0\ntotal_active_file 0\n", true) ==
        UINT64_MAX);  // v1's "no limit"
  // Over the limit in what reclaim cannot take back: nothing left, so a
  // model is mapped rather than read.
  CHECK(parse_cgroup_headroom(g10, g16, "file 0\n", false) == 0);
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kAuto, kGiB, 0));
  // A 20 GiB model under a 16 GiB container limit on a host with 60 GiB
  // available is mapped, not read.
  const uint64_t left = std::min<uint64_t>(60 * kGiB, parse_cgroup_headroom(g16, "0", "file 0\n", false));
  CHECK_FALSE(read_weights_into_memory(WeightMemory::kAuto, 20 * kGiB, left));
  CHECK(read_weights_into_memory(WeightMemory::kAuto, 20 * kGiB, 60 * kGiB));
}
