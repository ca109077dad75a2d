#!/usr/bin/env python3
"""King James Bible -> train / held-out text, split by whole books.

Reads the output of `bible -f Gen1:1-Rev22:21` (Debian's bible-kjv: one verse
per line, "Ge1:1 In the beginning ..."), drops the verse labels, writes one
verse per line, and holds out some whole books for evaluation so that the
held-out perplexity measures text the model never saw.
"""
import argparse
import re
import subprocess

# Held-out books (bible-kjv's abbreviations): narrative, wisdom, prophecy, epistles.
HELD_OUT = ["Ruth", "Eccl", "Jonah", "Gal", "Jas"]
LABEL = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def books_of(raw):
    books = []  # [(abbreviation, [verse, ...])] in canonical order
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        m = LABEL.match(line)
        if not m:
            raise SystemExit(f"bible output line {n}: expected 'BookC:V text', found {line[:60]!r}")
        book, text = m.group(1), m.group(4).strip()
        if not books or books[-1][0] != book:
            books.append((book, []))
        books[-1][1].append(text)
    return books


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="output: training text")
    ap.add_argument("--heldout", required=True, help="output: held-out text")
    ap.add_argument("--bible-output", help="saved `bible -f Gen1:1-Rev22:21` output (default: run bible)")
    a = ap.parse_args()
    if a.bible_output:
        with open(a.bible_output, encoding="utf-8") as f:
            raw = f.read()
    else:
        raw = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                             text=True).stdout
    books = books_of(raw)
    names = [b for b, _ in books]
    missing = [b for b in HELD_OUT if b not in names]
    if missing:
        raise SystemExit(f"held-out books {missing} not in the bible output; books found: {names}")
    train, held = [], []
    for book, verses in books:
        (held if book in HELD_OUT else train).append("\n".join(verses) + "\n")
    # Books separated by a blank line.
    for path, parts in ((a.train, train), (a.heldout, held)):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(parts))
    nv = sum(len(v) for _, v in books)
    print(f"{len(books)} books, {nv} verses; held out {HELD_OUT}: "
          f"{sum(len(p) for p in held)} chars; train {sum(len(p) for p in train)} chars")


if __name__ == "__main__":
    main()
