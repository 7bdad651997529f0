#!/usr/bin/env bash
# The run docs/PERFORMANCE.md's figures come from (issue 15 item 9): the bench at its --quick
# sizes, REPS repetitions (at least 10) after WARMUP warm-up runs, in Node and in headless
# Chromium in one command; the JSON, the HTML report and the text tables go to OUT, and
# PERFORMANCE.md's generated tables are filled from that JSON (npm run bench -- --doc), so the
# document shows what this code measured. With BEFORE=<rev>, the same command first runs on
# that revision (a temporary git worktree sharing node_modules) and its goal medians become
# the goal table's "before" columns: a change's before and after, measured side by side.
#
#   scripts/perf-run.sh                      # REPS=10 WARMUP=1 OUT=docs/perf
#   BEFORE=HEAD~3 scripts/perf-run.sh        # with the goals of HEAD~3 beside
#   MIB=64 REPS=20 scripts/perf-run.sh       # larger sizes (the document then says --mib 64)
#   DOC=/tmp/perf.md scripts/perf-run.sh     # fill a copy instead of docs/PERFORMANCE.md
#
# Exit status: the bench's (1 when a measurement failed; the document is filled all the same,
# and says which goals failed).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-10}
WARMUP=${WARMUP:-1}
OUT=${OUT:-docs/perf}
DOC=${DOC:-docs/PERFORMANCE.md}
SIZE=(--quick)
[ -n "${MIB:-}" ] && SIZE+=(--mib "$MIB")

if [ "$REPS" -lt 10 ]; then
  echo "perf-run: REPS=$REPS is a check run; PERFORMANCE.md will say '(final run pending)' (the final run takes at least 10)" >&2
fi
# Dawn in Node needs a Vulkan driver: a machine without one (as this project's CI machine) uses
# SwiftShader's, the CPU implementation Chromium ships; a real GPU's driver is used when present.
if [ -z "${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  if [ -f /usr/lib/chromium/vk_swiftshader_icd.json ]; then
    export VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
    echo "perf-run: no Vulkan driver installed; Node runs on SwiftShader ($VK_ICD_FILENAMES)" >&2
  fi
fi
if ! git diff --quiet -- src shaders; then
  echo "perf-run: src/ or shaders/ has uncommitted changes: the JSON records that, and PERFORMANCE.md will say '(final run pending)'" >&2
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ARGS=("${SIZE[@]}" --reps "$REPS" --warmup "$WARMUP" --browser)

DOC_BEFORE=()
if [ -n "${BEFORE:-}" ]; then
  rev=$(git rev-parse --verify "$BEFORE^{commit}")
  tmp=$(mktemp -d)
  trap 'git worktree remove --force "$tmp/before" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
  git worktree add --detach "$tmp/before" "$rev" >/dev/null
  ln -s "$PWD/node_modules" "$tmp/before/node_modules"
  echo "perf-run: before: ${rev:0:10} (${BEFORE})" >&2
  # an older bench may lack options of this one; it gets the same sizes, repetitions and runtimes
  (cd "$tmp/before" && npx tsx src/bench/cli.ts "${ARGS[@]}" --json "$OUT/before.json") | tee "$OUT/before.txt" || true
  [ -s "$OUT/before.json" ] && DOC_BEFORE=(--doc-before "$OUT/before.json")
fi

status=0
npm run --silent bench -- "${ARGS[@]}" --json "$OUT/bench.json" --html "$OUT/bench.html" | tee "$OUT/bench.txt" || status=$?
if [ ! -s "$OUT/bench.json" ]; then
  echo "perf-run: the bench wrote no JSON (exit status $status); PERFORMANCE.md left as it was" >&2
  exit "${status:-1}"
fi
npm run --silent bench -- --doc "$OUT/bench.json" "${DOC_BEFORE[@]}" --doc-out "$DOC"
echo "perf-run: $OUT/bench.json, $OUT/bench.html, $OUT/bench.txt; $DOC filled from the JSON (review the prose: its '(final run pending)' notes and the figures it quotes)" >&2
exit "$status"
