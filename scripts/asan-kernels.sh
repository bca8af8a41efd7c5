#!/usr/bin/env bash
# Runs the kernel unit tests (every tier against the oracle, exact-length unaligned strided
# operands, column parts, activation tails) under AddressSanitizer, so that any read or write
# past an operand aborts the test. Needs a nightly feature: on a stable toolchain,
# RUSTC_BOOTSTRAP=1 enables it, as for the fuzz targets.
#
#   scripts/asan-kernels.sh            # kernel tests
#   scripts/asan-kernels.sh plan::     # any other filter of the lib's unit tests
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
RUSTC_BOOTSTRAP=1 \
RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions" \
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
CARGO_TARGET_DIR=target/asan \
CARGO_PROFILE_TEST_OPT_LEVEL=1 \
    cargo test --lib --target "$target" -- "${1:-kernels::}"
