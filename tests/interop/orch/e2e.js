// End-to-end checks of lpod's orchestrator against independent peers: @grpc/grpc-js for the
// gRPC methods, Node's own HTTP/2 client for /segment, curl over HTTP/1.1 for the result URLs
// and ffprobe for the renditions.
//
// usage: node e2e.js --lpod <binary> --proto <lp_rpc.proto> --media <dir> [--only name,...]
//        [--except name,...]
'use strict';

const assert = require('assert');
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const http = require('http');
const http2 = require('http2');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const { keccak256 } = require('js-sha3');
const { sleep, freePort, startLpod } = require('./lpod_proc');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const k of ['lpod', 'proto', 'media']) {
  if (!args[k]) {
    console.error(`missing --${k}`);
    process.exit(2);
  }
}

const root = protobuf.loadSync(args.proto);
const SegData = root.lookupType('net.SegData');
const Payment = root.lookupType('net.Payment');
const TranscodeResult = root.lookupType('net.TranscodeResult');
const grpcDef = grpc.loadPackageDefinition(
  protoLoader.loadSync(args.proto, { keepCase: true, longs: Number, defaults: true, bytes: Buffer }));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lpod-orch-e2e-'));
const P240 = { name: 'P240p30fps16x9', width: 426, height: 240, bitrate: 600000, fps: 30 };
const P360 = { name: 'P360p30fps16x9', width: 640, height: 360, bitrate: 1200000, fps: 30 };
const MP4_144 = { name: 'mp4_144', width: 256, height: 144, bitrate: 300000, fps: 15, format: 1 };


// One lpod process, offchain, O+T on a free port.
// plain: the service port speaks plain HTTP (h2c and HTTP/1.1) instead of TLS
// datadir: an earlier node's, to start again on what it left there
async function startNode(extraArgs = [], env = {}, roles = ['-orchestrator', '-transcoder'],
  { plain = false, datadir = fs.mkdtempSync(path.join(tmp, 'node-')) } = {}) {
  const port = await freePort();
  const argv = [...roles, '-network', 'offchain', '-serviceAddr', `${plain ? 'http://' : ''}127.0.0.1:${port}`,
    '-datadir', datadir, '-cliAddr', '127.0.0.1:0', '-v', '5', '-testTranscoder=false',
    // admission by cost reads the CPU's load, which other tests running beside these share;
    // the 'admission' test turns it on and runs alone
    '-costAdmission=false', ...extraArgs];
  const { child, log: getLog, exited } = await startLpod(args.lpod, argv, port,
    { env: { ...process.env, ...env } });
  const base = `${plain ? 'http' : 'https'}://127.0.0.1:${port}`;
  const creds = plain ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(fs.readFileSync(path.join(datadir, 'cert.pem')), null, null,
      { checkServerIdentity: () => undefined });
  const client = new grpcDef.net.Orchestrator(`127.0.0.1:${port}`, creds);
  const session = http2.connect(base, { rejectUnauthorized: false });
  session.on('error', () => {});
  return {
    port, base, client, session, child, datadir,
    log: getLog,
    async waitExit(ms) {
      const r = await Promise.race([exited, sleep(ms).then(() => null)]);
      client.close();
      session.close();
      if (!r) child.kill('SIGKILL');
      return r;
    },
    async stop() {
      client.close();
      session.close();
      child.kill('SIGTERM');
      const r = await Promise.race([exited, sleep(15000).then(() => null)]);
      if (!r) {
        child.kill('SIGKILL');
        throw new Error(`lpod did not stop on SIGTERM:\n${getLog().slice(-2000)}`);
      }
      return r;
    },
  };
}

