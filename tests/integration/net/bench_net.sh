#!/bin/bash
# Network-layer benchmarks (docs/benchmarks.md, "Network layer"): 1,000 idle TLS connections
# and the server's RSS, and h2load req/s for a 1 MB body over TLS on loopback.
# Usage: bench_net.sh <net_testserver from a Release build> [connections]
set -eu
BIN=$1
N=${2:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/lpod-net-bench-XXXXXX)
trap 'kill $SP 2>/dev/null; rm -rf "$WORK"' EXIT

"$BIN" --addr 127.0.0.1:0 --cert-dir "$WORK/certs" --blob-mb 2 >"$WORK/out" 2>"$WORK/err" &
SP=$!
for _ in $(seq 1 100); do grep -q '^PORT' "$WORK/out" && break; sleep 0.1; done
PORT=$(awk '/^PORT/{print $2}' "$WORK/out")

echo "== $N idle TLS connections (ALPN h2, one request each, then held open)"
node "$HERE/idle_conns.js" "$PORT" "$SP" "$N"

echo "== h2load, 1 MB response over TLS (16 MiB client windows, as Go clients use)"
for cm in "1 1" "4 4" "16 4"; do
  set -- $cm
  echo "-- h2load -n 2000 -c $1 -m $2 -w 24 -W 30 https://127.0.0.1:PORT/size/1048576"
  h2load -n 2000 -c "$1" -m "$2" -w 24 -W 30 "https://127.0.0.1:$PORT/size/1048576" |
    grep -E 'finished in|requests:'
done
echo "server peak RSS: $(awk '/VmHWM/{print $2, $3}' /proc/$SP/status)"
