#!/usr/bin/env bash
# Two copies of examples/product_service against one Redis: copy A watches product 7,
# copy B updates its price (SQLite, then cache_del). A must print the new price within
# NKC_TWO_PROCESS_BOUND_MS (default 2000) of B's return, and must have received the
# invalidation from Redis (its tracking.invalidations counter), not merely seen its L1
# copy expire. Runs under tests/redis.sh, which exports NKC_REDIS_URL:
#
#   tests/redis.sh run -- tests/examples_two_process.sh BUILD/examples/product_service
#
# Exits 77 (CTest's "skipped") when the program was not built.
set -euo pipefail

(($# == 1)) || { echo "usage: $0 PATH/TO/product_service" >&2; exit 2; }
program=$1
bound_ms=${NKC_TWO_PROCESS_BOUND_MS:-2000}
product=7
if [[ ! -x $program ]]; then
  echo "examples_two_process: skipped: $program was not built"
  exit 77
fi
[[ -n ${NKC_REDIS_URL:-} ]] || { echo "examples_two_process: NKC_REDIS_URL unset (run under tests/redis.sh)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/nkc-two-process.XXXXXX")
watcher=
cleanup() {
  if [[ -n $watcher ]] && kill -0 "$watcher" 2>/dev/null; then
    kill -TERM "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "examples_two_process: FAIL: $*" >&2
  for f in "$work"/*.out "$work"/*.err; do
    [[ -s $f ]] && { echo "---- ${f##*/}"; cat "$f"; } >&2
  done
  exit 1
}

ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_for FILE PATTERN MS: succeeds once FILE has a line matching PATTERN (grep -E),
# fails after MS milliseconds or when the watcher has exited.
wait_for() {
  local deadline=$(($(ms) + $3))
  while (($(ms) < deadline)); do
    grep -qE -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$watcher" 2>/dev/null || { grep -qE -- "$2" "$1" 2>/dev/null; return; }
    sleep 0.02
  done
  return 1
}

run=("$program" --db "$work/products.db" --seed-products 20 --redis "$NKC_REDIS_URL"
  --key-prefix "two-process:")

# The database, created and seeded by a first run, and the price B will change.
"${run[@]}" get "$product" >"$work/setup.out" 2>"$work/setup.err" || fail "get $product failed"
old=$(grep -oE '"price_cents":[0-9]+' "$work/setup.out" | head -n 1 | cut -d: -f2)
[[ -n $old ]] || fail "no price_cents in the output of get $product"
new=$((old + 111))
new_price=$(printf '%d.%02d' $((new / 100)) $((new % 100)))

# A: watches until it has seen one change (or 30 s pass: then it fails).
"${run[@]}" watch "$product" --changes 1 --duration-ms 30000 >"$work/a.out" 2>"$work/a.err" &
watcher=$!
wait_for "$work/a.out" "product $product: .*\"price_cents\":${old}[,}]" 10000 ||
  fail "A did not print product $product's price $old"

# B: updates the price, as another copy of the service would.
"${run[@]}" update "$product" "$new_price" >"$work/b.out" 2>"$work/b.err" ||
  fail "B: update $product $new_price failed"
updated=$(ms)
wait_for "$work/a.out" "product $product: .*\"price_cents\":${new}[,}]" "$bound_ms" ||
  fail "A did not print the new price $new within $bound_ms ms of B's update"
elapsed=$(($(ms) - updated))

status=0
wait "$watcher" || status=$?
watcher=
((status == 0)) || fail "A exited with status $status"
grep -qE '^stats\.tracking: .*"invalidations":[1-9]' "$work/a.out" ||
  fail "A's stats show no invalidation received from Redis"
echo "examples_two_process: A saw B's update of product $product (price_cents $old -> $new) within ${elapsed} ms"
