#include "core/interrupt.h"

#include <atomic>
#include <csignal>
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
  int sig = interrupt_signal();
  if (sig != 0) throw_error("interrupted by %s", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal");
}

}  // namespace moe
