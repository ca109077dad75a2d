# Common commands; CMake is the build. See README.md.
#   make setup      install the Debian packages the build needs (scripts/setup.sh)
#   make            configure and build (build/)
#   make test       build, run the test suite, then the sanitizer build's suite
#   make run        build and run the main job on the built-in default model

JOBS  ?= $(shell nproc)
BUILD ?= build
ASAN  ?= build-asan
GEN   := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all setup configure build test test-fast test-asan run clean fuzz

all: build

setup:
	@scripts/setup.sh --check >/dev/null 2>&1 || scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GEN) -DCMAKE_BUILD_TYPE=Release

configure: setup $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer over the CPU suite (no CUDA).
test-asan: setup
	cmake -S . -B $(ASAN) $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_SANITIZE=ON -DMOE_CUDA=OFF
	cmake --build $(ASAN) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN) --output-on-failure -j $(JOBS)

test: test-fast test-asan

PROMPT ?= The quick brown fox
run: build
	$(BUILD)/moe -p "$(PROMPT)" -n 32

# libFuzzer (clang, build-fuzz/): make fuzz FUZZ_TARGET=tokenizer FUZZ_SECONDS=600
FUZZ_TARGET ?= gguf_reader
FUZZ_SECONDS ?= 60
fuzz: setup
	nice -n 19 scripts/fuzz.sh $(FUZZ_TARGET) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(ASAN)
