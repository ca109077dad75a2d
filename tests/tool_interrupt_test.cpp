// moe-quantize and moe-convert interrupted halfway by SIGTERM or SIGINT must
// leave no partial output: the file that was there before is byte-identical,
// no OUT.tmp.* file remains, and the exit status says the run failed.
//
// The tools run on the shared fixtures (skipped when absent) with the test
// hook MOE_TEST_SLOW_MS (src/core/interrupt.cpp), which makes each
// interruption check sleep, so a small input runs long enough to be caught
// in the middle of writing.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::string> temp_files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

struct Interrupted {
  bool saw_temp = false;     // OUT.tmp.* appeared before the signal
  bool saw_data = false;     // and grew past its header: tensor data was being written
  bool exited = false;       // the process ended within the deadline
  int status = 0;            // waitpid status
  std::string err;           // its stderr
};

// Starts argv with MOE_TEST_SLOW_MS set, waits for OUT.tmp.* in `dir` to
// appear and grow, sends `sig`, and waits for the process to end.
Interrupted run_and_interrupt(std::vector<std::string> args, const std::string& dir, int sig) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string slow = "MOE_TEST_SLOW_MS=20";
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("MOE_TEST_SLOW_MS=", 0) != 0) envp.push_back(*e);
  envp.push_back(slow.data());
  envp.push_back(nullptr);
  const std::string err_path = dir + "/stderr.txt";

  Interrupted r;
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(devnull, 1);
    if (err >= 0) ::dup2(err, 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  uintmax_t first_size = 0;
  while (Clock::now() < deadline) {
    const std::vector<std::string> tmp = temp_files_in(dir);
    if (!tmp.empty()) {
      std::error_code ec;
      const uintmax_t size = fs::file_size(tmp[0], ec);
      if (!ec && !r.saw_temp) {
        r.saw_temp = true;
        first_size = size;
      } else if (!ec && size > first_size) {
        r.saw_data = true;
        break;
      }
    }
    if (::waitpid(pid, &r.status, WNOHANG) == pid) {  // finished (or failed) before we could interrupt
      r.exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!r.exited) ::kill(pid, sig);
  const auto exit_deadline = Clock::now() + std::chrono::seconds(30);
  while (!r.exited && Clock::now() < exit_deadline) {
    if (::waitpid(pid, &r.status, WNOHANG) == pid) {
      r.exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!r.exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &r.status, 0);
  }
  const std::vector<uint8_t> e = moe::test::read_file(err_path);
  r.err.assign(e.begin(), e.end());
  return r;
}

void check_interrupted_cleanly(const std::string& tool, std::vector<std::string> args_before_out,
                               std::vector<std::string> args_after_out, int sig) {
  const std::string dir = moe::test::temp_dir();
  const std::string out = dir + "/out.gguf";
  const std::vector<uint8_t> previous = {'p', 'r', 'e', 'v', 'i', 'o', 'u', 's', 0x00, 0xff, '\n'};
  moe::test::write_file(out, previous);

  std::vector<std::string> args = {moe::test::bin_dir() + "/" + tool};
  args.insert(args.end(), args_before_out.begin(), args_before_out.end());
  args.push_back(out);
  args.insert(args.end(), args_after_out.begin(), args_after_out.end());
  const Interrupted r = run_and_interrupt(args, dir, sig);
  INFO(tool, " with ", sig == SIGINT ? "SIGINT" : "SIGTERM", "; stderr: ", r.err);

  CHECK(r.saw_temp);
  CHECK(r.saw_data);
  REQUIRE(r.exited);
  // Failed: a non-zero exit (the tools exit 128+sig or 1) or death by the signal.
  const bool failed = WIFSIGNALED(r.status) || (WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0);
  CHECK(failed);
  if (WIFEXITED(r.status)) CHECK(r.err.find("interrupted") != std::string::npos);
  CHECK(moe::test::read_file(out) == previous);
  CHECK(temp_files_in(dir).empty());
}

}  // namespace

TEST_CASE("tool interrupt: moe-quantize stopped by SIGTERM and by SIGINT leaves no partial output") {
  const std::string in = moe::test::shared_fixture("models/tiny-dsv2lite.f32.gguf");
  if (in.empty()) return moe::test::skip("fixture models/tiny-dsv2lite.f32.gguf is missing");
  for (int sig : {SIGTERM, SIGINT}) {
    check_interrupted_cleanly("moe-quantize", {in}, {"Q4_K_M", "-t", "1"}, sig);
  }
}

TEST_CASE("tool interrupt: moe-convert stopped by SIGTERM and by SIGINT leaves no partial output") {
  const std::string in = moe::test::shared_fixture("hf/hf-tiny-dsv3");
  if (in.empty()) return moe::test::skip("fixture hf/hf-tiny-dsv3 is missing");
  for (int sig : {SIGTERM, SIGINT}) {
    check_interrupted_cleanly("moe-convert", {in, "-o"}, {"--outtype", "f16", "-t", "1"}, sig);
  }
}
