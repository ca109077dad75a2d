#!/usr/bin/env bash
# build-llamacpp.sh - build the peer llama.cpp (the source bundled in the npm
# package node-llama-cpp) into a cache folder outside the repository.
#
# Usage:
#   scripts/build-llamacpp.sh [options]
#   BIN=$(scripts/build-llamacpp.sh | tail -1)      # bin dir is the last stdout line
#
# Options:
#   --cuda            build the CUDA variant (GGML_CUDA=ON) into build-cuda/
#                     instead of the CPU-only build-cpu/
#   --version V       node-llama-cpp version (default: 3.22.1, the release the
#                     reference fixtures were made with; env NODE_LLAMA_CPP_VERSION)
#   --tarball FILE    use this node-llama-cpp-V.tgz instead of `npm pack`
#                     (offline machines; env MOE_PEER_TARBALL)
#   --targets "A B"   CMake targets to build (default: llama-cli llama-completion
#                     llama-bench llama-perplexity llama-quantize llama-simple,
#                     those present in the tree; env MOE_PEER_TARGETS)
#   --jobs N          parallel build jobs (default: nproc; env MOE_PEER_JOBS)
#   --no-native       build without -march=native (GGML_NATIVE=OFF)
#   --force           ignore the "build complete" stamp: reconfigure and rebuild
#                     (incremental; nothing is deleted)
#   --clean           delete this variant's build folder first
#   --check           build nothing: print the bin dir and exit 0 if a complete
#                     build exists, else exit 1
#   -h, --help        show this help
#
# Environment:
#   MOE_PEER_CACHE      cache root (default: $HOME/.cache/moe.cpp); the build goes to
#                       $MOE_PEER_CACHE/llama.cpp-<version>/{dist,package,src,build-cpu,build-cuda}
#   CUDACXX             nvcc for --cuda (default: /usr/local/cuda/bin/nvcc)
#   CUDA_ARCHITECTURES  CMAKE_CUDA_ARCHITECTURES for --cuda (default: 90)
#   MOE_PEER_CMAKE_ARGS extra arguments appended to the cmake configure line
#
# Layout / idempotence: every step leaves a marker and is skipped when done
# (tarball in dist/, extracted package/, git clone in src/, patches applied,
# CMake build folder); an interrupted build resumes incrementally. A run that
# finds a complete build prints only the bin dir. All progress goes to stderr;
# stdout carries only the bin dir (the last and only line).
#
# Offline use (e.g. a GPU machine with no network): put the tarball at
# $MOE_PEER_CACHE/llama.cpp-<version>/dist/node-llama-cpp-<version>.tgz (or pass
# --tarball); `npm` is then not needed. A cache root inside the repo's ignored
# .cache/ folder (MOE_PEER_CACHE=$PWD/.cache/peer) lets that dist/ folder be carried.

set -euo pipefail

# Bump when the configure arguments change, so that old builds get reconfigured.
readonly SCRIPT_REV=1

log()  { printf '[build-llamacpp] %s\n' "$*" >&2; }
die()  { printf '[build-llamacpp] error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" | sed '$d'; }

VERSION="${NODE_LLAMA_CPP_VERSION:-3.22.1}"
CACHE_ROOT="${MOE_PEER_CACHE:-$HOME/.cache/moe.cpp}"
TARBALL_IN="${MOE_PEER_TARBALL:-}"
TARGETS_IN="${MOE_PEER_TARGETS:-}"
JOBS="${MOE_PEER_JOBS:-$(nproc 2>/dev/null || echo 2)}"
VARIANT=cpu
NATIVE=ON
FORCE=0
CLEAN=0
CHECK_ONLY=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --cuda)       VARIANT=cuda ;;
        --cpu)        VARIANT=cpu ;;
        --version)    [[ $# -ge 2 ]] || die "--version needs a value"; VERSION="$2"; shift ;;
        --version=*)  VERSION="${1#*=}" ;;
        --tarball)    [[ $# -ge 2 ]] || die "--tarball needs a value"; TARBALL_IN="$2"; shift ;;
        --tarball=*)  TARBALL_IN="${1#*=}" ;;
        --targets)    [[ $# -ge 2 ]] || die "--targets needs a value"; TARGETS_IN="$2"; shift ;;
        --targets=*)  TARGETS_IN="${1#*=}" ;;
        --jobs|-j)    [[ $# -ge 2 ]] || die "--jobs needs a value"; JOBS="$2"; shift ;;
        --jobs=*)     JOBS="${1#*=}" ;;
        --no-native)  NATIVE=OFF ;;
        --force)      FORCE=1 ;;
        --clean)      CLEAN=1 ;;
        --check)      CHECK_ONLY=1 ;;
        -h|--help)    usage; exit 0 ;;
        *)            usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

