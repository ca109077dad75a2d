// Software prefetch for products that stream their weights once from
// memory (one or a few tokens: generation). The hardware prefetchers stop
// at each 4 KiB page and fall behind a kernel that computes between its
// loads: measured on the 2-core Xeon (a one-off micro-benchmark: Q4_K_R4,
// one token, a 400 MiB matrix), the interleaved kernel read 9.4 GB/s at one
// thread and 19.4 at two against a plain read's 16.8 and 33; asking for the
// bytes 6 KiB ahead of the block being computed, 13.8-15.3 and 29.6-30.6
// (2 KiB ahead: 12.3 / 23.7; 12 KiB: 14.3 / 29.2).
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe {

inline constexpr size_t kPrefetchAheadBytes = 6144;

// Asks for [p + kPrefetchAheadBytes, p + kPrefetchAheadBytes + bytes) into
// L2: called by a kernel for each weight block as it starts on it, so the
// whole matrix is requested a fixed distance ahead of its use, a few lines
// at a time. Asking for a whole row (or group of four rows) at once did
// worse (Q4_K_R4: 11.7 GB/s at one thread, 23.4 at two): a burst of 72
// lines overruns the core's outstanding misses and the hints get dropped.
// Prefetches never fault: past the matrix's end they cost at most
// kPrefetchAheadBytes of bandwidth per range a thread computes.
inline void prefetch_ahead(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) + kPrefetchAheadBytes;
  for (size_t l = 0; l < bytes; l += 64) __builtin_prefetch(reinterpret_cast<const void*>(a + l), 0, 2);
}

}  // namespace moe
