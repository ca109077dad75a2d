#include "cli/output.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace moe {

void write_stdout(std::string_view text) {
  errno = 0;
  if ((!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) || std::fflush(stdout) != 0 ||
      std::ferror(stdout)) {
    const int e = errno;
    std::clearerr(stdout);
    throw_error("cannot write to standard output: %s", e ? std::strerror(e) : "write error");
  }
}

void require_prompt_fits(size_t n_prompt, long long n_ctx, const char* hint) {
  if (static_cast<long long>(n_prompt) < n_ctx) return;
  if (static_cast<long long>(n_prompt) == n_ctx)
    throw_error("the prompt is %zu tokens and fills the context of %lld tokens, leaving no room to generate%s",
                n_prompt, n_ctx, hint);
  throw_error("the prompt is %zu tokens, longer than the context of %lld tokens%s", n_prompt, n_ctx, hint);
}

}  // namespace moe
