#include "core/interrupt.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>
#include <unistd.h>

#include "core/error.h"

namespace moe {

namespace {
// Process-wide by nature: a signal handler can reach nothing else. Written
// only by the handler, read by the work loops.
std::atomic<int> g_signal{0};

extern "C" void on_interrupt(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) _exit(128 + sig);
}

// Test-only (tests/tool_interrupt_test.cpp): MOE_TEST_SLOW_MS=N makes every
// throw_if_interrupted() sleep N ms first, so that a tool runs long enough on
// a tiny fixture to be interrupted halfway. Read once; unset in normal use.
int test_slow_ms() {
  static const int ms = [] {
    const char* s = std::getenv("MOE_TEST_SLOW_MS");
    return s ? std::max(0, std::atoi(s)) : 0;
  }();
  return ms;
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa = {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int interrupt_signal() { return g_signal.load(std::memory_order_relaxed); }

void throw_if_interrupted() {
  if (const int ms = test_slow_ms(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  int sig = interrupt_signal();
  if (sig != 0) throw_error("interrupted by %s", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal");
}

}  // namespace moe
