#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a while each and prints a
# table: executions per second, coverage, corpus size, crashes.
#
#   fuzz/run.sh [-t SECONDS] [-j PARALLEL] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (installed when missing).
# New inputs go to fuzz/work/TARGET (not committed); the committed seeds in
# fuzz/corpus/TARGET are read. A crash leaves its input in
# fuzz/artifacts/TARGET: fix the bug, then copy the file to
# fuzz/regressions/TARGET so that the suite replays it on stable.
set -euo pipefail
cd "$(dirname "$0")"

seconds=60
parallel=1
while getopts "t:j:" opt; do
    case "$opt" in
        t) seconds="$OPTARG" ;;
        j) parallel="$OPTARG" ;;
        *) echo "usage: $0 [-t SECONDS] [-j PARALLEL] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# Release build with debug assertions: overflow checks stay on.
flags=(-O -a)
cargo +nightly fuzz build "${flags[@]}" >/dev/null

logs="work/logs"
mkdir -p "$logs"
run_one() {
    local target="$1"
    mkdir -p "work/$target" "artifacts/$target"
    local before
    before=$(find "artifacts/$target" -type f | wc -l)
    local status=0
    cargo +nightly fuzz run "${flags[@]}" "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$logs/$target.log" 2>&1 || status=$?
    local after
    after=$(find "artifacts/$target" -type f | wc -l)
    echo "$status $((after - before))" >"$logs/$target.status"
}

running=0
for target in "${targets[@]}"; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

printf '| %-16s | %10s | %10s | %8s | %8s | %7s |\n' target execs "execs/s" coverage corpus crashes
printf '|%s|%s|%s|%s|%s|%s|\n' ------------------ ------------ ------------ ---------- ---------- ---------
failed=0
for target in "${targets[@]}"; do
    log="$logs/$target.log"
    read -r status crashes <"$logs/$target.status"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    corpus=$(find "work/$target" -type f | wc -l)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="?"
    fi
    [ "$status" -eq 0 ] || failed=1
    printf '| %-16s | %10s | %10s | %8s | %8s | %7s |\n' "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "$crashes"
done
echo "(${seconds} s per target; logs in fuzz/$logs)"
exit "$failed"
