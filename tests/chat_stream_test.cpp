// The text filters of the generation loop: stop strings held back while they
// may still match, and R1 reasoning shown dimmed or hidden, for any way the
// text is cut into pieces.
#include <doctest/doctest.h>

#include "runtime/reasoning_filter.h"
#include "runtime/stop_matcher.h"

using namespace moe;

namespace {
// Feeds `text` in pieces of `step` bytes; returns what came out.
template <class Filter>
std::string feed(Filter& f, const std::string& text, size_t step) {
  std::string out;
  for (size_t i = 0; i < text.size(); i += step) out += f.push(text.substr(i, step));
  return out;
}
}  // namespace

TEST_CASE("stop strings: the text before the first stop, whatever the pieces") {
  for (size_t step = 1; step <= 6; ++step) {
    INFO("step " << step);
    StopMatcher m({"END", "\n\n"});
    std::string out = feed(m, "one EN two ENDthree", step);
    CHECK(m.stopped());
    CHECK(out == "one EN two ");
    CHECK(m.flush().empty());

    StopMatcher n({"END"});
    out = feed(n, "no stop here, just EN", step);
    CHECK_FALSE(n.stopped());
    CHECK(out + n.flush() == "no stop here, just EN");
  }
  // Held back exactly while it could still be a stop string.
  StopMatcher m({"<|end|>"});
  CHECK(m.push("abc<|e") == "abc");
  CHECK(m.push("x") == "<|ex");
  CHECK(m.push("<|end|>tail").empty());
  CHECK(m.stopped());
  CHECK(partial_match_suffix("hello wor", "world") == 3);
  CHECK(partial_match_suffix("world", "world") == 0);  // a whole match is not partial
}

TEST_CASE("reasoning: <think> blocks dimmed, hidden, or shown plainly") {
  const std::string text = "<think>\nhmm</think>\n\nAnswer.";
  for (size_t step = 1; step <= 5; ++step) {
    INFO("step " << step);
    ReasoningFilter hide(false, true, false);
    CHECK(feed(hide, text, step) + hide.flush() == "\n\nAnswer.");
    ReasoningFilter plain(false, false, false);
    CHECK(feed(plain, text, step) + plain.flush() == text);
    // R1: the prompt opened the block; the answer starts inside it.
    ReasoningFilter r1(true, true, false);
    CHECK(feed(r1, "hmm, 2+2</think>4", step) + r1.flush() == "4");
  }
  ReasoningFilter dim(false, false, true);
  const std::string out = dim.push(text) + dim.flush();
  CHECK(out == "\x1b[2m<think>\x1b[22m\x1b[2m\nhmm\x1b[22m\x1b[2m</think>\x1b[22m\n\nAnswer.");
  // A '<' that turns out not to start a tag is released.
  ReasoningFilter lt(false, true, false);
  CHECK(lt.push("a <") == "a ");
  CHECK(lt.push("b") == "<b");
}
