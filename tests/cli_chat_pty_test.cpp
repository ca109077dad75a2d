// `moe` chat driven through a real terminal (a pseudo-terminal from forkpty):
// two turns where the second evaluates only the new turn's tokens, /reset,
// Ctrl-C during an answer, Ctrl-C at the prompt, Ctrl-D. Every wait has a
// deadline and the child is killed on the way out, so a broken chat fails
// the test instead of hanging it.
#include <doctest/doctest.h>

#include <cstdio>

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/deepseek2.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {

class PtyChild {
 public:
  explicit PtyChild(const std::vector<std::string>& argv, const std::string& term = "xterm") {
    winsize ws = {};
    ws.ws_row = 24;
    ws.ws_col = 200;
    pid_ = forkpty(&fd_, nullptr, nullptr, &ws);
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      setenv("TERM", term.c_str(), 1);
      unsetenv("NO_COLOR");
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~PtyChild() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }

  void send(const std::string& s) { REQUIRE(write(fd_, s.data(), s.size()) == static_cast<ssize_t>(s.size())); }

  // Reads until `re` matches the output after position `from`; returns the
  // match and its groups (empty on timeout or end of output).
  std::vector<std::string> wait_for(const std::regex& re, size_t from, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      std::smatch m;
      const std::string tail = out_.substr(std::min(from, out_.size()));
      if (std::regex_search(tail, m, re)) {
        last_end_ = from + static_cast<size_t>(m.position(0) + m.length(0));
        return std::vector<std::string>(m.begin(), m.end());
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(static_cast<int>(left.count()))) return {};
    }
  }
  bool wait_for(const std::string& literal, size_t from, double timeout_s) {
    return !wait_for(std::regex(std::regex_replace(literal, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)")), from,
                     timeout_s)
                .empty();
  }

  // Waits for the child to exit; returns its exit code (-1: killed or timeout).
  int wait_exit(double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      read_some(50);
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        if (WIFSIGNALED(status)) MESSAGE("child killed by signal " << WTERMSIG(status));
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
    }
    return -1;
  }

  const std::string& output() const { return out_; }
  bool exited() const { return exited_; }
  size_t last_end() const { return last_end_; }  // just past the last match

 private:
  bool read_some(int timeout_ms) {
    pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return true;  // nothing yet: the caller checks its deadline
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;  // the child closed the terminal
    out_.append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::string out_;
  size_t last_end_ = 0;
};

const std::regex kStats(R"(\[prompt (\d+) tokens \(new\), (\d+) cached \| generated (\d+) tokens[^\]]*\| ([a-z ]+)\])");
const std::regex kPrompt(R"(\n> )");
constexpr double kTimeout = 60;  // generous for sanitizer builds; a working run takes a second or two

}  // namespace

TEST_CASE("moe chat in a terminal: the second turn evaluates only its own tokens, then /reset and Ctrl-D") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  auto model = Deepseek2Model::load(model_path);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  // Hand-written from the DeepSeek-V3 template the model carries.
  const size_t turn2_tokens = tok.encode("<｜end▁of▁sentence｜><｜User｜>What is MLA?<｜Assistant｜>", false, true).size();
  const size_t fresh_tokens = tok.encode("<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>", false, true).size();

  PtyChild c({test::bin_dir() + "/moe", "-m", model_path, "-t", "2", "--temp", "0", "-n", "8", "-c", "512"});
  REQUIRE(c.wait_for("> ", 0, kTimeout));

  c.send("Hello there\r");
  const auto t1 = c.wait_for(kStats, c.last_end(), kTimeout);
  REQUIRE(!t1.empty());
  const long first_new = std::stol(t1[1]), first_gen = std::stol(t1[3]);
  CHECK(std::stol(t1[2]) == 0);
  CHECK(first_new == static_cast<long>(tok.encode("<｜begin▁of▁sentence｜><｜User｜>Hello there<｜Assistant｜>", false, true).size()));
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());

  c.send("What is MLA?\r");
  const auto t2 = c.wait_for(kStats, c.last_end(), kTimeout);
  REQUIRE(!t2.empty());
  INFO("output: " << c.output());
  // Only the new turn is evaluated: the cache keeps the first prompt and the
  // answer tokens the model generated (the EOS that ended it, if any, is not
  // in the cache: the template's end-of-answer marker is part of turn 2).
  CHECK(static_cast<size_t>(std::stol(t2[1])) == turn2_tokens);
  const long answer_in_cache = t1[4] == "eos" ? first_gen - 1 : first_gen;
  CHECK(std::stol(t2[2]) == first_new + answer_in_cache);
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());

  c.send("/reset\r");
  REQUIRE(c.wait_for("[conversation cleared]", c.last_end(), kTimeout));
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());
  c.send("Hi\r");
  const auto t3 = c.wait_for(kStats, c.last_end(), kTimeout);
  REQUIRE(!t3.empty());
  // A fresh conversation: what is kept (BOS, <｜User｜>) plus what is new is
  // exactly the one-message rendering.
  CHECK(static_cast<size_t>(std::stol(t3[1]) + std::stol(t3[2])) == fresh_tokens);
  CHECK(std::stol(t3[2]) < static_cast<long>(fresh_tokens));
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());

  // Ctrl-D. Typed ahead, before the line editor has switched the terminal
  // to its own mode, the terminal driver may swallow it; a user would press
  // it again, and so does the test.
  int code = -1;
  for (int attempt = 0; attempt < 3 && code == -1 && !c.exited(); ++attempt) {
    c.send("\x04");
    code = c.wait_exit(attempt < 2 ? 5 : kTimeout);
  }
  CHECK(code == 0);
}

