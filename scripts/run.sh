#!/usr/bin/env bash
# Installs what is missing, builds, and starts an offchain orchestrator that transcodes on the
# CPU, serving gateways on 127.0.0.1:8935 (admin API on 127.0.0.1:7935). Extra arguments are
# passed to lpod, e.g. scripts/run.sh -v 5 -maxSessions 4
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
exec build-release/lpod -orchestrator -transcoder -network offchain \
  -serviceAddr 127.0.0.1:8935 -httpAddr 127.0.0.1:8935 -cliAddr 127.0.0.1:7935 "$@"