function unary(node, method, req) {
  return new Promise((resolve, reject) => {
    node.client[method](req, { deadline: Date.now() + 10000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

const getOrch = (node) => unary(node, 'GetOrchestrator', {
  address: Buffer.alloc(20), sig: Buffer.alloc(0), capabilities: { bitstring: [0x1003] },
});

function segHeader(info, body, seq, profiles, over = {}) {
  const msg = {
    manifestId: Buffer.from('e2e-stream'),
    seq,
    hash: Buffer.from(keccak256.arrayBuffer(body)),
    profiles: Buffer.from('invalid'),
    duration: 2000,
    capabilities: { bitstring: [0x1003] },
    authToken: info.auth_token && {
      token: info.auth_token.token, sessionId: info.auth_token.session_id,
      expiration: info.auth_token.expiration,
    },
    fullProfiles: profiles,
    ...over,
  };
  // no verify(): some cases send enum values the schema does not know, as a broken peer would
  return Buffer.from(SegData.encode(SegData.create(msg)).finish()).toString('base64');
}

// POST /segment over HTTP/2; resolves with status, headers, body and the order of events.
function postSegment(node, headers, body) {
  return new Promise((resolve, reject) => {
    const events = [];
    const req = node.session.request({
      ':method': 'POST', ':path': '/segment', 'content-type': 'video/MP2T',
      'livepeer-payment': '', 'content-length': String(body.length), ...headers,
    });
    let status = 0;
    let hdrs = {};
    const chunks = [];
    req.on('response', (h) => {
      status = h[':status'];
      hdrs = h;
      events.push('headers');
      if (resolve.onHeaders) resolve.onHeaders();
    });
    req.on('data', (d) => { chunks.push(d); events.push('data'); });
    req.on('end', () => resolve({ status, headers: hdrs, body: Buffer.concat(chunks), events }));
    req.on('error', reject);
    req.end(body);
  });
}

// Like postSegment, but calls onHeaders(reqPromise) as soon as the response headers arrive.
function postSegmentWatch(node, headers, body, onHeaders) {
  return new Promise((resolve, reject) => {
    const req = node.session.request({
      ':method': 'POST', ':path': '/segment', 'content-type': 'video/MP2T',
      'livepeer-payment': '', 'content-length': String(body.length), ...headers,
    });
    let status = 0;
    const chunks = [];
    let headersSeen = null;
    req.on('response', (h) => { status = h[':status']; headersSeen = onHeaders(h); });
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => resolve({ status, body: Buffer.concat(chunks), headersSeen }));
    req.on('error', reject);
    req.end(body);
  });
}

function decodeResult(buf) {
  return TranscodeResult.toObject(TranscodeResult.decode(buf), { longs: Number, defaults: true });
}

function ffprobe(file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries',
    'stream=codec_name,width,height,nb_read_frames', '-show_entries', 'format=format_name', '-of', 'json', file]);
  const j = JSON.parse(out);
  return { ...j.streams[0], format: j.format.format_name };
}

// Downloads a URL over HTTP/1.1 with curl; returns { status, file }.
function curlGet(url, name) {
  const file = path.join(tmp, name);
  const out = execFileSync('curl', ['--http1.1', '-k', '-sS', '-o', file, '-w', '%{http_code} %{http_version}', url]).toString();
  const [status, ver] = out.split(' ');
  return { status: Number(status), version: ver, file };
}

function makeSegment(size, seconds) {
  const file = path.join(tmp, `in${size}-${seconds}s.ts`);
  if (fs.existsSync(file)) return fs.readFileSync(file);
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=30`, '-f', 'lavfi',
    '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(seconds), '-c:v', 'libx264', '-preset', 'ultrafast',
    '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-f', 'mpegts', file]);
  return fs.readFileSync(file);
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

let seg1080;
let seg360;
const transmux = () => fs.readFileSync(path.join(args.media, 'transmux.ts'));

test('transcode', async () => {
  const node = await startNode();
  try {
    const info = await getOrch(node);
    assert.strictEqual(info.transcoder, node.base);
    assert.strictEqual(info.address.length, 20);
    assert.ok(info.address.equals(Buffer.alloc(20)));
    assert.ok(info.auth_token, 'auth_token');
    assert.match(info.auth_token.session_id, /^[0-9a-f]{8}$/);
    const now = Date.now() / 1000;
    assert.ok(info.auth_token.expiration > now + 1700 && info.auth_token.expiration < now + 1900);
    assert.ok(info.auth_token.token.length > 0);
    const bits = BigInt(info.capabilities.bitstring[0]);
    assert.strictEqual(bits & 0x1003n, 0x1003n, 'caps cover H264, MPEGTS, AuthToken');
    assert.strictEqual(bits & (1n << 14n), 0n, 'no perceptual hash advertised');
    // lpod's AV1 capabilities (960 decode, 961 encode) fill word 15 of a 16-word bit string;
    // the words between are zero, as go-livepeer's numbers end in word 0
    assert.strictEqual(info.capabilities.bitstring.length, 16, 'AV1 widens the bit string');
    assert.strictEqual(BigInt(info.capabilities.bitstring[15]) & 3n, 3n, 'AV1 decode and encode');
    for (let w = 1; w < 15; w++) assert.strictEqual(BigInt(info.capabilities.bitstring[w]), 0n);
    assert.match(info.capabilities.version, /^\d+\.\d+\.\d+$/);
    assert.strictEqual(info.capabilities.mandatories.length, 0);
    assert.strictEqual(info.ticket_params, null);
    assert.strictEqual(info.price_info, null);

    const inputs = [['transmux', transmux(), [P240, P360]], ['1080p', seg1080, [P240, P360, MP4_144]]];
    let seq = 0;
    for (const [label, body, profiles] of inputs) {
      const r = await postSegment(node, { 'livepeer-segment': segHeader(info, body, seq, profiles) }, body);
      assert.strictEqual(r.status, 200, `${label}: ${r.body}`);
      assert.strictEqual(r.events[0], 'headers');
      const res = decodeResult(r.body);
      assert.strictEqual(res.seq, seq);
      assert.ok(res.data, `${label}: error ${res.error}`);
      assert.strictEqual(res.data.segments.length, profiles.length);
      assert.ok(res.info, 'refreshed info');
      assert.strictEqual(res.info.transcoder, node.base);
      assert.strictEqual(res.info.authToken.sessionId, info.auth_token.session_id);
      for (let i = 0; i < profiles.length; i++) {
        const p = profiles[i];
        const s = res.data.segments[i];
        const ext = p.format === 1 ? 'mp4' : 'ts';
        assert.strictEqual(s.url, `${node.base}/stream/${info.auth_token.session_id}/${p.name}/${seq}.${ext}`);
        const dl = curlGet(s.url, `${label}-${p.name}.${ext}`);
        assert.strictEqual(dl.status, 200);
        assert.strictEqual(dl.version, '1.1');
        const pr = ffprobe(dl.file);
        assert.strictEqual(pr.codec_name, 'h264');
        assert.ok(pr.format.includes(ext === 'mp4' ? 'mp4' : 'mpegts'), pr.format);
        // the longer side of the box becomes the source's longer side, aspect kept
        assert.strictEqual(Math.max(pr.width, pr.height), Math.max(p.width, p.height));
        const frames = Number(pr.nb_read_frames);
        assert.ok(frames > 0);
        assert.strictEqual(s.pixels, frames * pr.width * pr.height,
          `${label} ${p.name}: pixels ${s.pixels} vs ${frames} x ${pr.width}x${pr.height}`);
        console.log(`  ${label} ${p.name}: ${pr.codec_name} ${pr.width}x${pr.height} ${frames} frames, pixels ${s.pixels}`);
      }
      seq++;
    }
    // GET /stream headers (go-livepeer's) over HTTP/1.1
    const url = `${node.base}/stream/${info.auth_token.session_id}/${P240.name}/0.ts`;
    const hdr = execFileSync('curl', ['--http1.1', '-k', '-sS', '-D', '-', '-o', '/dev/null', url]).toString().toLowerCase();
    assert.match(hdr, /^http\/1.1 200/);
    assert.match(hdr, /content-length: \d+/);
    assert.match(hdr, /access-control-allow-origin: \*/);
    assert.match(hdr, /cache-control: max-age=5/);
    const miss = curlGet(`${node.base}/stream/${info.auth_token.session_id}/${P240.name}/99.ts`, 'miss');
    assert.strictEqual(miss.status, 404);
    assert.strictEqual(fs.readFileSync(miss.file, 'utf8'), 'ErrNotFound\n');
    // and over HTTP/2
    const h2 = await new Promise((resolve, reject) => {
      const rq = node.session.request({ ':path': `/stream/${info.auth_token.session_id}/${P360.name}/1.ts` });
      const ch = [];
      let st = 0;
      rq.on('response', (h) => { st = h[':status']; });
      rq.on('data', (d) => ch.push(d));
      rq.on('end', () => resolve({ st, len: Buffer.concat(ch).length }));
      rq.on('error', reject);
      rq.end();
    });
    assert.strictEqual(h2.st, 200);
    assert.ok(h2.len > 0);

    // EndTranscodingSession: a bad token is refused, the right one tears down (URLs go)
    const badTok = { ...info.auth_token, token: Buffer.from(info.auth_token.token) };
    badTok.token[0] ^= 1;
    await assert.rejects(unary(node, 'EndTranscodingSession', { auth_token: badTok }),
      (e) => e.code === grpc.status.UNKNOWN && e.details === 'Invalid auth token');
    await unary(node, 'EndTranscodingSession', { auth_token: info.auth_token });
    assert.strictEqual(curlGet(url, 'gone').status, 404);
    const pong = await unary(node, 'Ping', { value: Buffer.from('hi') });
    assert.strictEqual(pong.value.length, 0);
  } finally {
    const r = await node.stop();
    assert.strictEqual(r.code, 0, `exit ${JSON.stringify(r)}`);
  }
});

test('status-codes', async () => {
  const node = await startNode();
  // a tiny HTTP server for the URL body form
  const body = transmux();
  const web = http.createServer((req, res) => {
    if (req.url === '/seg.ts') { res.end(body); return; }
    res.statusCode = 404;
    res.end('no');
  });
  await new Promise((r) => web.listen(0, '127.0.0.1', r));
  const webBase = `http://127.0.0.1:${web.address().port}`;
  try {
    const info = await getOrch(node);
    const good = segHeader(info, body, 0, [P240]);
    const cases = [
      ['bad payment base64', { 'livepeer-segment': good, 'livepeer-payment': 'abc' }, body,
        402, 'base64 decode error: illegal base64 data at input byte 0'],
      ['bad payment protobuf', { 'livepeer-segment': good, 'livepeer-payment': '//8=' }, body,
        402, 'protobuf unmarshal error: proto: cannot parse invalid wire-format data'],
      ['bad segment base64', { 'livepeer-segment': '%%%' }, body, 403, 'ErrorSegEncoding'],
      ['bad segment protobuf', { 'livepeer-segment': '//8=' }, body, 403,
        'proto: cannot parse invalid wire-format data'],
      ['unknown codec', { 'livepeer-segment': segHeader(info, body, 0, [{ ...P240, encoder: 9 }]) }, body,
        403, 'unrecognized video codec'],
      ['unknown format', { 'livepeer-segment': segHeader(info, body, 0, [{ ...P240, format: 4 }]) }, body,
        403, 'unrecognized profile output format'],
      ['unknown profile', { 'livepeer-segment': segHeader(info, body, 0, [{ ...P240, profile: 8 }]) }, body,
        403, 'unrecognized encoder profile'],
      ['negative duration', { 'livepeer-segment': segHeader(info, body, 0, [P240], { duration: -1 }) }, body,
        403, 'invalid duration'],
      ['long duration', { 'livepeer-segment': segHeader(info, body, 0, [P240], { duration: 300001 }) }, body,
        403, 'invalid duration'],
      ['incompatible caps', { 'livepeer-segment': segHeader(info, body, 0, [P240], { capabilities: { bitstring: [0x5003] } }) },
        body, 403, 'incompatible capabilities'],
      // a capability of word 15 that the node does not have (962), and one more word than it has
      ['incompatible word 15', { 'livepeer-segment': segHeader(info, body, 0, [P240], { capabilities: { bitstring: [0x1003, ...Array(14).fill(0), 4] } }) },
        body, 403, 'incompatible capabilities'],
      ['17 words', { 'livepeer-segment': segHeader(info, body, 0, [P240], { capabilities: { bitstring: [0x1003, ...Array(16).fill(0)] } }) },
        body, 403, 'incompatible capabilities'],
      ['missing token', { 'livepeer-segment': segHeader({}, body, 0, [P240]) }, body, 403, 'missing auth token'],
      ['invalid token', { 'livepeer-segment': segHeader({ auth_token: { ...info.auth_token, expiration: info.auth_token.expiration + 1 } }, body, 0, [P240]) },
        body, 403, 'invalid auth token'],
      ['no segment header', {}, body, 403, 'missing auth token'],
      ['hash mismatch', { 'livepeer-segment': good }, Buffer.concat([body, Buffer.from('x')]), 403, 'Forbidden'],
      ['bad url body', { 'livepeer-segment': segHeader(info, body, 0, [P240]), 'content-type': 'application/vnd+livepeer.uri' },
        Buffer.from(`${webBase}/missing.ts`), 400, 'BadRequest'],
    ];
    for (const [label, headers, b, status, text] of cases) {
      const r = await postSegment(node, headers, b);
      assert.strictEqual(r.status, status, `${label}: ${r.status} ${r.body}`);
      assert.strictEqual(r.body.toString(), `${text}\n`, label);
      assert.strictEqual(r.headers['content-type'], 'text/plain; charset=utf-8', label);
      assert.strictEqual(r.headers['x-content-type-options'], 'nosniff', label);
    }
    // a large body is hashed in pieces off the loop while it streams in: a wrong hash over 6 MB
    // is still caught, and an upload the client gives up half way leaves the node serving
    const bigBody = Buffer.alloc(6 << 20, 0x47);
    const bigR = await postSegment(node, { 'livepeer-segment': segHeader(info, body, 0, [P240]) }, bigBody);
    assert.strictEqual(bigR.status, 403, `big body: ${bigR.status} ${bigR.body}`);
    assert.strictEqual(bigR.body.toString(), 'Forbidden\n');
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => {
        const req = node.session.request({ ':method': 'POST', ':path': '/segment', 'content-type': 'video/MP2T',
          'livepeer-payment': '', 'livepeer-segment': segHeader(info, bigBody, 0, [P240]), 'content-length': String(bigBody.length) });
        req.on('error', () => {});
        req.on('close', resolve);
        req.write(bigBody.subarray(0, 1 << 20), () => setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), 5 * i));
      });
    }
    const after = await postSegment(node, { 'livepeer-segment': segHeader(info, body, 1, [P240]) }, body);
    assert.strictEqual(after.status, 200, 'serving after abandoned uploads');
    assert.ok(decodeResult(after.body).data, 'transcoded after abandoned uploads');
    const local = await postSegment(node, { 'livepeer-segment': good, 'content-type': 'application/vnd+livepeer.uri' },
      Buffer.from('file:///etc/passwd'));
    assert.strictEqual(local.status, 400);
    assert.strictEqual(local.body.toString(), 'BadRequest\n');
    // HTTP/1.1 works too: the 200 comes chunked, the TranscodeResult follows
    const segFile = path.join(tmp, 'h1.ts');
    fs.writeFileSync(segFile, body);
    const h1 = execFileSync('curl', ['--http1.1', '-k', '-sS', '-D', path.join(tmp, 'h1.hdr'), '-o', path.join(tmp, 'h1.out'),
      '-H', `Livepeer-Segment: ${segHeader(info, body, 5, [P240])}`, '-H', 'Livepeer-Payment:',
      '-H', 'Content-Type: video/MP2T', '--data-binary', `@${segFile}`, `${node.base}/segment`]);
    assert.strictEqual(h1.length, 0);
    const h1hdr = fs.readFileSync(path.join(tmp, 'h1.hdr'), 'utf8').toLowerCase();
    assert.match(h1hdr, /^http\/1.1 200/);
    assert.match(h1hdr, /transfer-encoding: chunked/);
    const h1res = decodeResult(fs.readFileSync(path.join(tmp, 'h1.out')));
    assert.strictEqual(h1res.seq, 5);
    assert.ok(h1res.data, h1res.error);
    // a request gRPC cannot parse
    await assert.rejects(new Promise((resolve, reject) => {
      node.client.makeUnaryRequest('/net.Orchestrator/GetOrchestrator', (x) => x, (b) => b,
        Buffer.from([0xff, 0xff]), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r)));
    }), (e) => e.code === grpc.status.INTERNAL);
    // the URL body form fetches the segment
    const r = await postSegment(node, { 'livepeer-segment': good, 'content-type': 'application/vnd+livepeer.uri' },
      Buffer.from(`${webBase}/seg.ts`));
    assert.strictEqual(r.status, 200);
    const res = decodeResult(r.body);
    assert.ok(res.data, res.error);
    assert.strictEqual(res.data.segments.length, 1);
    // an input the engine can't use is a body error after the 200
    const junk = Buffer.alloc(4000, 7);
    const j = await postSegment(node, { 'livepeer-segment': segHeader(info, junk, 1, [P240]) }, junk);
    assert.strictEqual(j.status, 200);
    const jr = decodeResult(j.body);
    assert.ok(jr.error, 'error text for junk input');
    console.log(`  junk input -> "${jr.error}"`);
  } finally {
    web.close();
    await node.stop();
  }
});