[[ "$VERSION" =~ ^[0-9A-Za-z.+-]+$ ]] || die "bad version: $VERSION"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "bad --jobs value: $JOBS"
[[ -z "$TARBALL_IN" ]] || TARBALL_IN="$(cd "$(dirname "$TARBALL_IN")" && pwd)/$(basename "$TARBALL_IN")"

mkdir -p "$CACHE_ROOT"
CACHE_ROOT="$(cd "$CACHE_ROOT" && pwd)"
VDIR="$CACHE_ROOT/llama.cpp-$VERSION"
DIST_DIR="$VDIR/dist"
TARBALL="$DIST_DIR/node-llama-cpp-$VERSION.tgz"
PKG_DIR="$VDIR/package"
BUNDLE="$PKG_DIR/llama/gitRelease.bundle"
SRC_DIR="$VDIR/src"
BUILD_DIR="$VDIR/build-$VARIANT"
BIN_DIR="$BUILD_DIR/bin"
STAMP="$BUILD_DIR/.moe-build-complete"

CUDACXX_BIN="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
CUDA_ARCHS="${CUDA_ARCHITECTURES:-90}"

# The fingerprint of everything that decides the build's contents.
FINGERPRINT="rev=$SCRIPT_REV version=$VERSION variant=$VARIANT native=$NATIVE targets=[${TARGETS_IN}] extra=[${MOE_PEER_CMAKE_ARGS:-}]"
if [[ "$VARIANT" == cuda ]]; then
    FINGERPRINT+=" cuda_archs=$CUDA_ARCHS nvcc=$CUDACXX_BIN"
fi

