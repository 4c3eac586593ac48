#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for N seconds each (default 60), one after another at the
# lowest priority, and writes fuzz/results.md: executions, coverage (libFuzzer's cov: edges and
# ft: features) and crashes per target. Targets may be named to run only those; rows of targets
# not run this time are kept from their last run. Exits 1 when a target crashed (the input is in
# fuzz/artifacts/<target>/: fix the crate and add a regression test to the normal suite).
#
#   bash scripts/fuzz.sh [seconds-per-target] [target ...]
#   FUZZ_JOBS=2 bash scripts/fuzz.sh 600     # two targets at a time
#
# Nightly toolchain, ASan, its own target dir fuzz/target (see RELIABILITY.md).
set -uo pipefail
secs="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
export CARGO_TARGET_DIR="$root/fuzz/target"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
bash seed.sh >/dev/null
cargo +nightly fuzz build -O || exit 2

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p logs
# One target: its run, then its row of the table (logs/<target>.row).
fuzz_one() {
    local t="$1" started rc execs last cov ft corpus crashes
    mkdir -p "corpus/$t" "artifacts/$t"
    started="$(date -u +%FT%TZ)"
    echo "fuzzing $t for ${secs}s"
    nice -n 19 cargo +nightly fuzz run -O "$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$t.log" 2>&1
    rc=$?
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$')"
    last="$(grep -E '#[0-9]+.*cov: ' "logs/$t.log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*')"
    ft="$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*')"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    crashes="$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)"
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="exit $rc"
    fi
    echo "| $t | ${secs} | ${execs:-?} | ${cov:-?} | ${ft:-?} | $corpus | $crashes | $started |" >"logs/$t.row"
    cat "logs/$t.row"
}
# FUZZ_JOBS targets at a time (default 1): each is one process, so two halve the wall time on
# two cores; each row says how many executions its target got.
jobs_max="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
    rm -f "logs/$t.row"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
    fuzz_one "$t" &
done
wait
crashed=0
for t in "${targets[@]}"; do
    if ! grep -qE '^\| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| 0 \|' "logs/$t.row" 2>/dev/null; then
        crashed=1
    fi
done

previous="$(cat results.md 2>/dev/null || true)"
{
    echo "| Target | Seconds | Executions | cov (edges) | ft (features) | Corpus | Crashes | Started (UTC) |"
    echo "|---|---:|---:|---:|---:|---:|---|---|"
    for t in $(cargo +nightly fuzz list); do
        if [ -f "logs/$t.row" ]; then
            cat "logs/$t.row"
        elif grep -q "^| $t | [0-9]" <<<"$previous"; then
            grep "^| $t | [0-9]" <<<"$previous"
        else
            echo "| $t | not run | | | | | | |"
        fi
    done
    echo
    echo "Machine: $(nproc) cores, $(uname -m), $(rustc +nightly --version). Seeds: fuzz/seed.sh (events/, shared vectors)."
} >results.md
echo "wrote fuzz/results.md"
exit "$crashed"