test('capacity-busy-idle', async () => {
  const node = await startNode(['-maxSessions', '1'], { LPOD_SESSION_IDLE_MS: '1500' });
  try {
    const a = await getOrch(node);
    const b = await getOrch(node);
    const body = seg360;
    const profiles = [P240];
    // six segments of one session at once: one transcodes, four wait, the sixth is busy
    const rs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) =>
      postSegment(node, { 'livepeer-segment': segHeader(a, body, i, profiles) }, body)));
    const results = rs.map((r) => { assert.strictEqual(r.status, 200); return decodeResult(r.body); });
    const busy = results.filter((r) => r.error === 'OrchestratorBusy');
    const ok = results.filter((r) => r.data);
    assert.strictEqual(busy.length, 1, JSON.stringify(results.map((r) => r.error || 'ok')));
    assert.strictEqual(ok.length, 5);
    // the node holds one session: another session and GetOrchestrator are capped
    const capped = await postSegment(node, { 'livepeer-segment': segHeader(b, seg360, 0, [P240]) }, seg360);
    assert.strictEqual(capped.status, 403);
    assert.strictEqual(capped.body.toString(), 'OrchestratorCapped\n');
    await assert.rejects(getOrch(node), (e) => e.code === grpc.status.UNKNOWN &&
      e.details === 'Invalid orchestrator request: OrchestratorCapped');
    // after the idle timeout the session is gone: results 404, capacity back
    await sleep(2500);
    const url = ok[0].data.segments[0].url;
    assert.strictEqual(curlGet(url, 'idle').status, 404);
    await getOrch(node);
    const again = await postSegment(node, { 'livepeer-segment': segHeader(b, seg360, 0, [P240]) }, seg360);
    assert.strictEqual(again.status, 200);
    assert.ok(decodeResult(again.body).data);
  } finally {
    await node.stop();
  }
});

