// choose_context (runtime/context_size.h): -c 0 takes the model's context
// capped to memory, an explicit -c that cannot fit is refused naming bytes.
#include <doctest/doctest.h>

#include <string>

#include "core/error.h"
#include "runtime/context_size.h"

using namespace moe;

TEST_CASE("context size: -c 0 is the model's context, capped to what the caches of all sequences can take") {
  const uint64_t MiB = 1 << 20;
  // 1 KiB per position: 163840 positions need 160 MiB.
  ContextChoice c = choose_context(0, 163840, 1024, 1, 1024 * MiB);
  CHECK(c.n_ctx == 163840);
  CHECK(c.notice.find("the model's") != std::string::npos);
  c = choose_context(0, 163840, 1024, 1, 100 * MiB);
  CHECK(c.n_ctx == 102400);
  CHECK(c.notice.find("not the model's 163840") != std::string::npos);
  c = choose_context(0, 163840, 1024, 4, 100 * MiB);  // four sequences share the memory
  CHECK(c.n_ctx == 25600);
  CHECK_THROWS_AS(choose_context(0, 163840, 1024, 1, 512), Error);
}

TEST_CASE("context size: an explicit -c whose caches do not fit is refused, naming the bytes") {
  const uint64_t MiB = 1 << 20;
  CHECK(choose_context(4096, 163840, 1024, 1, 4 * MiB).n_ctx == 4096);
  CHECK(choose_context(4096, 163840, 1024, 1, 4 * MiB).notice.empty());
  try {
    choose_context(8192, 163840, 1024, 2, 4 * MiB);
    FAIL("no error");
  } catch (const Error& e) {
    const std::string w = e.what();
    CHECK(w.find("-c 8192 -np 2") != std::string::npos);
    CHECK(w.find("needs 16.0 MiB") != std::string::npos);
    CHECK(w.find("4.0 MiB of memory is left") != std::string::npos);
  }
  // Weights read into memory are already out of MemAvailable; mapped ones
  // claim their size, at most half of it; 256 MiB stay for activations.
  CHECK(memory_for_caches(8192 * MiB, 0) == 7936 * MiB);
  CHECK(memory_for_caches(8192 * MiB, 1024 * MiB) == 6912 * MiB);
  CHECK(memory_for_caches(8192 * MiB, 100000 * MiB) == 3840 * MiB);
  CHECK(memory_for_caches(100 * MiB, 0) == 0);
}