TEST_CASE("moe chat in a terminal: Ctrl-C stops the answer, a second Ctrl-C at the prompt exits") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  // A long answer: without the interrupt it would run to the end of the context.
  PtyChild c({test::bin_dir() + "/moe", "-m", model_path, "-t", "2", "--temp", "0", "-n", "100000", "-c", "2048",
              "--system", "You are verbose."});
  REQUIRE(c.wait_for("> ", 0, kTimeout));
  c.send("Tell me everything\r");
  const size_t asked = c.output().size();
  // Wait until the answer is streaming, then interrupt it.
  const auto started = std::chrono::steady_clock::now();
  while (c.output().size() < asked + 60 && std::chrono::steady_clock::now() - started < std::chrono::seconds(30))
    c.wait_for("\x01never\x01", c.output().size(), 0.1);
  c.send("\x03");
  const auto st = c.wait_for(kStats, asked, kTimeout);
  REQUIRE(!st.empty());
  INFO("output: " << c.output());
  CHECK(st[4] == "interrupted");
  CHECK(std::stol(st[3]) < 2000);  // cut long before the context filled
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());
  // Still alive and answering after the interrupt.
  c.send("/help\r");
  CHECK(c.wait_for("/reset", c.last_end(), kTimeout));
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());
  c.send("\x03");  // Ctrl-C at the prompt leaves
  CHECK(c.wait_exit(kTimeout) == 0);
}