// Posts three segments of one session at once; each must come back whole (ffprobe's frames and
// pixels against the result's).
async function postQueued(node, info, label) {
  const rs = await Promise.all([0, 1, 2].map((i) =>
    postSegment(node, { 'livepeer-segment': segHeader(info, seg360, i, [P240]) }, seg360)));
  for (let i = 0; i < 3; i++) {
    assert.strictEqual(rs[i].status, 200);
    const res = decodeResult(rs[i].body);
    assert.strictEqual(res.seq, i);
    assert.ok(res.data, `segment ${i}: error ${res.error}`);
    const s = res.data.segments[0];
    const dl = curlGet(s.url, `${label}-${i}.ts`);
    assert.strictEqual(dl.status, 200);
    const pr = ffprobe(dl.file);
    assert.strictEqual(Number(pr.nb_read_frames), 30);
    assert.strictEqual(s.pixels, 30 * pr.width * pr.height);
  }
}

// In process (-localWorkers 0) a session's queued segments are submitted to the engine without
// waiting, so the next decodes while the last one's encoders drain (correctness only: how many
// overlapped is timing): three segments of one session posted at once all come back whole.
test('in-process-queued', async () => {
  const node = await startNode(['-localWorkers', '0']);
  try {
    await postQueued(node, await getOrch(node), 'queued');
  } finally {
    await node.stop();
  }
});

// Through a local worker with the capacity model on (the node places the stream, so it knows a
// local lpod worker has it): the session's queued segments go to the worker without waiting for
// the last result, the worker takes the next while the last one drains, and all come back whole.
test('workers-queued', async () => {
  const node = await startNode(['-localWorkers', 'auto', '-costAdmission=true', '-maxSessions', 'auto',
    '-orchSecret', 's3cret']);
  try {
    for (let i = 0; i < 150 && !/localWorker=0\n/.test(node.log()); i++) await sleep(100);
    assert.match(node.log(), /Capacity: new streams are admitted by their cost and placed on a device/);
    const info = await getOrch(node);
    await waitIdle(node);
    await postQueued(node, info, 'wqueued');
    // how many were with the worker at once (timing, so reported, not asserted)
    let out = 0;
    let most = 0;
    for (const l of node.log().split('\n')) {
      if (/Sent segment to transcoder=\S+ localWorker=0/.test(l)) most = Math.max(most, ++out);
      else if (/Transcoded segment renditions=/.test(l)) out--;
    }
    console.log(`     up to ${most} of the session's segments with the worker at once`);
  } finally {
    await node.stop();
  }
});

test('early-200', async () => {
  // The 200 headers come before the transcode ends: ending the session as soon as they arrive
  // catches the segment still transcoding, so its body reports the ended session.
  const node = await startNode();
  try {
    const info = await getOrch(node);
    const body = seg1080;
    const r = await postSegmentWatch(node, { 'livepeer-segment': segHeader(info, body, 0, [P240]) },
      body, () => unary(node, 'EndTranscodingSession', { auth_token: info.auth_token }));
    assert.strictEqual(r.status, 200);
    await r.headersSeen;
    const res = decodeResult(r.body);
    assert.strictEqual(res.error, 'session ended');
  } finally {
    await node.stop();
  }
});

test('graceful-stop', async () => {
  // SIGTERM while a segment transcodes: the segment still gets its renditions, then lpod exits 0.
  const node = await startNode();
  const info = await getOrch(node);
  const body = seg1080;
  let stopped;
  const r = await postSegmentWatch(node, { 'livepeer-segment': segHeader(info, body, 0, [P240]) }, body,
    () => { node.child.kill('SIGTERM'); });
  assert.strictEqual(r.status, 200);
  const res = decodeResult(r.body);
  assert.ok(res.data, res.error);
  // the one SIGTERM is enough: lpod exits by itself once the segment is answered
  stopped = await node.waitExit(15000);
  assert.ok(stopped, 'lpod did not exit after draining');
  assert.strictEqual(stopped.code, 0, JSON.stringify(stopped));
});

test('lpod-gateway', async () => {
  // our own gateway subcommand against the node: discovery, segment, HTTP/1.1 downloads
  const node = await startNode();
  try {
    const out = path.join(tmp, 'gw');
    const r = require('child_process').spawnSync(args.lpod, ['gateway', '-orchAddr', `127.0.0.1:${node.port}`,
      '-in', path.join(args.media, 'transmux.ts'), '-transcodingOptions', 'P144p30fps16x9', '-out', out],
    { encoding: 'utf8', timeout: 60000 });
    assert.strictEqual(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 stream\(s\), 1 segment\(s\) ok, 0 failed/);
    const pr = ffprobe(path.join(out, '0_P144p30fps16x9.ts'));
    assert.strictEqual(pr.codec_name, 'h264');
    assert.strictEqual(pr.width, 256);
    // several streams paced in real time, with a JSON report
    const seg = path.join(tmp, 'gw360.ts');
    fs.writeFileSync(seg, seg360);
    const j = require('child_process').spawnSync(args.lpod, ['gateway', '-orchAddr', `127.0.0.1:${node.port}`,
      '-in', seg, '-transcodingOptions', 'P144p30fps16x9', '-streams', '2', '-segments', '2', '-realtime',
      '-segmentDuration', '1s', '-json'], { encoding: 'utf8', timeout: 60000 });
    assert.strictEqual(j.status, 0, j.stdout + j.stderr);
    const rep = JSON.parse(j.stdout);
    assert.strictEqual(rep.streams, 2);
    assert.strictEqual(rep.ok, 4);
    assert.strictEqual(rep.failed, 0);
    assert.ok(rep.latency_ms.p50 > 0 && rep.latency_ms.max >= rep.latency_ms.p50);
    // lpod bench's node mode: the same client, paced in real time by default
    const b = require('child_process').spawnSync(args.lpod, ['bench', '-orchAddr', `127.0.0.1:${node.port}`,
      '-in', seg, '-transcodingOptions', 'P144p30fps16x9', '-streams', '2', '-segments', '2',
      '-segmentDuration', '1s', '-json'], { encoding: 'utf8', timeout: 60000 });
    assert.strictEqual(b.status, 0, b.stdout + b.stderr);
    const bench = JSON.parse(b.stdout);
    assert.strictEqual(bench.realtime, true);
    assert.strictEqual(bench.streams, 2);
    assert.strictEqual(bench.ok, 4);
    assert.strictEqual(bench.failed, 0);
    assert.deepStrictEqual(bench.errors, {});
    assert.ok(bench.realtime_ratio_p50 > 0 && bench.latency_ms.p99 >= bench.latency_ms.p50);
  } finally {
    await node.stop();
  }
});

