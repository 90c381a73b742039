#!/usr/bin/env bash
# Installs what is missing (apt, and npm packages for the test peers), builds with ASan+UBSan
# and runs every test. Extra arguments go to ctest, e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh test
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LPOD_MEDIA_DIR=${LPOD_MEDIA_DIR:-$(cd .. && pwd)/shared/media}
cd build-test
ctest --output-on-failure --timeout 600 -j"$(nproc)" "$@"
