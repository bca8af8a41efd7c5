#!/usr/bin/env bash
# Fuzz smoke (run by .ci/run): every target of fuzz/Cargo.toml runs for a few seconds from a
# temporary copy of its committed corpus (fuzz/corpus/<target>, or none), so nothing is written
# into the repo. A crash, a timeout or an out-of-memory fails the script, and libFuzzer's
# reproducer is printed (base64) with the log.
#
# Needs only the stable toolchain and a C++ compiler (libfuzzer-sys builds libFuzzer): the
# targets are built with the coverage instrumentation `cargo fuzz build -s none` passes
# (sancov with inline 8-bit counters, PC table, compare tracing and stack depth, branch
# folding off, `--cfg fuzzing`, debug assertions), for the host triple so that build
# scripts and proc macros stay uninstrumented, into target/fuzz-smoke. Left out of
# cargo-fuzz's flags, for build time: -Ccodegen-units=1, -Clink-dead-code and debug info.
# No sanitizer either (ASan needs nightly or RUSTC_BOOTSTRAP): see README "Fuzzing".
#
# FUZZ_SMOKE_SECS (default 5) is each target's -max_total_time; two run at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${FUZZ_SMOKE_SECS:-5}
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=$root/target/fuzz-smoke

flags=(
    --cfg fuzzing
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cdebug-assertions
)
RUSTFLAGS="${flags[*]}" cargo build --release --bins \
    --manifest-path fuzz/Cargo.toml --target "$host" --target-dir "$target_dir"

mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx 'sinter-fuzz')
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz-smoke: no targets in fuzz/Cargo.toml" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One target: its corpus copied to $work, libFuzzer's log in $work/<target>.log.
run_one() {
    local t=$1
    local corpus=$work/corpus/$t
    mkdir -p "$corpus" "$work/artifacts"
    if [ -d "fuzz/corpus/$t" ]; then
        cp -R "fuzz/corpus/$t/." "$corpus/"
    fi
    "$target_dir/$host/release/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 "$corpus" \
        >"$work/$t.log" 2>&1
}

start=$SECONDS
failed=()
pids=()
names=()
wait_first() {
    if ! wait "${pids[0]}"; then
        failed+=("${names[0]}")
    fi
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
}
for t in "${targets[@]}"; do
    [ "${#pids[@]}" -lt 2 ] || wait_first
    run_one "$t" &
    pids+=($!)
    names+=("$t")
done
while [ "${#pids[@]}" -gt 0 ]; do wait_first; done

for t in "${targets[@]}"; do
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -n 1)
    printf 'fuzz-smoke: %-14s %10s runs in %ss, %s\n' "$t" "${runs:-?}" "$secs" "${cov:-cov: ?}"
done
echo "fuzz-smoke: ${#targets[@]} targets ran in $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    for t in "${failed[@]}"; do
        echo "===== fuzz-smoke: $t FAILED; its log:" >&2
        cat "$work/$t.log" >&2
        for a in "$work/artifacts/$t-"*; do
            [ -e "$a" ] || continue
            echo "===== reproducer $(basename "$a") (base64):" >&2
            base64 "$a" >&2
        done
    done
    exit 1
fi
