#!/usr/bin/env bash
# How much of the machine a mix of live streams takes, and how long their segments take in it:
# one node with no admission control (-costAdmission=false), one real-time stream per letter of
# each MIX (A: 1080p -> 720p, 480p, 360p, 240p; B: 720p -> 480p, 360p, 240p; C: 360p -> 240p, the
# ladders and sources of tests/interop/orch/bench_load.js), each stream sending SEGS 2 s segments
# through tests/interop/orch/bench_segment.js. For every mix it prints the share of the machine
# that was busy (/proc/stat), the node's own share (/proc/PID/stat) and the rest (the streams'
# clients and anything else), and each stream's round trip.
#
# usage: scripts/bench-mix.sh [LPOD_BINARY] [MIX ...]     (default mixes: A C CA CAB B BBB BBBB)
# env:   SEGS (10), PRESET (ultrafast: the node's -cpuPreset), KEEP=1 keeps the work folder
set -euo pipefail

LPOD=${1:-build-release/lpod}
shift || true
MIXES=("$@")
[ ${#MIXES[@]} -gt 0 ] || MIXES=(A C CA CAB B BBB BBBB)
SEGS=${SEGS:-10}
PRESET=${PRESET:-ultrafast}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH="$ROOT/tests/interop/orch/bench_segment.js"
[ -x "$LPOD" ] || { echo "no lpod binary at $LPOD" >&2; exit 2; }
command -v ffmpeg >/dev/null || { echo "ffmpeg not found" >&2; exit 2; }
[ -d "$ROOT/tests/interop/orch/node_modules" ] || { echo "run npm ci in tests/interop/orch first" >&2; exit 2; }
for m in "${MIXES[@]}"; do
  [[ "$m" =~ ^[ABC]+$ ]] || { echo "a mix is letters A, B and C, not '$m'" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/lpod-mix.XXXXXX)
NODE_PID=
cleanup() {
  if [ -n "$NODE_PID" ]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

declare -A SIZE=([A]=1920x1080 [B]=1280x720 [C]=640x360)
declare -A LADDER=([A]="P720p30fps16x9,P480p30fps16x9,P360p30fps16x9,P240p30fps16x9"
  [B]="P480p30fps16x9,P360p30fps16x9,P240p30fps16x9" [C]="P240p30fps16x9")
for k in A B C; do
  ffmpeg -nostdin -v error -f lavfi -i "testsrc2=size=${SIZE[$k]}:rate=30" \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -vf noise=alls=12:allf=t \
    -c:v libx264 -preset veryfast -g 60 -keyint_min 60 -pix_fmt yuv420p -c:a aac \
    -f mpegts "$WORK/$k.ts"
done

PORT=$((20000 + RANDOM % 20000))
"$LPOD" -orchestrator -transcoder -localWorkers 0 -network offchain -datadir "$WORK/node" \
  -serviceAddr "127.0.0.1:$PORT" -cliAddr 127.0.0.1:0 -cpuPreset "$PRESET" \
  -costAdmission=false -testTranscoder=false -maxSessions 100 -v 3 > "$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do
  grep -q "Node ready" "$WORK/node.log" 2>/dev/null && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/node.log" >&2; exit 1; }
  sleep 0.2
done
grep -q "Node ready" "$WORK/node.log" || { echo "the node did not start" >&2; exit 1; }

TICK=$(getconf CLK_TCK)
CPUS=$(nproc)
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
node_ticks() { awk '{print $14+$15}' "/proc/$NODE_PID/stat"; }

echo "lpod mix benchmark: preset $PRESET, $SEGS live segments of 2 s per stream, $CPUS CPUs" \
  "($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo))"
for mix in "${MIXES[@]}"; do
  b0=$(busy_ticks)
  n0=$(node_ticks)
  t0=$(date +%s.%N)
  pids=()
  for ((i = 0; i < ${#mix}; i++)); do
    k=${mix:i:1}
    node "$BENCH" --port "$PORT" --cert "$WORK/node/cert.pem" --log "$WORK/node.log" \
      --in "$WORK/$k.ts" --streams 1 --segments "$SEGS" --profiles "${LADDER[$k]}" \
      --realtime 1 > "$WORK/$mix.$i.txt" 2>&1 &
    pids+=($!)
    sleep 0.5 # streams start apart, as independent ones do
  done
  for p in "${pids[@]}"; do wait "$p" || { cat "$WORK/$mix".*.txt >&2; exit 1; }; done
  t1=$(date +%s.%N)
  b1=$(busy_ticks)
  n1=$(node_ticks)
  awk -v b="$((b1 - b0))" -v n="$((n1 - n0))" -v t0="$t0" -v t1="$t1" -v tick="$TICK" \
    -v cpus="$CPUS" -v mix="$mix" 'BEGIN {
      w = (t1 - t0) * tick * cpus
      printf "%-6s machine busy %.2f, node %.2f, rest %.2f (shares of %d CPUs)\n", mix, b / w,
        n / w, (b - n) / w, cpus }'
  for ((i = 0; i < ${#mix}; i++)); do
    printf '       %s: %s\n' "${mix:i:1}" \
      "$(grep -m1 '^client round trip' "$WORK/$mix.$i.txt" | sed 's/client round trip ms: *//')"
  done
done
