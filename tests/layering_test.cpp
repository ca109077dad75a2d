// The layer picture of DESIGN.md holds in the sources: the model reads no CPU
// kernel, the block formats know no CPU backend, and the tests reach the
// library only (never the CLI's sources). One backend registry knows the
// concrete backends.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::path(MOE_TEST_FIXTURES_DIR).parent_path().parent_path();

// Every `#include "..."` of every source file under dir: "file: header".
std::vector<std::string> includes(const std::string& dir) {
  std::vector<std::string> out;
  const std::regex inc(R"re(^\s*#\s*include\s*"([^"]+)")re");
  for (const auto& e : fs::recursive_directory_iterator(kRoot / dir)) {
    const std::string ext = e.path().extension().string();
    if (ext != ".cpp" && ext != ".h" && ext != ".cu" && ext != ".cuh" && ext != ".inc") continue;
    std::ifstream in(e.path());
    std::string line;
    std::smatch m;
    while (std::getline(in, line))
      if (std::regex_search(line, m, inc)) out.push_back(fs::relative(e.path(), kRoot).string() + ": " + m[1].str());
  }
  return out;
}

void check_none(const std::vector<std::string>& incs, const std::string& forbidden_prefix) {
  int n = 0;
  for (const std::string& i : incs) {
    const std::string header = i.substr(i.find(": ") + 2);
    CHECK_MESSAGE(header.rfind(forbidden_prefix, 0) != 0, i);
    ++n;
  }
  CHECK(n > 0);  // the folder was found and read
}

}  // namespace

TEST_CASE("layering: src/model includes no CPU kernel header") { check_none(includes("src/model"), "cpu/"); }

TEST_CASE("layering: src/quant includes no CPU backend header") { check_none(includes("src/quant"), "cpu/"); }

TEST_CASE("layering: tests include no CLI source header") { check_none(includes("tests"), "cli/"); }

TEST_CASE("layering: only the backend registry includes a concrete backend from src/runtime") {
  for (const std::string& i : includes("src/runtime")) {
    const bool concrete = i.find(": cpu/") != std::string::npos || i.find(": cuda") != std::string::npos;
    if (concrete) CHECK_MESSAGE(i.rfind("src/runtime/backend_registry.cpp", 0) == 0, i);
  }
}

// ctest takes a ';' in a doctest case name as a list separator: the case is
// registered as two tests that select nothing, and "passes" without running.
TEST_CASE("test names: no test case name contains a semicolon") {
  const std::regex name(R"re(TEST_CASE\("([^"]*)")re");
  int n = 0;
  for (const auto& e : fs::directory_iterator(kRoot / "tests")) {
    if (e.path().extension() != ".cpp") continue;
    std::ifstream in(e.path());
    std::string line;
    std::smatch m;
    while (std::getline(in, line))
      if (std::regex_search(line, m, name)) {
        ++n;
        CHECK_MESSAGE(m[1].str().find(';') == std::string::npos, e.path().filename().string() << ": " << m[1].str());
      }
  }
  CHECK(n > 100);
}
