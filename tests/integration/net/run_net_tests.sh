#!/bin/bash
# Real-socket tests of the net server: curl (HTTP/1.1, HTTP/2 over TLS, h2c), nghttp, h2load
# and Node's own clients (peer.js) against net_testserver on random loopback ports.
# Usage: run_net_tests.sh <net_testserver binary> <source dir of this test>
set -u
BIN=$1
SRC=$2
WORK=$(mktemp -d /tmp/lpod-net-it-XXXXXX)
PIDS=()
FAILS=0

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name args...
  local name=$1
  shift
  "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  eval "${name}_PID=$!"
  for _ in $(seq 1 300); do
    if grep -qs '^PORT ' "$WORK/$name.out"; then
      eval "${name}_PORT=$(awk '/^PORT/{print $2}' "$WORK/$name.out")"
      return 0
    fi
    sleep 0.1
  done
  echo "FAIL $name did not start"; cat "$WORK/$name.err"; exit 1
}

ok() { echo "ok   $1"; }
fail() { echo "FAIL $1"; FAILS=$((FAILS + 1)); }
expect() { # description, command...
  local d=$1
  shift
  if "$@" >"$WORK/last.log" 2>&1; then ok "$d"; else fail "$d"; tail -20 "$WORK/last.log"; fi
}

T="--handshake-ms 1000 --header-timeout-ms 1000 --idle-ms 2000"
start tls --addr 127.0.0.1:0 --cert-dir "$WORK/certs" --v 5
start plain --addr http://127.0.0.1:0 --v 5
start capped --addr http://127.0.0.1:0 --max-conns 4
start stls --addr 127.0.0.1:0 --cert-dir "$WORK/certs" $T
start splain --addr http://127.0.0.1:0 $T
TU="https://127.0.0.1:$tls_PORT"
PU="http://127.0.0.1:$plain_PORT"
head -c 1500000 /dev/urandom >"$WORK/body"

check_echo() { # curl options...
  curl -sS --max-time 20 "$@" --data-binary @"$WORK/body" -o "$WORK/echo.out" \
    -w '%{http_code} %{http_version}\n' >"$WORK/echo.meta" && cmp -s "$WORK/body" "$WORK/echo.out"
}
expect "curl HTTP/1.1 over TLS: 1.5 MB echo" check_echo -k --http1.1 "$TU/echo"
grep -q '^200 1.1' "$WORK/echo.meta" || fail "HTTP/1.1 over TLS was not HTTP/1.1"
expect "curl HTTP/2 over TLS (ALPN h2): 1.5 MB echo" check_echo -k --http2 "$TU/echo"
grep -q '^200 2' "$WORK/echo.meta" || fail "ALPN did not pick h2"
expect "curl h2c prior knowledge: 1.5 MB echo" check_echo --http2-prior-knowledge "$PU/echo"
grep -q '^200 2' "$WORK/echo.meta" || fail "h2c was not HTTP/2"
expect "curl HTTP/1.1 plaintext: 1.5 MB echo" check_echo --http1.1 "$PU/echo"
expect "curl chunked upload" check_echo --http1.1 -H 'Transfer-Encoding: chunked' "$PU/echo"
expect "curl --http2 on plaintext (Upgrade: h2c ignored, answered as HTTP/1.1)" \
  check_echo --http2 "$PU/echo"

keepalive() {
  curl -sS -v -k --http1.1 "$TU/size/10" -o /dev/null "$TU/size/20" -o /dev/null 2>&1 |
    grep -q 'Re-using existing connection'
}
expect "curl HTTP/1.1 keep-alive reuses the TLS connection" keepalive
expect "curl 404 for unknown path" bash -c "[ \"\$(curl -sk -o /dev/null -w '%{http_code}' $TU/nope)\" = 404 ]"
expect "curl 413 for a body over the route cap" \
  bash -c "[ \"\$(curl -sk --http2 -o /dev/null -w '%{http_code}' --data-binary @$WORK/body $TU/small)\" = 413 ]"

nghttp_multi() {
  nghttp -n -s "$TU/size/1000000" "$TU/size/1000000" "$TU/chunks" "$TU/size/5" >"$WORK/ng.out" 2>&1 &&
    [ "$(grep -c ' 200 ' "$WORK/ng.out" || true)" -ge 0 ] && ! grep -q 'ERROR' "$WORK/ng.out"
}
expect "nghttp: concurrent streams over TLS" nghttp_multi
expect "nghttp: upload over h2c" nghttp -n -d "$WORK/body" "$PU/echo"

h2load_run() {
  h2load -n 400 -c 4 -m 8 "$TU/size/100000" >"$WORK/h2load.out" 2>&1 &&
    grep -q 'requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored' \
      "$WORK/h2load.out" &&
    grep -q 'status codes: 400 2xx' "$WORK/h2load.out"
}
expect "h2load: 400 requests over TLS, all 2xx" h2load_run
h2load_h2c() {
  h2load -n 200 -c 2 -m 4 "$PU/size/1000" >"$WORK/h2load2.out" 2>&1 &&
    grep -q '200 succeeded, 0 failed' "$WORK/h2load2.out"
}
expect "h2load: h2c prior knowledge" h2load_h2c

if node "$SRC/peer.js" "$tls_PORT" "$plain_PORT" "$capped_PORT" "$stls_PORT" "$splain_PORT"; then ok "node peer checks"; else
  fail "node peer checks"
  grep -v "Listening" "$WORK/tls.err" | tail -20
fi

stats=$(curl -s "$PU/stats")
echo "plain server stats: $stats"

# graceful stop: every server exits 0, which under the sanitizers also means no leaks
for name in tls plain capped stls splain; do
  pid_var="${name}_PID"
  kill -TERM "${!pid_var}"
  if wait "${!pid_var}"; then ok "$name server stopped cleanly"; else
    fail "$name server exit status $?"
    tail -40 "$WORK/$name.err"
  fi
done
PIDS=()

[ "$FAILS" -eq 0 ] && echo "all net integration checks passed"
exit $((FAILS > 0))
