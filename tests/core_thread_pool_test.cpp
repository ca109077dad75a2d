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

TEST_CASE("thread pool: parallel_jobs runs every job once, with a valid thread index, and passes exceptions back") {
  for (int threads : {1, 2, 3, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 64, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::vector<std::atomic<int>> per_thread(static_cast<size_t>(threads));
      pool.parallel_jobs(n, [&](int64_t j, int t) {
        REQUIRE(t >= 0);
        REQUIRE(t < threads);
        ++per_thread[static_cast<size_t>(t)];
        ++hits[static_cast<size_t>(j)];
      });
      int total = 0;
      for (auto& h : hits) CHECK(h.load() == 1);
      for (auto& c : per_thread) total += c.load();
      CHECK(total == n);
    }
  }
  ThreadPool pool(2);
  CHECK_THROWS_WITH(pool.parallel_jobs(50, [](int64_t j, int) {
                      if (j == 31) throw std::runtime_error("job 31 failed");
                    }),
                    "job 31 failed");
}