namespace {
// Chat with stdin from a file (no terminal: plain line reading).
test::CommandResult chat_from_file(const std::string& input, const std::string& flags) {
  const std::string path = test::temp_dir() + "/in.txt";
  test::write_file(path, input.data(), input.size());
  const std::string cmd = test::bin_dir() + "/moe -m " + test::local_fixture("tiny-dsv3.Q4_K_M.gguf") +
                          " -t 2 --temp 0 " + flags + " < " + path;
  return test::run_command({"/bin/sh", "-c", cmd});
}
size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("moe chat: a full context is reported, or with --context-shift the oldest turns are dropped") {
  const std::string turns = "Hello there my friend\nSecond question here\nThird one\nFourth\n";
  const auto plain = chat_from_file(turns, "-c 40 -n 12");
  INFO("stderr: " << plain.err);
  CHECK(plain.exit_code == 0);
  CHECK(plain.err.find("context full") != std::string::npos);
  CHECK(plain.err.find("/reset") != std::string::npos);
  CHECK(count(plain.err, "[prompt ") < 4);  // some turns could not be answered

  const auto shift = chat_from_file(turns, "-c 40 -n 12 --context-shift --system Sys.");
  INFO("stderr: " << shift.err);
  CHECK(shift.exit_code == 0);
  CHECK(shift.err.find("dropped the oldest turn") != std::string::npos);
  CHECK(count(shift.err, "[prompt ") == 4);  // every turn answered
}

TEST_CASE("moe chat: multi-line input with a trailing backslash or \"\"\" fences is one message") {
  const auto r = chat_from_file("line one \\\nline two\n\"\"\"\nfenced one\nfenced two\n\"\"\"\n/exit\nnot read\n", "-n 2");
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(count(r.err, "[prompt ") == 2);  // two messages, then /exit
}

TEST_CASE("moe chat: R1 reasoning is hidden with --hide-reasoning, never dimmed off a terminal") {
  // The R1 template opens "<think>\n" for the model: the random-weight model
  // never closes it, so everything it writes is reasoning.
  const auto shown = chat_from_file("Hi\n", "-n 8 --chat-template deepseek-r1");
  const auto hidden = chat_from_file("Hi\n", "-n 8 --chat-template deepseek-r1 --hide-reasoning");
  INFO("stderr: " << shown.err << hidden.err);
  REQUIRE(shown.exit_code == 0);
  REQUIRE(hidden.exit_code == 0);
  CHECK(shown.err.find("template deepseek-r1") != std::string::npos);
  CHECK(shown.out.find("\x1b[") == std::string::npos);  // stdout is not a terminal
  CHECK(shown.out.size() > 4);
  CHECK(hidden.out == "\n\n");  // the turn's newline and the one on leaving
  CHECK(count(hidden.err, "generated 8 tokens") == 1);
}

TEST_CASE("moe chat: DeepSeek-V3.2's format thinks by default, --reasoning-budget 0 and /set nothink turn it off") {
  // The greedy answer to a rendering equals one-shot's to the same text: the
  // user turn opens the answer, then "<think>" (thinking) or "</think>".
  auto one_shot = [](const std::string& prompt) {
    const auto r = test::run_command({test::bin_dir() + "/moe", "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-t",
                                      "2", "--temp", "0", "-n", "4", "--no-display-prompt", "-p", prompt});
    REQUIRE(r.exit_code == 0);
    return r.out;
  };
  const std::string on = one_shot("<｜User｜>Hi<｜Assistant｜><think>"), off = one_shot("<｜User｜>Hi<｜Assistant｜></think>");
  REQUIRE(on != off);

  const auto thinking = chat_from_file("Hi\n", "-n 4 --chat-template deepseek3.2");
  const auto budget0 = chat_from_file("Hi\n", "-n 4 --chat-template deepseek3.2 --reasoning-budget 0");
  const auto toggled = chat_from_file("/set nothink\nHi\n/set think\nAgain\n", "-n 4 --chat-template deepseek3.2");
  INFO("stderr: " << thinking.err << budget0.err << toggled.err);
  REQUIRE(thinking.exit_code == 0);
  REQUIRE(budget0.exit_code == 0);
  REQUIRE(toggled.exit_code == 0);
  CHECK(thinking.err.find("template deepseek3.2 (thinking on)") != std::string::npos);
  CHECK(budget0.err.find("template deepseek3.2 (thinking off)") != std::string::npos);
  CHECK(thinking.out == on + "\n");  // and the newline on leaving
  CHECK(budget0.out == off + "\n");
  CHECK(toggled.out.rfind("[thinking off]\n" + off, 0) == 0);
  CHECK(toggled.out.find("[thinking on]") != std::string::npos);
  // The turn after /set think reuses the first turn's cache.
  CHECK(count(toggled.err, "[prompt ") == 2);
  const size_t second = toggled.err.find("[prompt ", toggled.err.find("[prompt ") + 1);
  int fresh = 0, cached = 0;
  REQUIRE(std::sscanf(toggled.err.c_str() + second, "[prompt %d tokens (new), %d cached", &fresh, &cached) == 2);
  CHECK(cached >= 9);  // BOS, the user turn, its "</think>" and the answer

  // A template without the switch says so; a budget other than -1 or 0 is refused.
  const auto v3 = chat_from_file("/set nothink\n", "");
  CHECK(v3.out.find("template has no thinking switch") != std::string::npos);
  const auto bad = chat_from_file("Hi\n", "--reasoning-budget 100");
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("--reasoning-budget") != std::string::npos);
}

