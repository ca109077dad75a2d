// The thread pool covers every index exactly once, for any size and thread
// count, and passes exceptions from workers back to the caller.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "core/thread_pool.h"

using moe::ThreadPool;

TEST_CASE("thread pool: every index once, for awkward sizes and thread counts") {
  for (int threads : {1, 2, 3, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 7, 64, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0};
      pool.parallel_for(n, [&](int64_t b, int64_t e, int t) {
        CHECK(t >= 0);
        CHECK(t < threads);
        ++calls;
        for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (auto& h : hits) CHECK(h.load() == 1);
      CHECK(calls.load() <= threads);
    }
  }
}

TEST_CASE("thread pool: an exception in a worker reaches the caller and the pool stays usable") {
  ThreadPool pool(3);
  CHECK_THROWS_WITH(pool.parallel_for(30, [](int64_t b, int64_t, int) {
                      if (b > 0) throw std::runtime_error("worker failed");
                    }),
                    "worker failed");
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  CHECK(sum.load() == 4950);
}
