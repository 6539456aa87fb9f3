#!/usr/bin/env bash
# Fails when the C example README.md prints differs from the file it names, so the
# README's example is compiled (and run) by CI exactly as printed.
#
#   tests/examples_readme.sh README.md examples/hello.c
#
# The block is the first ```c fenced block after the first line that links the file
# (`[...](examples/hello.c)`, the link above the code in README.md), up to its closing
# ``` line.
set -euo pipefail

(($# == 2)) || { echo "usage: $0 README.md examples/FILE.c" >&2; exit 2; }
readme=$1 source=$2
link="](examples/${source##*/})"

block=$(mktemp "${TMPDIR:-/tmp}/nkc-readme.XXXXXX")
trap 'rm -f "$block"' EXIT

# awk: 0 = looking for the link, 1 = for the opening fence, 2 = inside the block.
if ! awk -v link="$link" '
  state == 0 && index($0, link) { state = 1; next }
  state == 1 && /^```c[[:space:]]*$/ { state = 2; next }
  state == 2 && /^```[[:space:]]*$/ { closed = 1; exit }
  state == 2 { print }
  END { if (!closed) exit 1 }
' "$readme" >"$block"; then
  echo "examples_readme: no \`\`\`c block after a line linking $link in $readme" >&2
  exit 1
fi

if ! diff -u --label "$readme (the block after $link)" --label "$source" "$block" "$source"; then
  echo "examples_readme: $readme and $source differ (above); make them the same" >&2
  exit 1
fi
echo "examples_readme: $readme prints $source exactly ($(wc -l <"$source") lines)"
