#include "cli/line_input.h"

#include <editline/readline.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace moe {

namespace {

// Process-wide by nature: a signal handler can reach nothing else.
std::atomic<bool> g_sigint{false};
// Whether the byte read_code_point() returns next is the first of a line:
// libedit's character source takes no context argument.
std::atomic<bool> g_line_start{true};

extern "C" void on_sigint(int) { g_sigint.store(true); }

// libedit's character source. It replaces the default one so that a Ctrl-C
// ends the read (the default retries after EINTR), and it hands libedit whole
// code points: libedit stores what this returns as one wchar_t.
int read_code_point(FILE* f) {
  auto next_byte = [&](bool first) -> int {
    for (;;) {
      // Poll with a timeout rather than block in read(): a Ctrl-C that lands
      // just before the read would otherwise go unnoticed until a key press.
      if (g_sigint.load()) return EOF;
      pollfd p = {fileno(f), POLLIN, 0};
      const int ready = poll(&p, 1, 100);
      if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
      unsigned char c;
      const ssize_t n = ::read(fileno(f), &c, 1);
      if (n == 1) return c;
      if (n < 0 && errno == EINTR) {
        if (g_sigint.load()) return EOF;
        continue;
      }
      return first ? EOF : -2;
    }
  };
  const int b0 = next_byte(true);
  const bool line_start = g_line_start.exchange(false);
  // A Ctrl-D typed while the answer streamed reached the terminal in its
  // cooked mode, and Linux hands it over as a NUL once libedit switches to
  // raw mode: at the start of a line it is still the end of input.
  if (b0 == 0 && line_start) return EOF;
  if (b0 < 0x80) return b0;  // ASCII or EOF
  const int extra = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : b0 >= 0xC0 ? 1 : 0;
  if (extra == 0) return 0xFFFD;  // a stray continuation byte
  uint32_t cp = static_cast<uint32_t>(b0) & (0x3Fu >> extra);
  for (int i = 0; i < extra; ++i) {
    const int b = next_byte(false);
    if (b == EOF) return EOF;
    if (b < 0 || (b & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (static_cast<uint32_t>(b) & 0x3Fu);
  }
  return static_cast<int>(cp);
}

}  // namespace

void sigint_install() {
  struct sigaction sa = {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR
  sigaction(SIGINT, &sa, nullptr);
}

bool sigint_pending() { return g_sigint.load(); }
void sigint_clear() { g_sigint.store(false); }

LineInput::LineInput() : interactive_(isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
  if (!interactive_) return;
  // libedit converts between wchar_t and bytes with the locale's encoding:
  // make it UTF-8 (only LC_CTYPE, so number formatting stays "C").
  const char* loc = std::setlocale(LC_CTYPE, "");
  if (!loc || (!std::strstr(loc, "UTF-8") && !std::strstr(loc, "utf8"))) std::setlocale(LC_CTYPE, "C.UTF-8");
  rl_readline_name = "moe";
  rl_catch_signals = 0;  // our handler, not libedit's
  rl_getc_function = read_code_point;
}

LineInput::~LineInput() = default;

LineInput::Status LineInput::read(const char* prompt, std::string& line) {
  line.clear();
  if (!interactive_) {
    if (std::getline(std::cin, line)) return Status::line;
    return sigint_pending() ? Status::interrupt : Status::eof;
  }
  g_line_start.store(true);
  char* s = readline(prompt);
  if (sigint_pending()) {
    std::free(s);
    return Status::interrupt;
  }
  if (!s) return Status::eof;
  line = s;
  std::free(s);
  return Status::line;
}

bool LineInput::more_pending(int ms) const {
  if (!interactive_) return false;
  pollfd p = {STDIN_FILENO, POLLIN, 0};
  return poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
}

void LineInput::add_history(const std::string& entry) {
  if (interactive_ && !entry.empty()) ::add_history(entry.c_str());
}

}  // namespace moe
