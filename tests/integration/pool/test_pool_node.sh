#!/bin/sh
# The real node end to end: `lpod -orchestrator` with two `lpod -transcoder` processes, fed by
# `lpod gateway`; every rendition is checked with ffprobe (frame count and size). Then one
# transcoder is killed with -9 and the stream goes on on the other.
# Usage: test_pool_node.sh <lpod>
set -eu
LPOD=$1
DIR=$(mktemp -d /tmp/lpod-pool-node-XXXXXX)
PIDS=""
cleanup() {
  for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -z "${LPOD_KEEP_TMP:-}" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$DIR"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done
  exit 1
}

SECRET=pool-node-secret

for i in 1 2 3; do
  ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=30 -t 2 \
    -c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -f mpegts "$DIR/seg$i.ts"
done

# The orchestrator on a port nobody listens on: bind 0 and read what the kernel picked. Another
# process may take it before the node binds it, so a start that finds it in use picks again.
for attempt in 1 2 3 4 5; do
  PORT=$(python3 -c \
    'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$LPOD" -orchestrator -orchSecret "$SECRET" -serviceAddr "127.0.0.1:$PORT" \
    -httpAddr "127.0.0.1:$PORT" -maxSessions auto -dataDir "$DIR/o" -cliAddr 127.0.0.1:0 \
    >"$DIR/o.log" 2>&1 &
  O=$!
  PIDS="$PIDS $O" # killed on the way out, whatever happens below
  n=0
  until grep -q 'Node ready' "$DIR/o.log" || ! kill -0 "$O" 2>/dev/null; do
    n=$((n + 1))
    [ $n -lt 1200 ] || fail "the orchestrator did not start"
    sleep 0.1
  done
  if kill -0 "$O" 2>/dev/null; then break; fi
  wait "$O" || true
  grep -q 'address already in use' "$DIR/o.log" || fail "the orchestrator stopped at start"
  [ $attempt -lt 5 ] || fail "no free port in 5 tries"
done
"$LPOD" -transcoder -orchAddr "127.0.0.1:$PORT" -orchSecret "$SECRET" -maxSessions 2 \
  -dataDir "$DIR/t1" -cliAddr 127.0.0.1:0 >"$DIR/t1.log" 2>&1 &
T1=$!
"$LPOD" -transcoder -orchAddr "127.0.0.1:$PORT" -orchSecret "$SECRET" -maxSessions 2 \
  -dataDir "$DIR/t2" -cliAddr 127.0.0.1:0 >"$DIR/t2.log" 2>&1 &
T2=$!
PIDS="$PIDS $T1 $T2"

# Both transcoders registered.
n=0
while [ "$(grep -c 'Got a RegisterTranscoder request' "$DIR/o.log" || true)" -lt 2 ]; do
  n=$((n + 1))
  [ $n -lt 200 ] || fail "transcoders did not register"
  sleep 0.1
done

PROFILES=P144p30fps16x9,P240p30fps16x9
check_out() { # dir segments
  for s in $(seq 0 $(($2 - 1))); do
    for p in P144p30fps16x9:256:144 P240p30fps16x9:426:240; do
      name=${p%%:*}
      f="$1/${s}_$name.ts"
      [ -s "$f" ] || fail "missing rendition $f"
      got=$(ffprobe -v error -select_streams v:0 -count_frames \
        -show_entries stream=nb_read_frames,width,height -of csv=p=0 "$f" | head -n 1)
      want="${p#*:}"
      want="$(echo "$want" | tr : ,),60"
      [ "$got" = "$want" ] || fail "$f: got $got, want $want (width,height,frames at 30 fps)"
    done
  done
}

"$LPOD" gateway -orchAddr "127.0.0.1:$PORT" -in "$DIR/seg1.ts,$DIR/seg2.ts,$DIR/seg3.ts" \
  -transcodingOptions "$PROFILES" -out "$DIR/out1" -manifestID first >"$DIR/gw1.log" 2>&1 ||
  fail "gateway failed"
check_out "$DIR/out1" 3

# Kill one transcoder: the next stream still gets
# every segment through the other.
kill -9 "$T1"
"$LPOD" gateway -orchAddr "127.0.0.1:$PORT" -in "$DIR/seg1.ts,$DIR/seg2.ts" \
  -transcodingOptions "$PROFILES" -out "$DIR/out2" -manifestID second >"$DIR/gw2.log" 2>&1 ||
  fail "gateway failed after a transcoder died"
check_out "$DIR/out2" 2
grep -q 'Removing remote transcoder' "$DIR/o.log" || fail "the orchestrator did not notice"
# A transcoder told to use a GPU it does not have stops at start with the reason, before it
# registers (it used to register and transcode on the CPU, ignoring -nvidia).
set +e
"$LPOD" -transcoder -orchAddr "127.0.0.1:$PORT" -orchSecret "$SECRET" -nvidia 7 \
  -dataDir "$DIR/t3" -cliAddr 127.0.0.1:0 >"$DIR/t3.log" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || fail "a transcoder with -nvidia 7 exited $rc, want 1"
grep -q 'Devices: ' "$DIR/t3.log" || fail "no reason given for -nvidia 7"
[ "$(grep -c 'Got a RegisterTranscoder request' "$DIR/o.log")" -eq 2 ] ||
  fail "the transcoder with -nvidia 7 registered"
# Without -orchAddr it stops at once with exit 2, before probing any device.
set +e
"$LPOD" -transcoder -orchSecret "$SECRET" -dataDir "$DIR/t4" -cliAddr 127.0.0.1:0 \
  >"$DIR/t4.log" 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || fail "a transcoder without -orchAddr exited $rc, want 2"
grep -q 'needs -orchAddr' "$DIR/t4.log" || fail "no reason given for the missing -orchAddr"
if grep -q 'Devices: ' "$DIR/t4.log"; then fail "it probed its devices first"; fi
# The transcoders that serve registered the codecs their device table passed.
grep -q 'Devices: .* probed in' "$DIR/t2.log" || fail "t2 did not probe its devices"
# -maxSessions auto: a transcoder registers what the capacity model fits on its devices, not a
# count of CPUs (-testTranscoder=false: the model's built-in costs, no minute of calibration).
"$LPOD" -transcoder -orchAddr "127.0.0.1:$PORT" -orchSecret "$SECRET" -maxSessions auto \
  -testTranscoder=false -dataDir "$DIR/t5" -cliAddr 127.0.0.1:0 >"$DIR/t5.log" 2>&1 &
T5=$!
PIDS="$PIDS $T5"
n=0
until grep -q 'Registering transcoder with orchestrator' "$DIR/t5.log"; do
  n=$((n + 1))
  [ $n -lt 600 ] || fail "the -maxSessions auto transcoder did not register"
  sleep 0.1
done
# the transcoder's own model (its probe child logs one too, before it)
room=$(sed -n 's/.*capacity: room for \([0-9]*\) streams.*/\1/p' "$DIR/t5.log" | tail -n 1)
reg=$(sed -n 's/.*Registering transcoder with orchestrator .*capacity=\([0-9]*\).*/\1/p' \
  "$DIR/t5.log" | head -n 1)
[ -n "$room" ] && [ "$room" -gt 0 ] || fail "no capacity from the model in the t5 log"
[ "$reg" = "$room" ] || fail "t5 registered capacity $reg, the model fits $room"
kill "$T5"
echo "PASS"