test('remote-transcoder', async () => {
  // a standalone orchestrator does nothing until an lpod transcoder registers, then sends it
  // the work; -maxSessions auto follows the transcoder's capacity
  const node = await startNode(['-orchSecret', 's3cret', '-maxSessions', 'auto'], {}, ['-orchestrator']);
  const tdir = fs.mkdtempSync(path.join(tmp, 't-'));
  const t = spawn(args.lpod, ['-transcoder', '-orchAddr', `127.0.0.1:${node.port}`, '-orchSecret', 's3cret',
    '-maxSessions', '1', '-datadir', tdir, '-cliAddr', '127.0.0.1:0', '-v', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tlog = '';
  t.stdout.on('data', (d) => { tlog += d; });
  t.stderr.on('data', (d) => { tlog += d; });
  const texit = new Promise((r) => t.on('exit', (code) => r(code)));
  try {
    await assert.rejects(getOrch(node), (e) => e.details === 'Invalid orchestrator request: OrchestratorCapped');
    let info = null;
    for (let i = 0; i < 100 && !info; i++) {
      await sleep(100);
      info = await getOrch(node).catch(() => null);
      if (info && (BigInt(info.capabilities.bitstring[0]) & 0x1003n) !== 0x1003n) info = null;
    }
    assert.ok(info, `transcoder did not register:\n${tlog.slice(-1500)}\n${node.log().slice(-1500)}`);
    const body = seg360;
    const r = await postSegment(node, { 'livepeer-segment': segHeader(info, body, 0, [P240]) }, body);
    assert.strictEqual(r.status, 200);
    const res = decodeResult(r.body);
    assert.ok(res.data, res.error);
    const dl = curlGet(res.data.segments[0].url, 'remote.ts');
    assert.strictEqual(dl.status, 200);
    const pr = ffprobe(dl.file);
    assert.strictEqual(pr.width, 426);
    assert.strictEqual(res.data.segments[0].pixels, Number(pr.nb_read_frames) * pr.width * pr.height);
    // -maxSessions auto with one transcoder of capacity 1: the node is full now
    await assert.rejects(getOrch(node), (e) => e.details === 'Invalid orchestrator request: OrchestratorCapped');
  } finally {
    t.kill('SIGTERM');
    await Promise.race([texit, sleep(10000)]);
    await node.stop();
  }
});

// GET on the admin API (plain HTTP on loopback); the port is read from the node's log.
// The admin API's port, once the node has logged it: the node opens it after the service port
// the start waits for.
async function adminPort(node) {
  let m = null;
  for (let i = 0; i < 100 && !(m = node.log().match(/Admin API listening on port (\d+)/)); i++) await sleep(50);
  assert.ok(m, 'admin API port in the log');
  return Number(m[1]);
}

async function adminGet(node, path) {
  const port = await adminPort(node);
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

// A form POST to the admin API (curl -d), as operators change a live setting.
async function adminPost(node, path, form) {
  const port = await adminPort(node);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' } }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: b }));
    });
    req.on('error', reject);
    req.end(form);
  });
}

async function adminStatus(node) {
  return JSON.parse(await adminGet(node, '/status'));
}

// Until the CPU telemetry (sampled every 2 s) shows the machine using under half the budget:
// busy CPUs count against admission whoever keeps them busy.
// need: wu/s that must fit beside what the telemetry measures (default: half the budget).
async function waitIdle(node, need) {
  let e;
  for (let i = 0; i < 40; i++) {
    e = (await adminStatus(node)).Capacity.devices[0].engines[0];
    if (e.measured === undefined || e.measured + (need === undefined ? e.budget / 2 : need) <= e.budget) return;
    await sleep(500);
  }
  throw new Error(`the CPU did not become idle: ${JSON.stringify(e)}`);
}