// A copy of a GGUF file without tokenizer.chat_template, in the temp dir.
static std::string copy_without_template(const std::string& src, const std::string& name) {
  const GgufFile in = GgufFile::open(src);
  const std::string out = test::temp_dir() + "/" + name;
  GgufWriter w(out, in.alignment());
  for (const auto& kv : in.metadata())
    if (kv.key != "tokenizer.chat_template") w.set(kv.key, kv.value);
  for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape);
  w.begin();
  for (const auto& t : in.tensors()) w.write_tensor_data(t.data, t.nbytes);
  w.finish();
  return out;
}

TEST_CASE("moe chat: a deepseek32 file without a template of its own gets DeepSeek-V3.2's format") {
  const std::string src = test::shared_fixture("models/tiny-dsv32.Q8_0.gguf");
  if (src.empty()) return test::skip("tiny-dsv32.Q8_0.gguf not found");
  const std::string out = copy_without_template(src, "no-template.gguf");
  auto chat = [](const std::string& model) {
    return test::run_command({"/bin/sh", "-c", test::bin_dir() + "/moe -m " + model + " -t 2 -n 2 < /dev/null"});
  };
  const auto none = chat(out), own = chat(src);
  INFO("stderr: " << none.err << own.err);
  CHECK(none.exit_code == 0);
  CHECK(none.err.find("template deepseek3.2 (thinking on)") != std::string::npos);
  CHECK(own.err.find("template deepseek3,") != std::string::npos);  // the file's own (V3's) template wins
}

TEST_CASE("moe chat in a terminal: R1 reasoning is dimmed") {
  PtyChild c({test::bin_dir() + "/moe", "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-t", "2", "--temp", "0",
              "-n", "8", "--chat-template", "deepseek-r1"});
  REQUIRE(c.wait_for("> ", 0, kTimeout));
  c.send("Hi\r");
  REQUIRE(!c.wait_for(kStats, c.last_end(), kTimeout).empty());
  INFO("output: " << c.output());
  CHECK(c.output().find("\x1b[2m") != std::string::npos);
  CHECK(c.output().find("\x1b[22m") != std::string::npos);
  c.send("/exit\r");
  CHECK(c.wait_exit(kTimeout) == 0);
}

TEST_CASE("moe chat in a terminal: TERM=dumb gets no escape codes") {
  PtyChild c({test::bin_dir() + "/moe", "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-t", "2", "--temp", "0",
              "-n", "8", "--chat-template", "deepseek-r1"},
             "dumb");
  REQUIRE(c.wait_for("> ", 0, kTimeout));
  c.send("Hi\r");
  REQUIRE(!c.wait_for(kStats, c.last_end(), kTimeout).empty());
  INFO("output: " << c.output());
  CHECK(c.output().find("\x1b[2m") == std::string::npos);
  c.send("/bye\r");
  CHECK(c.wait_exit(kTimeout) == 0);
}

