#!/usr/bin/env bash
# recache.sh FILE... - drop each file's pages from the page cache and read it
# back sequentially, so that it sits in the cache as readahead leaves it (large
# folios, mapped with huge page entries) and not as it was written (4 KiB
# pages: a model written by moe-synth or moe-quantize, or just copied, runs
# 2-3x slower through a mapping until its pages are read back). Benchmarks call
# this first so that every engine sees the same page cache.
set -euo pipefail
for f in "$@"; do
  python3 - "$f" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
while os.read(fd, 1 << 24):
    pass
os.close(fd)
PY
done
