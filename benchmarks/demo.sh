#!/usr/bin/env bash
# The README demo (`emoselect run` on the shared OASIS pictures and VGG-16 weights, default options)
# timed for an older commit and for the working tree in one sitting, each with an empty response
# cache of its own (so neither is served from the other's work).
#
#     benchmarks/demo.sh OLD_REV [OUT]              # one after the other, each on every core
#     PARALLEL=1 benchmarks/demo.sh OLD_REV [OUT]   # side by side, each pinned to one core (2-core machine)
#
# Needs the repository's .venv (the old commit runs from a `git worktree` of it, with the same
# packages) and ../shared (or $EMOSELECT_SHARED). Writes OUT/{old,new}/run (the run folders, kept
# for inspection and as calibration sources) and prints the two wall-clock times and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD_REV=${1:?usage: benchmarks/demo.sh OLD_REV [OUT]}
OUT=${2:-/tmp/emoselect-demo}
SHARED=$(realpath "${EMOSELECT_SHARED:-../shared}")
rm -rf "$OUT" && mkdir -p "$OUT"
git worktree add --detach "$OUT/old-code" "$OLD_REV" >/dev/null
trap 'git worktree remove --force "$OUT/old-code"' EXIT
mkdir -p "$OUT/new-code" && cp -r src "$OUT/new-code/"  # a copy: edits to the tree during the runs change nothing
demo() {  # demo NAME SRC [CORE]: times `emoselect run` with the package at SRC (pinned to CORE)
    mkdir -p "$OUT/$1"
    local start end pin=()
    if [ -n "${3:-}" ]; then pin=(taskset -c "$3" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1); fi
    start=$(date +%s.%N)
    "${pin[@]}" env PYTHONPATH="$2" EMOSELECT_CACHE="$OUT/$1/cache" .venv/bin/python -m emoselect.cli -q run \
        --dataset "oasis=$SHARED/data/oasis" --weights "$SHARED/weights/vgg16_imagenet_features.pth" \
        --out "$OUT/$1/run" >"$OUT/$1/log.txt" 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc >"$OUT/$1/seconds"
    echo "$1: $(cat "$OUT/$1/seconds") s"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u)"
if [ -n "${PARALLEL:-}" ]; then
    demo old "$OUT/old-code/src" 0 &
    demo new "$OUT/new-code/src" 1 &
    wait
else
    demo old "$OUT/old-code/src"
    demo new "$OUT/new-code/src"
fi
echo "new / old: $(echo "$(cat "$OUT/new/seconds") / $(cat "$OUT/old/seconds")" | bc -l)"
