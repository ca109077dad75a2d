// Where the weights live (core/weight_memory.h): the automatic choice reads
// a model into memory only when twice it fits, so a model larger than the
// available memory keeps running from the mapping.
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