TEST_CASE("moe chat in a terminal: a pasted block of lines is one message") {
  PtyChild c({test::bin_dir() + "/moe", "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-t", "2", "--temp", "0",
              "-n", "4"});
  REQUIRE(c.wait_for("> ", 0, kTimeout));
  c.send("first pasted line\rsecond pasted line\rthird\r");  // one write: what a terminal sends for a paste
  const auto st = c.wait_for(kStats, 0, kTimeout);
  REQUIRE(!st.empty());
  REQUIRE(!c.wait_for(kPrompt, c.last_end(), kTimeout).empty());
  INFO("output: " << c.output());
  CHECK(count(c.output(), "[prompt ") == 1);
  // The three lines were one user message: evaluated as the whole rendering.
  auto model = Deepseek2Model::load(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"));
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  const size_t want = tok.encode("<｜begin▁of▁sentence｜><｜User｜>first pasted line\nsecond pasted line\nthird<｜Assistant｜>",
                                 false, true).size();
  CHECK(std::stoul(st[1]) == want);
  c.send("/exit\r");
  CHECK(c.wait_exit(kTimeout) == 0);
}

TEST_CASE("moe one-shot in a terminal: Ctrl-C keeps the text, the timing line and the exit status 130") {
  PtyChild c({test::bin_dir() + "/moe", "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-t", "2", "-p", "Once",
              "-n", "-1", "-c", "65536", "--ignore-eos"});
  const auto started = std::chrono::steady_clock::now();
  while (c.output().size() < 200 && std::chrono::steady_clock::now() - started < std::chrono::seconds(30))
    c.wait_for("\x01never\x01", c.output().size(), 0.1);
  c.send("\x03");
  CHECK(c.wait_exit(kTimeout) == 130);
  INFO("output: " << c.output());
  CHECK(c.output().find("stop: interrupted") != std::string::npos);
  CHECK(c.output().find("generation ") != std::string::npos);
}

TEST_CASE("moe chat --context-shift: the turns after a dropped one are shifted in the cache, not evaluated again") {
  const std::string path = test::temp_dir() + "/turns.txt";
  const std::string turns = "Who was Ruth\nAnd Naomi\nTell me of Boaz\nWhat of Moab\nAnd the famine\n";
  test::write_file(path, turns.data(), turns.size());
  const std::string cmd = test::bin_dir() + "/moe -m " + std::string(MOE_MODELS_DIR) +
                          "/tiny-kjv-dsv3.Q4_K_M.gguf -t 2 --temp 0 -c 80 -n 16 --context-shift < " + path;
  const auto r = test::run_command({"/bin/sh", "-c", cmd});
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(count(r.err, "[prompt ") == 5);
  CHECK(count(r.err, "dropped the oldest turn") >= 1);
  // Each turn after a drop evaluates its own message only: the cache kept
  // the later turns (shifted), more than the system part alone.
  for (size_t p = r.err.find("dropped the oldest turn"); p != std::string::npos;
       p = r.err.find("dropped the oldest turn", p + 1)) {
    const size_t q = r.err.find("[prompt ", p);
    REQUIRE(q != std::string::npos);
    int fresh = 0, cached = 0;
    REQUIRE(std::sscanf(r.err.c_str() + q, "[prompt %d tokens (new), %d cached", &fresh, &cached) == 2);
    CHECK(fresh <= 12);
    CHECK(cached >= 30);
  }
}

// /save writes the conversation with its cache; /load in another run takes
// both back, so the next turn evaluates only its own tokens and answers as
// the uninterrupted conversation does.
TEST_CASE("moe chat /save and /load: a saved conversation continues without evaluating it again") {
  const std::string dir = test::temp_dir();
  const std::string saved = dir + "/conversation.cache";
  const auto a = chat_from_file("Who was Ruth\nAnd Naomi\n/save " + saved + "\n", "-n 12");
  INFO("first run stderr: " << a.err);
  REQUIRE(a.exit_code == 0);
  CHECK(a.out.find("[saved 4 messages") != std::string::npos);

  const auto b = chat_from_file("/load " + saved + "\nTell me of Boaz\n", "-n 12");
  const auto whole = chat_from_file("Who was Ruth\nAnd Naomi\nTell me of Boaz\n", "-n 12");
  INFO("loaded run stdout: " << b.out << "\nstderr: " << b.err);
  INFO("uninterrupted run stdout: " << whole.out << "\nstderr: " << whole.err);
  REQUIRE(b.exit_code == 0);
  REQUIRE(whole.exit_code == 0);
  const size_t loaded = b.out.find("[loaded 4 messages");
  REQUIRE(loaded != std::string::npos);
  // The third answer is the same text, from the same prompt and cache.
  const std::string answer = b.out.substr(b.out.find('\n', loaded) + 1);
  CHECK(answer.size() > 2);
  CHECK(whole.out.size() >= answer.size());
  CHECK(whole.out.compare(whole.out.size() - answer.size(), answer.size(), answer) == 0);
  std::smatch mb, mw;
  REQUIRE(std::regex_search(b.err, mb, kStats));
  std::string rest = whole.err;
  for (int turn = 0; turn < 3; ++turn) {
    REQUIRE(std::regex_search(rest, mw, kStats));
    if (turn < 2) rest = mw.suffix();
  }
  CHECK(mb[1] == mw[1]);  // tokens evaluated: the new turn only, as in one run
  CHECK(mb[2] == mw[2]);  // tokens cached
  CHECK(std::stoi(mb[2]) > 20);

  // Refusals leave the chat going: no file, a prompt cache, another -ctk.
  const std::string prompt_cache = dir + "/prompt.cache";
  const auto p = test::run_command({test::bin_dir() + "/moe", "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "-t",
                                    "2", "-p", "Who was Ruth", "-n", "2", "--prompt-cache", prompt_cache});
  REQUIRE_MESSAGE(p.exit_code == 0, p.err);
  const auto bad = chat_from_file("/load " + dir + "/none\n/load " + prompt_cache + "\n/load\nHello\n", "-n 4");
  INFO("refusals stdout: " << bad.out);
  CHECK(bad.exit_code == 0);
  CHECK(bad.out.find("[cannot open prompt cache '" + dir + "/none'") != std::string::npos);
  CHECK(bad.out.find("not a conversation saved with /save") != std::string::npos);
  CHECK(bad.out.find("[/load FILE: name the file]") != std::string::npos);
  CHECK(count(bad.err, "[prompt ") == 1);  // and Hello is answered
  const auto other = chat_from_file("/load " + saved + "\n", "-n 4 -ctk bf16");
  CHECK(other.out.find("its cache is f32, ") != std::string::npos);
  const auto over = chat_from_file("/save " + test::local_fixture("tiny-dsv3.Q4_K_M.gguf") + "\n", "-n 4");
  CHECK(over.out.find("is the input file") != std::string::npos);
}

TEST_CASE("moe chat: a deepseek4 file without a template gets DeepSeek-V4's format, --chat-template-kwargs turns thinking off") {
  const std::string src = test::shared_fixture("models/tiny-dsv4.f32.gguf");
  if (src.empty()) return test::skip("tiny-dsv4.f32.gguf not found");
  const std::string out = copy_without_template(src, "dsv4-no-template.gguf");
  auto chat = [&](const std::string& extra) {
    return test::run_command({"/bin/sh", "-c", test::bin_dir() + "/moe -m " + out + " -t 2 -n 2 " + extra + " < /dev/null"});
  };
  const auto on = chat(""), off = chat("--chat-template-kwargs '{\"enable_thinking\": false}'");
  const auto bad = chat("--chat-template-kwargs '{\"reasoning_effort\": 3}'");
  INFO("stderr: " << on.err << off.err << bad.err);
  CHECK(on.exit_code == 0);
  CHECK(on.err.find("template deepseek4 (thinking on)") != std::string::npos);
  CHECK(off.err.find("template deepseek4 (thinking off)") != std::string::npos);
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("reasoning_effort") != std::string::npos);
}

