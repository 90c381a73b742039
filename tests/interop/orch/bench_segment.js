// Orchestrator overhead benchmark (not a test): N concurrent streams, each sending segments one
// after another to a running lpod; prints client round trips and the node's own
// took/engine/overhead figures from its log.
//
// usage: node bench_segment.js --port P --cert CERT.pem --log LPOD.log --in SEG.ts[,SEG2.ts,...]
//        [--streams 4] [--segments 10] [--profiles P144p30fps16x9] [--realtime 1]
//        [--inflight N (segments a stream keeps outstanding; h2load's -m; default 1)]
//        [--client h2load]
// Several --in files are sent in turn, as a stream's consecutive segments.
'use strict';

const fs = require('fs');
const { execFile } = require('child_process');
const http2 = require('http2');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const path = require('path');
const { keccak256 } = require('js-sha3');

const args = { streams: '4', segments: '10', profiles: 'P144p30fps16x9', inflight: '1' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const INFLIGHT = Number(args.inflight);
if (!Number.isInteger(INFLIGHT) || INFLIGHT < 1) {
  console.error('--inflight: a whole number from 1');
  process.exit(2);
}
const proto = args.proto || path.join(__dirname, '../../../src/proto/lp_rpc.proto');
const root = protobuf.loadSync(proto);
const SegData = root.lookupType('net.SegData');
const TranscodeResult = root.lookupType('net.TranscodeResult');
const def = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, longs: Number, bytes: Buffer }));
const PRESETS = {
  P144p30fps16x9: [256, 144, 400000], P240p30fps16x9: [426, 240, 600000], P360p30fps16x9: [640, 360, 1200000],
  P480p30fps16x9: [854, 480, 1600000], P720p30fps16x9: [1280, 720, 4000000],
};
const profiles = args.profiles.split(',').map((n) => ({ name: n, width: PRESETS[n][0], height: PRESETS[n][1], bitrate: PRESETS[n][2], fps: 30 }));
const bodies = args.in.split(',').map((f) => fs.readFileSync(f));
const hashes = bodies.map((b) => Buffer.from(keccak256.arrayBuffer(b)));
const creds = grpc.credentials.createSsl(fs.readFileSync(args.cert), null, null, { checkServerIdentity: () => undefined });
const client = new def.net.Orchestrator(`127.0.0.1:${args.port}`, creds);

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function stream(id) {
  const info = await new Promise((res, rej) => client.GetOrchestrator({ address: Buffer.alloc(20), capabilities: { bitstring: [0x1003] } },
    (e, r) => (e ? rej(e) : res(r))));
  const h2 = http2.connect(info.transcoder, { rejectUnauthorized: false });
  const times = [];
  const send = async (seq) => {
    const k = seq % bodies.length;
    const sd = SegData.encode({ manifestId: Buffer.from(`bench${id}`), seq, hash: hashes[k], duration: 2000,
      authToken: { token: info.auth_token.token, sessionId: info.auth_token.session_id, expiration: info.auth_token.expiration },
      fullProfiles: profiles }).finish();
    const t0 = process.hrtime.bigint();
    let tHeaders = 0n;
    const out = await new Promise((res, rej) => {
      const r = h2.request({ ':method': 'POST', ':path': '/segment', 'livepeer-segment': Buffer.from(sd).toString('base64'),
        'livepeer-payment': '', 'content-type': 'video/MP2T' });
      const ch = [];
      r.on('response', () => { tHeaders = process.hrtime.bigint(); });
      r.on('data', (d) => ch.push(d));
      r.on('end', () => res(Buffer.concat(ch)));
      r.on('error', rej);
      r.end(bodies[k]);
    });
    const t1 = process.hrtime.bigint();
    const tr = TranscodeResult.decode(out);
    if (tr.error) throw new Error(`segment error: ${tr.error}`);
    times.push({ total: Number(t1 - t0) / 1e6, headers: Number(tHeaders - t0) / 1e6 });
  };
  // live streams are not in step: each starts its own share of a segment later
  const start = Date.now() + (args.realtime ? (id * 2000) / Number(args.streams) : 0);
  const pending = [];
  for (let seq = 0; seq < Number(args.segments); seq++) {
    // live pacing: segment k goes out 2 s × k after the first (or when k-N is back, if later)
    if (args.realtime) await new Promise((r) => setTimeout(r, Math.max(0, start + seq * 2000 - Date.now())));
    // a gateway sending ahead keeps up to --inflight segments of the stream outstanding
    pending.push(send(seq));
    if (pending.length >= INFLIGHT) await pending.shift();
  }
  await Promise.all(pending);
  h2.close();
  return times;
}

// The same stream driven by h2load (nghttp2's C client): the upload is not held back by the
// client, so the node's body time is its own. Every request of a stream repeats the first
// --in file as segment 0.
async function streamH2load(id) {
  const info = await new Promise((res, rej) => client.GetOrchestrator({ address: Buffer.alloc(20), capabilities: { bitstring: [0x1003] } },
    (e, r) => (e ? rej(e) : res(r))));
  const sd = SegData.encode({ manifestId: Buffer.from(`bench${id}`), seq: 0, hash: hashes[0], duration: 2000,
    authToken: { token: info.auth_token.token, sessionId: info.auth_token.session_id, expiration: info.auth_token.expiration },
    fullProfiles: profiles }).finish();
  if (args.realtime) await new Promise((r) => setTimeout(r, (id * 2000) / Number(args.streams)));
  const out = await new Promise((res, rej) => {
    execFile('h2load', ['-n', args.segments, '-c', '1', '-m', String(INFLIGHT), '-d', args.in.split(',')[0],
      '-H', `livepeer-segment: ${Buffer.from(sd).toString('base64')}`, '-H', 'content-type: video/MP2T',
      ...(args.realtime ? ['--rps=0.5'] : []), `${info.transcoder}/segment`], (e, so) => (e ? rej(e) : res(so)));
  });
  const m = out.match(/(\d+) succeeded/);
  if (!m || m[1] !== String(args.segments)) throw new Error(`h2load: ${out}`);
  return [];
}

(async () => {
  const t0 = Date.now();
  const run = args.client === 'h2load' ? streamH2load : stream;
  const all = (await Promise.all([...Array(Number(args.streams)).keys()].map(run))).flat();
  const wall = (Date.now() - t0) / 1000;
  client.close();
  const log = fs.readFileSync(args.log, 'utf8');
  const over = [...log.matchAll(/overhead=([\d.]+)ms/g)].map((m) => Number(m[1]));
  const eng = [...log.matchAll(/engine=([\d.]+)ms/g)].map((m) => Number(m[1]));
  const tot = all.map((x) => x.total);
  const hdr = all.map((x) => x.headers);
  const f = (a) => `p50 ${pct(a, 0.5).toFixed(2)} p90 ${pct(a, 0.9).toFixed(2)} max ${Math.max(...a).toFixed(2)}`;
  console.log(`${args.streams} streams x ${args.segments} segments of ${bodies.map((b) => b.length).join(', ')} bytes` +
    `${args.client === 'h2load' && bodies.length > 1 ? ' (h2load: the first only)' : ''}, ${wall.toFixed(1)} s`);
  if (all.length) {
    console.log(`client round trip ms:     ${f(tot)}`);
    console.log(`client time to 200 ms:    ${f(hdr)}`);
  }
  console.log(`node engine ms:           ${f(eng)}`);
  console.log(`node overhead ms:         ${f(over)}  (${over.length} segments)`);
})().catch((e) => { console.error(e); process.exit(1); });