# A build is complete when the stamp matches and all its binaries exist.
build_is_complete() {
    [[ -f "$STAMP" ]] || return 1
    [[ "$(sed -n 's/^fingerprint=//p' "$STAMP")" == "$FINGERPRINT" ]] || return 1
    local t stamped=()
    read -r -a stamped <<< "$(sed -n 's/^targets=//p' "$STAMP")"
    [[ ${#stamped[@]} -gt 0 ]] || return 1
    for t in "${stamped[@]}"; do
        [[ -x "$BIN_DIR/$t" ]] || return 1
    done
    return 0
}

if [[ $CLEAN -eq 0 && $FORCE -eq 0 ]] && build_is_complete; then
    printf '%s\n' "$BIN_DIR"
    exit 0
fi
if [[ $CHECK_ONLY -eq 1 ]]; then
    log "no complete $VARIANT build of llama.cpp (node-llama-cpp $VERSION) in $BUILD_DIR"
    exit 1
fi

command -v cmake >/dev/null || die "cmake not found"
command -v git   >/dev/null || die "git not found"

mkdir -p "$VDIR"
# Serialise concurrent runs on the same cache (e.g. two scripts asking at once):
# fd 8 locks this variant's build for the whole run, fd 9 the shared source
# steps (fetch, extract, clone, patch) only, so CPU and CUDA builds can overlap.
HAVE_FLOCK=0
command -v flock >/dev/null && HAVE_FLOCK=1
take_lock() {   # take_lock FD FILE WHAT
    [[ $HAVE_FLOCK -eq 1 ]] || return 0
    eval "exec $1>\"\$2\""
    if ! flock -n "$1"; then
        log "another run holds the $3 lock ($2); waiting for it..."
        flock "$1"
    fi
}
take_lock 8 "$VDIR/.lock-build-$VARIANT" "$VARIANT build"
if [[ $CLEAN -eq 0 && $FORCE -eq 0 ]] && build_is_complete; then
    printf '%s\n' "$BIN_DIR"
    exit 0
fi
take_lock 9 "$VDIR/.lock-source" "source"

START_TS=$(date +%s)
log "llama.cpp peer: node-llama-cpp $VERSION, $VARIANT variant, cache $VDIR"

# ---- 1. the npm tarball -------------------------------------------------------
if [[ ! -s "$TARBALL" ]]; then
    mkdir -p "$DIST_DIR"
    tmp="$(mktemp -d "$DIST_DIR/.pack.XXXXXX")"
    if [[ -n "$TARBALL_IN" ]]; then
        [[ -s "$TARBALL_IN" ]] || die "tarball not found: $TARBALL_IN"
        log "using tarball $TARBALL_IN"
        cp "$TARBALL_IN" "$tmp/pkg.tgz"
    else
        command -v npm >/dev/null || die "npm not found (or pass --tarball FILE)"
        log "npm pack node-llama-cpp@$VERSION ..."
        (cd "$tmp" && npm pack "node-llama-cpp@$VERSION" --pack-destination "$tmp" \
                --loglevel=error >&2) \
            || { rm -rf "$tmp"; die "npm pack node-llama-cpp@$VERSION failed"; }
        shopt -s nullglob
        packed=("$tmp"/node-llama-cpp-*.tgz)
        shopt -u nullglob
        [[ ${#packed[@]} -eq 1 ]] || { rm -rf "$tmp"; die "npm pack produced no tarball"; }
        mv "${packed[0]}" "$tmp/pkg.tgz"
    fi
    tar -tzf "$tmp/pkg.tgz" package/llama/gitRelease.bundle >/dev/null 2>&1 \
        || { rm -rf "$tmp"; die "tarball lacks package/llama/gitRelease.bundle"; }
    mv "$tmp/pkg.tgz" "$TARBALL"
    rm -rf "$tmp"
else
    log "tarball present: $TARBALL"
fi

# ---- 2. extract the llama/ part of the package ---------------------------------
if [[ ! -s "$BUNDLE" || ! -f "$PKG_DIR/.extracted" ]]; then
    log "extracting $TARBALL ..."
    rm -rf "$PKG_DIR" "$VDIR/.package.partial"
    mkdir -p "$VDIR/.package.partial"
    tar -xzf "$TARBALL" -C "$VDIR/.package.partial" package/package.json package/llama
    mv "$VDIR/.package.partial/package" "$PKG_DIR"
    rmdir "$VDIR/.package.partial"
    [[ -s "$BUNDLE" ]] || die "no llama/gitRelease.bundle in the package"
    touch "$PKG_DIR/.extracted"
fi
if [[ -f "$PKG_DIR/llama/llama.cpp.info.json" ]]; then
    log "package llama.cpp info: $(tr -d ' \n' < "$PKG_DIR/llama/llama.cpp.info.json")"
fi

# ---- 3. clone the git bundle -------------------------------------------------------
if ! git -C "$SRC_DIR" rev-parse --verify -q HEAD >/dev/null 2>&1 \
        || [[ ! -f "$SRC_DIR/CMakeLists.txt" ]]; then
    log "git clone $BUNDLE -> $SRC_DIR"
    rm -rf "$SRC_DIR" "$SRC_DIR.partial"
    git -c advice.detachedHead=false clone --quiet "$BUNDLE" "$SRC_DIR.partial" >&2
    mv "$SRC_DIR.partial" "$SRC_DIR"
fi
SRC_COMMIT="$(git -C "$SRC_DIR" rev-parse HEAD)"
log "llama.cpp source: $SRC_DIR @ ${SRC_COMMIT:0:12}"

# ---- 4. the patches node-llama-cpp applies to its checkout -----------------------
# (node-llama-cpp applies llama/patches/*.diff with `git apply --ignore-whitespace`
# when it builds from source; do the same so the peer matches what it builds.)
shopt -s nullglob
for patch in "$PKG_DIR"/llama/patches/*.diff; do
    name="$(basename "$patch")"
    if git -C "$SRC_DIR" apply --ignore-whitespace --reverse --check "$patch" >/dev/null 2>&1; then
        :   # already applied
    elif git -C "$SRC_DIR" apply --ignore-whitespace --check "$patch" >/dev/null 2>&1; then
        log "applying node-llama-cpp patch $name"
        git -C "$SRC_DIR" apply --ignore-whitespace "$patch"
    else
        log "warning: patch $name neither applies nor is applied; skipping it"
    fi
done
shopt -u nullglob

[[ $HAVE_FLOCK -eq 0 ]] || flock -u 9   # the source tree is ready

# ---- 5. configure ---------------------------------------------------------------
# Options that this source tree knows about (old/new llama.cpp differ).
cmake_knows() {
    grep -rqsw --include=CMakeLists.txt --include='*.cmake' -e "$1" \
        "$SRC_DIR/CMakeLists.txt" "$SRC_DIR/ggml/CMakeLists.txt" "$SRC_DIR/cmake" \
        "$SRC_DIR/tools" "$SRC_DIR/common" "$SRC_DIR/ggml/src/ggml-cuda" 2>/dev/null
}

# Executable targets this tree defines.
mapfile -t TREE_TARGETS < <(
    find "$SRC_DIR/tools" "$SRC_DIR/examples" -name CMakeLists.txt -print0 2>/dev/null \
        | xargs -0 grep -hoE '(set\(TARGET|add_executable\()[[:space:]]*llama-[A-Za-z0-9_-]+' \
        | grep -oE 'llama-[A-Za-z0-9_-]+' | sort -u)
tree_has() { local t; for t in "${TREE_TARGETS[@]}"; do [[ "$t" == "$1" ]] && return 0; done; return 1; }

TARGETS=()
if [[ -n "$TARGETS_IN" ]]; then
    for t in $TARGETS_IN; do
        tree_has "$t" || die "target $t does not exist in this llama.cpp tree"
        TARGETS+=("$t")
    done
else
    for t in llama-bench llama-perplexity llama-quantize; do
        tree_has "$t" || die "required target $t not found in $SRC_DIR"
        TARGETS+=("$t")
    done
    for t in llama-cli llama-completion llama-simple; do
        if tree_has "$t"; then TARGETS+=("$t"); else log "note: $t not in this tree, skipping"; fi
    done
fi

CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF "-DGGML_NATIVE=$NATIVE")
add_opt() { if cmake_knows "$1"; then CMAKE_ARGS+=("-D$1=$2"); fi; }
add_opt LLAMA_BUILD_TESTS    OFF
add_opt LLAMA_BUILD_TOOLS    ON
add_opt LLAMA_BUILD_EXAMPLES ON
add_opt LLAMA_BUILD_SERVER   ON      # new llama-cli is built on the server code
add_opt LLAMA_BUILD_APP      OFF
add_opt LLAMA_CURL           OFF     # only the npm registry is reachable
add_opt LLAMA_OPENSSL        OFF
add_opt LLAMA_LLGUIDANCE     OFF
add_opt LLAMA_BUILD_UI       OFF     # no npm build of the web UI
add_opt LLAMA_USE_PREBUILT_UI OFF    # no Hugging Face download of the web UI
add_opt GGML_OPENMP_FETCH    OFF
if [[ "$VARIANT" == cuda ]]; then
    [[ -x "$CUDACXX_BIN" ]] || die "nvcc not found at $CUDACXX_BIN (set CUDACXX)"
    CMAKE_ARGS+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_COMPILER=$CUDACXX_BIN"
                 "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS")
    add_opt GGML_CUDA_NCCL      OFF
    add_opt GGML_CUDA_CUB_3DOT2 OFF  # would git-clone CCCL
else
    CMAKE_ARGS+=(-DGGML_CUDA=OFF)
fi
if [[ -n "${MOE_PEER_CMAKE_ARGS:-}" ]]; then
    # shellcheck disable=SC2206  # word splitting intended
    CMAKE_ARGS+=(${MOE_PEER_CMAKE_ARGS})
fi

if [[ $CLEAN -eq 1 && -d "$BUILD_DIR" ]]; then
    log "--clean: removing $BUILD_DIR"
    rm -rf "$BUILD_DIR"
fi
rm -f "$STAMP"

GEN_ARGS=()
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]] && command -v ninja >/dev/null; then
    GEN_ARGS=(-G Ninja)    # an existing build folder keeps its generator
fi

log "configuring $BUILD_DIR"
log "  cmake ${CMAKE_ARGS[*]}"
if ! cmake -S "$SRC_DIR" -B "$BUILD_DIR" "${GEN_ARGS[@]}" "${CMAKE_ARGS[@]}" >&2; then
    die "cmake configure failed (try again with --clean)"
fi

# ---- 6. build -------------------------------------------------------------------
log "building ${TARGETS[*]} with -j$JOBS (this can take a while) ..."
BUILD_START=$(date +%s)
if ! cmake --build "$BUILD_DIR" --config Release -j "$JOBS" --target "${TARGETS[@]}" >&2; then
    die "build failed; rerun to resume (or --clean to start over)"
fi

for t in "${TARGETS[@]}"; do
    [[ -x "$BIN_DIR/$t" ]] || die "build finished but $BIN_DIR/$t is missing"
done

{
    echo "fingerprint=$FINGERPRINT"
    echo "targets=${TARGETS[*]}"
    echo "commit=$SRC_COMMIT"
    echo "cmake_args=${CMAKE_ARGS[*]}"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(( $(date +%s) - BUILD_START ))"
} > "$STAMP"

log "done in $(( $(date +%s) - START_TS ))s: ${TARGETS[*]} in $BIN_DIR"
printf '%s\n' "$BIN_DIR"
