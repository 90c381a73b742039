#!/usr/bin/env bash
# Configures and builds lpod.  scripts/build.sh [release|test]
#   release: optimised build in build-release/ (what scripts/run.sh starts)
#   test:    ASan+UBSan build with the tests in build-test/
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case "$kind" in
  release) dir=build-release; opts=(-DCMAKE_BUILD_TYPE=Release -DLPOD_BUILD_TESTS=OFF) ;;
  test) dir=build-test; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLPOD_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|test]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
