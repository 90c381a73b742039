// Opens N idle TLS connections to a server (each with an HTTP/2 session, as a gateway's gRPC
// client would hold), then reports the server's RSS before and after.
// Usage: node idle_conns.js <port> <server pid> [N] [path of the one request; /size/10]
// (against a running lpod node: /stream/none, answered 404)
'use strict';
const http2 = require('node:http2');
const fs = require('node:fs');
const [port, pid, nArg, pathArg] = process.argv.slice(2);
const N = Number(nArg || 1000);

const rss = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
};

async function main() {
  const before = rss();
  const sessions = [];
  const t0 = Date.now();
  for (let i = 0; i < N; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 50); j++) {
      batch.push(
        new Promise((resolve, reject) => {
          const s = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
          s.on('error', reject);
          // one request per connection so the server has set up everything a real client uses
          s.once('connect', () => {
            const r = s.request({ ':path': pathArg || '/size/10' });
            r.on('data', () => {});
            r.on('end', () => resolve(s));
            r.on('error', reject);
            r.end();
          });
        })
      );
    }
    sessions.push(...(await Promise.all(batch)));
  }
  const setupMs = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 2000));
  const after = rss();
  const open = sessions.filter((s) => !s.closed && !s.destroyed).length;
  console.log(
    JSON.stringify({
      connections: N,
      still_open: open,
      setup_ms: setupMs,
      rss_before_mb: +before.toFixed(1),
      rss_after_mb: +after.toFixed(1),
      per_conn_kb: +(((after - before) * 1024) / N).toFixed(1),
    })
  );
  for (const s of sessions) s.destroy();
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