// Admission by cost: streams are admitted while their modelled cost fits the CPU's budget, the
// next one is refused with OrchestratorCapped, and the admitted ones then run in real time.
// Run on its own (ctest RUN_SERIAL): the real-time part needs the machine's cores.
test('local-workers', async () => {
  // combined mode with -localWorkers auto: transcoding runs in supervised child processes, one
  // per device (here the CPU alone, so one); a kill -9 of the child costs only its segment, the
  // node keeps serving and the child comes back
  const node = await startNode(['-localWorkers', 'auto']);
  const children = () => {
    const out = require('child_process').spawnSync('pgrep', ['-P', String(node.child.pid)], { encoding: 'utf8' });
    return out.stdout.split('\n').filter(Boolean).map(Number);
  };
  // the node advertises its workers' codecs from the start; registrations are in its log
  const registered = () => (node.log().match(/Got a RegisterTranscoder request .* localWorker=0\n/g) || []).length;
  const ready = async (what, n) => {
    for (let i = 0; i < 150; i++) {
      const info = await getOrch(node).catch(() => null);
      if (info && (BigInt(info.capabilities.bitstring[0]) & 0x1003n) === 0x1003n && registered() >= n) return info;
      await sleep(100);
    }
    throw new Error(`${what}: no worker registered\n${node.log().slice(-2500)}`);
  };
  try {
    let info = await ready('first start', 1);
    const [pid] = children();
    assert.ok(pid > 0, 'a worker process runs under the node');
    const r = await postSegment(node, { 'livepeer-segment': segHeader(info, seg360, 0, [P240]) }, seg360);
    assert.strictEqual(r.status, 200);
    const res = decodeResult(r.body);
    assert.ok(res.data, res.error);
    const dl = curlGet(res.data.segments[0].url, 'worker.ts');
    assert.strictEqual(ffprobe(dl.file).width, 426);
    // kill -9 the worker while it transcodes a 1080p segment
    const sent = () => (node.log().match(/Sent segment to transcoder=/g) || []).length;
    const before = sent();
    const p = postSegment(node, { 'livepeer-segment': segHeader(info, seg1080, 1, [P240, P360]) }, seg1080);
    for (let i = 0; i < 200 && sent() === before; i++) await sleep(10);
    assert.ok(sent() > before, 'the segment reached the worker');
    process.kill(pid, 'SIGKILL');
    const killed = await p;
    assert.strictEqual(killed.status, 200, 'the early 200 went out before the crash');
    const kr = decodeResult(killed.body);
    assert.ok(!kr.data && kr.error, `the lost segment gets an error, not a hang: ${JSON.stringify(kr)}`);
    console.log(`     segment in flight when the worker died -> "${kr.error}"`);
    // the node never stopped serving, and the supervisor brings a new worker
    const st = await unary(node, 'Ping', { value: Buffer.from('x') }).catch((e) => e);
    assert.ok(!(st instanceof Error), `the node still answers: ${st}`);
    // the stream's next segment, sent while no worker is registered, waits for the new one
    assert.strictEqual(registered(), 1, 'sent before the new worker registered');
    const again = await postSegment(node, { 'livepeer-segment': segHeader(info, seg360, 2, [P240]) }, seg360);
    assert.strictEqual(again.status, 200);
    assert.ok(decodeResult(again.body).data, `transcoded by the restarted worker: ${again.body}`);
    assert.match(node.log(), /Segment waits for a local worker sessionID=/);
    info = await ready('restart', 2);
    const [pid2] = children();
    assert.ok(pid2 > 0 && pid2 !== pid, 'a new worker process');
    assert.match(node.log(), /Local workers: 1 transcoder process\(es\), one per device, register over 127\.0\.0\.1:/);
    // the node probed its devices once; the worker read its own device's table and registered
    // its codecs, AV1 among them, which the node now advertises as its own
    assert.match(node.log(), /Devices: \d+, from the node's table .*devices-0\.json/);
    assert.strictEqual(BigInt(info.capabilities.bitstring[15]) & 3n, 3n, 'AV1 from the worker');
    // a job that needs AV1 encode (961) is accepted and goes to that worker
    const av1caps = { capabilities: { bitstring: [0x1003, ...Array(14).fill(0), 2] } };
    const av1 = await postSegment(node, { 'livepeer-segment': segHeader(info, seg360, 3, [P240], av1caps) }, seg360);
    assert.strictEqual(av1.status, 200, `${av1.body}`);
    assert.ok(decodeResult(av1.body).data, 'a job with word-15 capabilities is transcoded');
  } finally {
    await node.stop();
  }
  // the workers stop with the node
  await sleep(200);
  assert.deepStrictEqual(children(), []);
});

// Every stream's first segment at once; which streams the node admitted (their renditions
// came back) and which it refused (OrchestratorCapped, before or after the early 200).
async function firstSegments(node, infos, body, profiles) {
  const first = await Promise.all(infos.map((info) =>
    postSegment(node, { 'livepeer-segment': segHeader(info, body, 0, profiles) }, body)));
  const admitted = [];
  const refused = [];
  const early = []; // refused at their credentials, before their body was read
  first.forEach((r, i) => {
    if (r.status === 403) {
      assert.strictEqual(r.body.toString(), 'OrchestratorCapped\n');
      refused.push(i);
      early.push(i);
      return;
    }
    assert.strictEqual(r.status, 200);
    const res = decodeResult(r.body);
    if (res.error) {
      assert.strictEqual(res.error, 'OrchestratorCapped');
      refused.push(i);
    } else {
      assert.strictEqual(res.data.segments.length, profiles.length);
      admitted.push(i);
    }
  });
  return { admitted, refused, early };
}

// The default -localWorkers auto on a plain http:// service port, which the workers cannot
// dial: the node says so and transcodes in its own process.
test('plain-http', async () => {
  const node = await startNode([], {}, undefined, { plain: true });
  try {
    const info = await getOrch(node);
    assert.match(info.transcoder, /^http:\/\/127\.0\.0\.1:/);
    const r = await postSegment(node, { 'livepeer-segment': segHeader(info, seg360, 0, [P240]) }, seg360);
    assert.strictEqual(r.status, 200);
    const res = decodeResult(r.body);
    assert.ok(res.data, res.error);
    assert.strictEqual(res.data.segments.length, 1);
    assert.match(node.log(), /the service port is plain http:\/\/, which the local workers cannot dial; transcoding in this process/);
    assert.doesNotMatch(node.log(), /Local workers:|RegisterTranscoder/);
  } finally {
    await node.stop();
  }
});

test('admission', async () => {
  const body = makeSegment('640x360', 2);
  // in process: the engine's own feedback (admission-workers below runs it through a worker)
  const node = await startNode(['-localWorkers', '0', '-costAdmission=true', '-maxSessions', 'auto',
    '-targetRealtimeRatio', '0.25', '-monitor']);
  const profiles = [P240];
  const TRIES = 24;
  try {
    const infos = [];
    for (let i = 0; i < TRIES; i++) infos.push(await getOrch(node));
    await waitIdle(node);
    // every stream's first segment at once: all are weighed before any has been transcoded,
    // so the budget they are weighed against is the one read below
    const { admitted, refused, early } = await firstSegments(node, infos, body, profiles);
    const st = await adminStatus(node);
    const dev = st.Capacity.devices[0];
    const eng = dev.engines[0];
    // the CPU's telemetry is attached and has sampled (waitIdle read it)
    assert.deepStrictEqual(dev.telemetry, { source: 'cpu', working: true });
    const cost = eng.committed / admitted.length;
    assert.ok(admitted.length >= 2, `room for at least two streams (${admitted.length})`);
    assert.ok(refused.length >= 1, 'the node filled up');
    assert.strictEqual(dev.sessions, admitted.length);
    // the first segments' credentials arrive before any body is weighed: the room held for the
    // streams already arriving turns the rest away there, before their bodies are read
    assert.ok(early.length >= 1, `some refused at their credentials (${early.length} of ${refused.length})`);
    // each of them logged with the reason, as a refusal after weighing is
    const credLines = node.log().match(/capacity: refused at its credentials, a source of at least 426x240 -> 1 renditions: [a-z ]+: \S.*/g) || [];
    assert.strictEqual(credLines.length, early.length, `a reason for each refusal at the credentials:\n${credLines.join('\n')}`);
    // every first segment has been answered: no room is still held for one arriving
    assert.strictEqual(st.Capacity.holds, 0, 'no room held once every first segment is answered');
    // the same numbers in Prometheus text, for dashboards
    const metrics = await adminGet(node, '/metrics');
    const series = (name, labels) => {
      const m = metrics.match(new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\S+)$`, 'm'));
      assert.ok(m, `${name} ${labels} in /metrics:\n${metrics}`);
      return Number(m[1]);
    };
    assert.strictEqual(series('lpod_device_streams', 'device="cpu"'), admitted.length);
    assert.ok(Math.abs(series('lpod_device_work_committed', 'device="cpu",engine="cpu"') - eng.committed) <= 1e-4 * eng.committed);
    assert.ok(series('lpod_device_work_budget', 'device="cpu",engine="cpu"') > 0);
    assert.strictEqual(series('lpod_device_behind', 'device="cpu"'), dev.behind ? 1 : 0);
    assert.strictEqual(series('lpod_device_telemetry_up', 'device="cpu"'), 1);
    assert.strictEqual(series('livepeer_current_sessions_total', ''), st.Sessions);
    assert.strictEqual(st.Sessions, admitted.length);
    // The first refusal names the numbers it was weighed with (the budget moves once segments
    // report, so /status may already show another): admitted work plus one more stream passed
    // the budget, and the admitted streams are exactly what had been committed.
    const m = node.log().match(/capacity: refused 640x360@30\.00 at [\d.]+ Mbit\/s -> 1 renditions: work budget full: cpu cpu (\d+)\+(\d+) > (\d+) wu\/s/);
    assert.ok(m, `a refusal for the work budget, with its numbers:\n${node.log().slice(-3000)}`);
    const [held, one, budget] = m.slice(1).map(Number);
    console.log(`     admitted ${admitted.length} of ${TRIES}: ${one} wu/s each; refused at ${held}+${one} > ${budget} wu/s; ` +
      `${early.length} of the ${refused.length} refused at their credentials`);
    assert.ok(Math.abs(one - cost) <= 1, `the refused stream costs what the admitted ones do (${one}, ${cost})`);
    assert.ok(held + one > budget && held <= budget, 'refused only past the budget');
    // committed work, not a busier CPU, filled the node: as many streams as the budget holds
    assert.ok(Math.abs(held - admitted.length * cost) <= admitted.length, `${held} wu/s held by ${admitted.length} streams`);
    assert.strictEqual(admitted.length, Math.floor((budget + 0.5) / cost), 'as many as the budget holds');
    // the admitted streams carry on live (a segment every 2 s) and keep real time
    const worst = [];
    for (let seq = 1; seq <= 3; seq++) {
      const t0 = Date.now();
      const rs = await Promise.all(admitted.map((i) => {
        const s0 = Date.now();
        return postSegment(node, { 'livepeer-segment': segHeader(infos[i], body, seq, profiles) }, body)
          .then((r) => ({ r, ms: Date.now() - s0 }));
      }));
      for (const { r, ms } of rs) {
        assert.strictEqual(r.status, 200);
        const res = decodeResult(r.body);
        assert.ok(res.data, res.error);
        worst.push(ms);
      }
      await sleep(Math.max(0, 2000 - (Date.now() - t0)));
    }
    const slowest = Math.max(...worst);
    console.log(`     slowest of ${worst.length} live segments: ${slowest} ms for 2000 ms of video`);
    assert.ok(slowest < 2000, `admitted streams keep real time (slowest ${slowest} ms)`);
    // what their segments taught the node about the ladder (every segment after a stream's first)
    const ladders = (await adminStatus(node)).Capacity.ladders;
    const lad = ladders.find((l) => l.input.startsWith('640x360@') && l.renditions === 1);
    assert.ok(lad && lad.device === 'cpu', `the streams' ladder in /status: ${JSON.stringify(ladders)}`);
    assert.strictEqual(lad.segments, admitted.length * 3);
    assert.ok(lad.loneRatio > 0 && lad.slope >= 0, JSON.stringify(lad));
    console.log(`     their ladder: ${lad.loneRatio.toFixed(3)} + ${lad.slope.toFixed(3)} u of real time`);
    // streams that end give their room back to one that was refused (all of them end, since the
    // measured real-time ratio may have marked the busy device as behind, refusing new work)
    for (const i of admitted) await unary(node, 'EndTranscodingSession', { auth_token: infos[i].auth_token });
    assert.strictEqual((await adminStatus(node)).Capacity.devices[0].sessions, 0);
    // and the session gauge says so at the next scrape, with no segment since
    const after = (await adminGet(node, '/metrics')).match(/^livepeer_current_sessions_total\{[^}]*\} (\S+)$/m);
    assert.ok(after && Number(after[1]) === 0, `no session left in /metrics: ${after && after[0]}`);
    // (the live part has taught the node what these streams really cost, which on a sanitizer
    // build is more than the model's figure, so the check uses a light rendition that fits
    // whatever the learnt budget: at least a quarter of the configured one)
    const late = infos[refused[0]];
    const light = [{ name: 'P144p30fps16x9', width: 256, height: 144, bitrate: 400000, fps: 30 }];
    // the CPU telemetry counts the work just done until its next sample shows the machine idle
    await waitIdle(node, 40);
    const r = await postSegment(node, { 'livepeer-segment': segHeader(late, body, 0, light) }, body);
    const capLines = () => node.log().split('\n').filter((l) => /capacity|Ended|ession/.test(l)).slice(-12).join('\n');
    assert.strictEqual(r.status, 200, `${r.body}\n${capLines()}`);
    assert.ok(decodeResult(r.body).data, `admitted once a stream ended\n${capLines()}`);
    const lightCost = [...node.log().matchAll(/capacity: admitted .* cost=(\d+)wu\/s/g)].pop()[1];
    console.log(`     a stream refused at full load admitted once the others ended (${lightCost} wu/s)`);
    assert.match(node.log(), /capacity: refused 640x360@30\.00 at [\d.]+ Mbit\/s -> 1 renditions: work budget full/);
    // the operator moves the headroom live: the budget follows at once and /status says so
    const set = await adminPost(node, '/setTargetRealtimeRatio', 'targetRealtimeRatio=0.5');
    assert.deepStrictEqual(set, { status: 200, body: 'Target real-time ratio set to 0.50' });
    const cap = (await adminStatus(node)).Capacity;
    assert.strictEqual(cap.targetRealtimeRatio, 0.5);
    const cpu = cap.devices[0];
    assert.ok(Math.abs(cpu.engines[0].budget - 1000 * 0.5 * cpu.correction) < 1e-6, JSON.stringify(cpu));
    assert.match(node.log(), /capacity: room for \d+ streams of 720p30 -> 360p30 H\.264 at target real-time ratio 0\.50 \(set at run time\)/);
    const bad = await adminPost(node, '/setTargetRealtimeRatio', 'targetRealtimeRatio=1.5');
    assert.strictEqual(bad.status, 400);
    assert.strictEqual((await adminStatus(node)).Capacity.targetRealtimeRatio, 0.5);
  } finally {
    await node.stop();
  }
  // what the ladder taught the node outlives it: the next start on the same data dir knows it
  // before any segment
  const saved = JSON.parse(fs.readFileSync(path.join(node.datadir, 'ladders.json'), 'utf8'));
  const rec = saved.ladders.find((l) => l.inWidth === 640 && l.inHeight === 360 && l.renditions === 1);
  assert.ok(rec && rec.kind === 'cpu', `the ladder in ladders.json: ${JSON.stringify(saved)}`);
  const again = await startNode(['-localWorkers', '0', '-costAdmission=true', '-maxSessions', 'auto',
    '-targetRealtimeRatio', '0.25'], {}, undefined, { datadir: node.datadir });
  try {
    const lad = (await adminStatus(again)).Capacity.ladders.find((l) => l.input.startsWith('640x360@') && l.renditions === 1);
    assert.ok(lad && lad.loneRatio > 0, `restored: ${JSON.stringify(lad)}\n${again.log().slice(-2000)}`);
    assert.strictEqual(lad.segments, rec.n);
    assert.match(again.log(), /capacity: 1 ladders from .*ladders\.json/);
  } finally {
    await again.stop();
  }
});

// Admission by cost with the transcoding in a worker process (-localWorkers auto): the node's
// model admits and refuses new streams as it does in process, the admitted ones go to the
// worker of the device they were placed on (here the CPU's: worker 0), their segments' times
// come back to the model, and an ended stream gives its room back.
test('admission-workers', async () => {
  const body = makeSegment('640x360', 2);
  const node = await startNode(['-localWorkers', 'auto', '-costAdmission=true', '-maxSessions', 'auto',
    '-targetRealtimeRatio', '0.25', '-orchSecret', 's3cret']);
  const profiles = [P240];
  let t = null;
  try {
    for (let i = 0; i < 150 && !/localWorker=0\n/.test(node.log()); i++) await sleep(100);
    assert.match(node.log(), /Got a RegisterTranscoder request .* localWorker=0\n/, 'the worker registered as local worker 0');
    assert.match(node.log(), /Capacity: new streams are admitted by their cost and placed on a device/);
    const infos = [];
    for (let i = 0; i < 16; i++) infos.push(await getOrch(node));
    await waitIdle(node);
    const { admitted, refused } = await firstSegments(node, infos, body, profiles);
    const dev = (await adminStatus(node)).Capacity.devices[0];
    console.log(`     admitted ${admitted.length} of ${infos.length} streams, all transcoded by the worker`);
    assert.ok(admitted.length >= 1 && refused.length >= 1, `the model filled up (${admitted.length} admitted)`);
    assert.strictEqual(dev.sessions, admitted.length, 'the model holds the admitted streams');
    const log = node.log();
    const rates = [...log.matchAll(/capacity: admitted 640x360@30\.00 at ([\d.]+) Mbit\/s -> 1 renditions on cpu/g)].map((m) => Number(m[1]));
    assert.strictEqual(rates.length, admitted.length);
    // each weighed at its segment's rate: the body's bits over its 2000 ms
    const mbps = (body.length * 8) / 2000 / 1000;
    for (const r of rates) assert.ok(Math.abs(r - mbps) <= 0.006, `weighed at ${r} Mbit/s, the segment carries ${mbps.toFixed(3)}`);
    assert.match(log, /capacity: refused 640x360@30\.00 at [\d.]+ Mbit\/s -> 1 renditions: work budget full/);
    // every admitted first segment went to worker 0, none elsewhere
    const sent = [...log.matchAll(/Sent segment to transcoder=\S+ localWorker=(-?\d+)/g)].map((m) => m[1]);
    assert.deepStrictEqual(sent, admitted.map(() => '0'));
    // the worker's time is the segment's engine time, which the real-time check reads
    const engine = [...log.matchAll(/Transcoded segment renditions=1 .* engine=([\d.]+)ms/g)].map((m) => Number(m[1]));
    assert.strictEqual(engine.length, admitted.length);
    assert.ok(engine.every((ms) => ms > 10), `engine times from the worker: ${engine}`);
    // a remote transcoder joins: a stream the node's own devices have no room for goes to it
    const tdir = fs.mkdtempSync(path.join(tmp, 't-'));
    t = spawn(args.lpod, ['-transcoder', '-orchAddr', `127.0.0.1:${node.port}`, '-orchSecret', 's3cret',
      '-maxSessions', '1', '-datadir', tdir, '-cliAddr', '127.0.0.1:0', '-testTranscoder=false'], { stdio: 'ignore' });
    const remoteUp = /Got a RegisterTranscoder request from transcoder=\S+ capacity=1 version=\S+\n/;
    for (let i = 0; i < 150 && !remoteUp.test(node.log()); i++) await sleep(100);
    assert.match(node.log(), remoteUp, 'the remote transcoder registered (not as a local worker)');
    assert.ok(refused.length >= 2, `two refused streams to use (${refused.length})`);
    const spilled = infos[refused[1]];
    const logFrom = node.log().length;
    const sr = await postSegment(node, { 'livepeer-segment': segHeader(spilled, body, 0, profiles) }, body);
    assert.strictEqual(sr.status, 200, `${sr.body}`);
    assert.ok(decodeResult(sr.body).data, `a refused stream goes to the remote transcoder: ${decodeResult(sr.body).error}`);
    assert.match(node.log(), /Sent segment to transcoder=\S+ localWorker=-1 /);
    // no room here is not a refusal when a remote transcoder takes the stream: logged as where
    // it went, not as a refusal
    const spillLog = node.log().slice(logFrom);
    assert.match(spillLog, /capacity: no room here for 640x360@30\.00 at [\d.]+ Mbit\/s -> 1 renditions \([a-z ]+: .*\); a remote transcoder takes it/);
    assert.doesNotMatch(spillLog, /capacity: refused/);
    assert.strictEqual((await adminStatus(node)).Capacity.devices[0].sessions, admitted.length, 'not in the model');
    // the remote transcoder dies: that stream's next segment fails rather than run on the
    // node's own worker, which the model has no room charged for
    t.kill('SIGKILL');
    for (let i = 0; i < 100 && !/Removing remote transcoder peer=/.test(node.log()); i++) await sleep(100);
    const sr2 = await postSegment(node, { 'livepeer-segment': segHeader(spilled, body, 1, profiles) }, body);
    const res2 = sr2.status === 200 ? decodeResult(sr2.body) : { error: `${sr2.status} ${sr2.body}` };
    assert.ok(!res2.data && res2.error, `not transcoded here: ${JSON.stringify(res2)}`);
    const sid = spilled.auth_token.session_id;
    assert.match(node.log(), new RegExp(`Sent segment to transcoder=\\S+ localWorker=-1 taskId=\\d+ sessionID=${sid}`));
    assert.doesNotMatch(node.log(), new RegExp(`Sent segment to transcoder=\\S+ localWorker=0 taskId=\\d+ sessionID=${sid}`));
    await unary(node, 'EndTranscodingSession', { auth_token: spilled.auth_token });
    // ended streams give their room back (the worker is told to close them too)
    for (const i of admitted) await unary(node, 'EndTranscodingSession', { auth_token: infos[i].auth_token });
    assert.strictEqual((await adminStatus(node)).Capacity.devices[0].sessions, 0);
    await waitIdle(node);
    const late = infos[refused[0]];
    const r = await postSegment(node, { 'livepeer-segment': segHeader(late, body, 0, profiles) }, body);
    assert.strictEqual(r.status, 200, `${r.body}`);
    assert.ok(decodeResult(r.body).data, 'a refused stream is admitted once the others ended');
  } finally {
    if (t) {
      const texit = new Promise((res) => (t.exitCode !== null || t.signalCode !== null ? res() : t.on('exit', res)));
      t.kill('SIGTERM');
      await Promise.race([texit, sleep(10000)]);
    }
    await node.stop();
  }
});

(async () => {
  const only = args.only ? args.only.split(',') : null;
  const except = args.except ? args.except.split(',') : [];
  seg1080 = makeSegment('1920x1080', 1);
  seg360 = makeSegment('640x360', 1);
  let failed = 0;
  for (const t of tests) {
    if ((only && !only.includes(t.name)) || except.includes(t.name)) continue;
    const t0 = Date.now();
    try {
      await t.fn();
      console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.name}: ${e.stack || e}`);
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
})();
