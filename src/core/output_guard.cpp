#include "core/output_guard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

void refuse_output_over_input(const std::string& output, const std::string& input) {
  if (same_file(output, input))
    throw_error("the output '%s' is the input file '%s': writing it would destroy the input; choose another output "
                "name", output.c_str(), input.c_str());
}

void refuse_same_outputs(const std::string& output, const std::string& second, const char* flag) {
  std::error_code ec;
  const fs::path a = fs::absolute(output, ec).lexically_normal(), b = fs::absolute(second, ec).lexically_normal();
  if (a == b || same_file(output, second))
    throw_error("%s %s is also the output (-o %s)", flag, second.c_str(), output.c_str());
}

void refuse_output_in_checkpoint(const std::string& output, const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || e.path().extension() == ".gguf") continue;
    if (same_file(output, e.path().string()))
      throw_error("the output '%s' is the checkpoint's own file '%s': writing it would destroy the checkpoint; "
                  "choose a .gguf name", output.c_str(), e.path().string().c_str());
  }
}

void require_writable_output(const std::string& output) {
  MOE_ASSERT(!output.empty(), "the output file name is empty");
  std::error_code ec;
  if (fs::is_directory(output, ec)) throw_error("the output '%s' is a directory; give a file name", output.c_str());
  fs::path parent = fs::path(output).parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    throw_error("cannot write '%s': the directory '%s' does not exist", output.c_str(), parent.c_str());
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    throw_error("cannot write '%s': the directory '%s' is not writable (%s)", output.c_str(), parent.c_str(),
                std::strerror(errno));
}

}  // namespace moe