// The same for DeepSeek-V4, whose cache is saved as rings and blocks.
TEST_CASE("moe chat /save and /load with a deepseek4 file: the next turn evaluates only itself and answers alike") {
  const std::string src = test::shared_fixture("models/tiny-dsv4.f32.gguf");
  if (src.empty()) return test::skip("tiny-dsv4.f32.gguf not found");
  const std::string dir = test::temp_dir();
  auto chat = [&](const std::string& input) {
    const std::string path = dir + "/dsv4-in.txt";
    test::write_file(path, input.data(), input.size());
    return test::run_command({"/bin/sh", "-c", test::bin_dir() + "/moe -m " + src + " -t 2 --temp 0 -n 10 < " + path});
  };
  const std::string saved = dir + "/dsv4.conversation";
  const auto a = chat("Who was Ruth\n/save " + saved + "\n");
  INFO("first run: " << a.out << a.err);
  REQUIRE(a.exit_code == 0);
  CHECK(a.out.find("[saved 2 messages") != std::string::npos);
  const auto b = chat("/load " + saved + "\nAnd Naomi\n");
  const auto whole = chat("Who was Ruth\nAnd Naomi\n");
  INFO("loaded run: " << b.out << b.err << "\nwhole run: " << whole.out << whole.err);
  REQUIRE(b.exit_code == 0);
  REQUIRE(whole.exit_code == 0);
  const size_t loaded = b.out.find("[loaded 2 messages");
  REQUIRE(loaded != std::string::npos);
  const std::string answer = b.out.substr(b.out.find('\n', loaded) + 1);
  CHECK(answer.size() > 2);
  REQUIRE(whole.out.size() >= answer.size());
  CHECK(whole.out.compare(whole.out.size() - answer.size(), answer.size(), answer) == 0);
  std::smatch mb, mw;
  REQUIRE(std::regex_search(b.err, mb, kStats));
  REQUIRE(std::regex_search(whole.err, mw, kStats));
  const std::string second = mw.suffix();
  REQUIRE(std::regex_search(second, mw, kStats));
  CHECK(mb[1] == mw[1]);  // tokens evaluated: the new turn only
  CHECK(mb[2] == mw[2]);  // tokens cached
}
