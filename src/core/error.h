// Errors and always-on assertions.
//
// Every failure caused by input (a file, a key, a tensor, an argument) is an
// exception whose message names the thing at fault and says what was expected
// and what was found. Nothing aborts on bad input; MOE_ASSERT stays on in
// release builds, MOE_DASSERT checks hot paths in debug builds only.
#pragma once

#include <cstdarg>
#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrfmt(const char* fmt, va_list ap);

[[noreturn]] void throw_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace moe

#define MOE_ASSERT(cond, ...)                       \
  do {                                              \
    if (!(cond)) ::moe::throw_error(__VA_ARGS__);   \
  } while (0)

#ifdef NDEBUG
#define MOE_DASSERT(cond) ((void)0)
#else
#define MOE_DASSERT(cond)                                                              \
  do {                                                                                 \
    if (!(cond)) ::moe::throw_error("internal check failed: %s (%s:%d)", #cond,       \
                                    __FILE__, __LINE__);                               \
  } while (0)
#endif
