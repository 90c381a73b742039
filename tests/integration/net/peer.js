// An independent peer for the net server: Node's own HTTP/2, HTTP/1.1, TLS and raw sockets.
// Usage: node peer.js <tls_port> <plain_port> [<capped_port> <short_tls_port> <short_plain_port>]
// capped: a plaintext server with --max-conns 4; short_*: servers with a 1 s handshake timeout,
// 1 s header timeout and 2 s idle timeout (the others keep their defaults, so a loaded machine
// does not turn ordinary pauses into idle closes).
// Checks early headers, gRPC framing and status trailers, and that malformed input gets a
// protocol error or the right status while the server keeps serving.
'use strict';
const http2 = require('node:http2');
const https = require('node:https');
const http = require('node:http');
const net = require('node:net');
const tls = require('node:tls');
const assert = require('node:assert/strict');

const [tlsPort, plainPort, cappedPort, shortTlsPort, shortPlainPort] = process.argv
  .slice(2)
  .map(Number);
const H = '127.0.0.1';
let failures = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

function h2connect(secure, opts = {}) {
  const url = secure ? `https://${H}:${tlsPort}` : `http://${H}:${plainPort}`;
  return new Promise((resolve, reject) => {
    const s = http2.connect(url, { rejectUnauthorized: false, ...opts });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

// One HTTP/2 request: out fills in as frames arrive; done resolves with status, headers,
// trailers, body and the times headers and end came.
function h2start(s, headers, body) {
  const out = { chunks: [], trailers: {} };
  const done = new Promise((resolve, reject) => {
    const req = s.request(headers, body === undefined ? { endStream: true } : {});
    req.on('response', (h) => {
      out.headers = h;
      out.status = h[':status'];
      out.headersAt = Date.now();
    });
    req.on('trailers', (t) => (out.trailers = t));
    req.on('data', (d) => out.chunks.push(d));
    req.on('end', () => {
      out.body = Buffer.concat(out.chunks);
      out.endAt = Date.now();
      resolve(out);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
  return { out, done };
}

const h2req = (s, headers, body) => h2start(s, headers, body).done;

async function waitFor(pred, ms = 3000) {
  const start = Date.now();
  while (!pred() && Date.now() - start < ms) await new Promise((r) => setTimeout(r, 5));
  return pred();
}

function grpcFrame(buf) {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(buf.length, 1);
  return Buffer.concat([h, buf]);
}

function grpcMessages(buf) {
  const out = [];
  let off = 0;
  while (off + 5 <= buf.length) {
    assert.equal(buf[off], 0);
    const n = buf.readUInt32BE(off + 1);
    out.push(buf.subarray(off + 5, off + 5 + n));
    off += 5 + n;
  }
  assert.equal(off, buf.length, 'no partial gRPC frame');
  return out;
}

function grpcCall(s, method, msg) {
  return h2req(
    s,
    {
      ':method': 'POST',
      ':path': method,
      'content-type': 'application/grpc',
      te: 'trailers',
    },
    grpcFrame(Buffer.from(msg))
  );
}

function grpcStatus(r) {
  // trailers-only responses carry the status in the headers
  return r.trailers['grpc-status'] !== undefined ? r.trailers : r.headers;
}

function httpGet(port, path, secure, extra = {}) {
  const mod = secure ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: H, port, path, rejectUnauthorized: false, agent: false, ...extra },
      (res) => {
        const chunks = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) })
        );
      }
    );
    req.on('error', reject);
    req.end(extra.body);
  });
}

// Sends raw bytes; resolves with everything the server sent back until it closed (or timeout).
function raw(bytes, { secure = false, port, waitMs = 3000, alpn } = {}) {
  return new Promise((resolve) => {
    const chunks = [];
    const opts = { host: H, port: port || (secure ? tlsPort : plainPort) };
    const sock = secure
      ? tls.connect({ ...opts, rejectUnauthorized: false, ALPNProtocols: alpn })
      : net.connect(opts);
    let closed = false;
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    }, waitMs);
    sock.on(secure ? 'secureConnect' : 'connect', () => {
      for (const b of [].concat(bytes)) sock.write(b);
    });
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed });
    });
  });
}

function hpackInt(v, prefixBits, first) {
  const max = (1 << prefixBits) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  v -= max;
  while (v >= 128) {
    out.push((v & 127) | 128);
    v >>= 7;
  }
  out.push(v);
  return out;
}

function hpackLiteral(name, value) {
  return Buffer.concat([
    Buffer.from([0x00]),
    Buffer.from(hpackInt(name.length, 7, 0)),
    Buffer.from(name),
    Buffer.from(hpackInt(value.length, 7, 0)),
    Buffer.from(value),
  ]);
}

function h2frame(type, flags, stream, payload) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

// GET /size/7 on stream 1 with n extra headers of len bytes, split over HEADERS + CONTINUATION
// frames; resolves with the DATA payload of stream 1 and whether the server closed.
function rawH2Headers(secure, n, len) {
  const parts = [Buffer.from([0x82, 0x86]), Buffer.from([0x04]), Buffer.from(hpackInt(7, 7, 0))];
  parts.push(Buffer.from('/size/7'));
  parts.push(hpackLiteral(':authority', 'x'));
  for (let i = 0; i < n; i++) parts.push(hpackLiteral(`x-h${i}`, 'v'.repeat(len)));
  const block = Buffer.concat(parts);
  const frames = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), h2frame(4, 0, 0, Buffer.alloc(0))];
  for (let off = 0; off < block.length; off += 16384) {
    const last = off + 16384 >= block.length;
    const chunk = block.subarray(off, off + 16384);
    frames.push(h2frame(off === 0 ? 1 : 9, (off === 0 ? 1 : 0) | (last ? 4 : 0), 1, chunk));
  }
  return new Promise((resolve) => {
    const opts = { host: H, port: secure ? tlsPort : plainPort };
    const sock = secure
      ? tls.connect({ ...opts, rejectUnauthorized: false, ALPNProtocols: ['h2'] })
      : net.connect(opts);
    let buf = Buffer.alloc(0);
    const data = [];
    let closed = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve({ data: Buffer.concat(data), closed });
    };
    const timer = setTimeout(finish, 5000);
    sock.on(secure ? 'secureConnect' : 'connect', () => sock.write(Buffer.concat(frames)));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const flen = buf.readUIntBE(0, 3);
        if (buf.length < 9 + flen) break;
        const type = buf[3];
        const flags = buf[4];
        const sid = buf.readUInt32BE(5) & 0x7fffffff;
        if (type === 0 && sid === 1) data.push(buf.subarray(9, 9 + flen));
        buf = buf.subarray(9 + flen);
        if (sid === 1 && (flags & 1) && (type === 0 || type === 1)) {
          clearTimeout(timer);
          return finish();
        }
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      closed = true;
      clearTimeout(timer);
      finish();
    });
  });
}

async function stillServing() {
  const r = await httpGet(plainPort, '/size/5', false);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 5);
  const t = await httpGet(tlsPort, '/size/5', true);
  assert.equal(t.status, 200);
}

async function main() {
  // ---- HTTP/2 over TLS and h2c
  for (const secure of [true, false]) {
    const tag = secure ? 'h2/TLS' : 'h2c';
    const s = await h2connect(secure);
    await check(`${tag}: ALPN/preface picks HTTP/2`, async () => {
      if (secure) assert.equal(s.alpnProtocol, 'h2');
      const r = await h2req(s, { ':path': '/size/1000' });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, 1000);
      assert.equal(r.headers['content-length'], '1000');
    });
    await check(`${tag}: 2 MB upload echoed, 20 concurrent streams`, async () => {
      const body = Buffer.alloc(2 << 20, 7);
      const rs = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          h2req(s, { ':method': 'POST', ':path': `/echo?i=${i}` }, body)
        )
      );
      for (const [i, r] of rs.entries()) {
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-query'], `i=${i}`);
        assert.ok(r.body.equals(body));
      }
    });
    await check(`${tag}: early 200 arrives before the body exists`, async () => {
      const id = `${tag.replace('/', '')}-${Date.now()}`;
      const st = h2start(s, { ':path': `/held/${id}` });
      // the response headers must come while the handler still holds the body back
      assert.ok(await waitFor(() => st.out.headers), 'headers arrived before release');
      assert.equal(st.out.chunks.length, 0);
      const rel = await h2req(s, { ':path': `/release/${id}` });
      assert.equal(rel.status, 200);
      const r = await st.done;
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'released\n');
    });
    await check(`${tag}: trailers on a streamed body`, async () => {
      const r = await h2req(s, { ':path': '/chunks' });
      assert.equal(r.body.toString(), 'part0\npart1\npart2\npart3\npart4\n');
      assert.equal(r.trailers['x-checksum'], 'done');
    });
    await check(`${tag}: gRPC unary, server-streaming, errors, unknown method`, async () => {
      let r = await grpcCall(s, '/test.Svc/Unary', 'ping');
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], 'application/grpc');
      assert.deepEqual(grpcMessages(r.body).map(String), ['ping']);
      assert.equal(grpcStatus(r)['grpc-status'], '0');
      r = await grpcCall(s, '/test.Svc/Stream', '25');
      const msgs = grpcMessages(r.body).map(String);
      assert.equal(msgs.length, 25);
      assert.equal(msgs[24], 'msg 24');
      assert.equal(r.trailers['grpc-status'], '0');
      r = await grpcCall(s, '/test.Svc/Fail', '');
      assert.equal(grpcStatus(r)['grpc-status'], '2');
      assert.equal(grpcStatus(r)['grpc-message'], 'invalid secret');
      r = await grpcCall(s, '/net.Orchestrator/Nope', '');
      assert.equal(grpcStatus(r)['grpc-status'], '12');
      // a truncated message and a compressed one are refused, not crashed on
      r = await h2req(
        s,
        { ':method': 'POST', ':path': '/test.Svc/Unary', 'content-type': 'application/grpc' },
        Buffer.from([0, 0, 0, 0, 9, 1, 2])
      );
      assert.equal(grpcStatus(r)['grpc-status'], '13');
      r = await h2req(
        s,
        { ':method': 'POST', ':path': '/test.Svc/Unary', 'content-type': 'application/grpc' },
        Buffer.from([1, 0, 0, 0, 1, 1])
      );
      assert.equal(grpcStatus(r)['grpc-status'], '12');
    });
    await check(`${tag}: 60 KiB header accepted`, async () => {
      const r = await h2req(
        s,
        { ':method': 'POST', ':path': '/echo', 'livepeer-payment': 'a'.repeat(60 * 1024) },
        ''
      );
      assert.equal(r.status, 200);
    });
    await check(`${tag}: body over the route cap is 413`, async () => {
      const r = await h2req(s, { ':method': 'POST', ':path': '/small' }, Buffer.alloc(2 << 20));
      assert.equal(r.status, 413);
    });
    await check(`${tag}: client reset mid-upload leaves the server serving`, async () => {
      const req = s.request({ ':method': 'POST', ':path': '/count' });
      req.on('error', () => {});
      req.write(Buffer.alloc(100000));
      await new Promise((r) => setTimeout(r, 50));
      req.close(http2.constants.NGHTTP2_CANCEL);
      const r = await h2req(s, { ':path': '/size/10' });
      assert.equal(r.status, 200);
    });
    s.close();
  }

  // ---- HTTP/1.1
  await check('HTTP/1.1 over TLS (no ALPN) serves /size', async () => {
    const r = await httpGet(tlsPort, '/size/100000', true);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 100000);
    assert.equal(r.headers['content-length'], '100000');
  });
  await check('HTTP/1.1: chunked request body and chunked response with trailer', async () => {
    const r = await new Promise((resolve, reject) => {
      const req = http.request(
        { host: H, port: plainPort, path: '/count', method: 'POST', agent: false },
        (res) => {
          const c = [];
          res.on('data', (d) => c.push(d));
          res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c) }));
        }
      );
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(Buffer.alloc(1000));
      req.end();
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), '10000\n');
    const c = await httpGet(plainPort, '/chunks', false);
    assert.equal(c.headers['transfer-encoding'], 'chunked');
    assert.equal(c.body.toString(), 'part0\npart1\npart2\npart3\npart4\n');
  });
  await check('HTTP/1.1: early 200 headers before the body', async () => {
    const id = `h1-${Date.now()}`;
    let headersAt = 0;
    const p = new Promise((resolve, reject) => {
      const req = http.request({ host: H, port: plainPort, path: `/held/${id}`, agent: false }, (res) => {
        headersAt = Date.now();
        const c = [];
        res.on('data', (d) => c.push(d));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(c) }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.ok(await waitFor(() => headersAt), 'headers before release');
    const rel = await httpGet(plainPort, `/release/${id}`, false);
    assert.equal(rel.status, 200);
    const r = await p;
    assert.equal(r.body.toString(), 'released\n');
  });
  await check('HTTP/1.0: streamed body ends with the connection, not chunked', async () => {
    const r = await raw(['GET /chunks HTTP/1.0\r\n\r\n']);
    const text = r.data.toString('latin1');
    assert.ok(r.closed);
    assert.doesNotMatch(text, /Transfer-Encoding/i);
    assert.ok(text.endsWith('\r\n\r\npart0\npart1\npart2\npart3\npart4\n'), text);
  });
  await check('HTTP/1.1: keep-alive and pipelining on one socket', async () => {
    const req = 'GET /size/3 HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = await raw([req + req + 'GET /size/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'], {
      waitMs: 3000,
    });
    const text = r.data.toString('latin1');
    assert.equal(text.split('HTTP/1.1 200 OK').length - 1, 3);
    assert.ok(r.closed, 'closed after Connection: close');
  });

  // ---- HTTP/2 header lists built by hand (Node's client refuses to send big ones)
  for (const secure of [false, true]) {
    const tag = secure ? 'h2/TLS' : 'h2c';
    await check(`${tag}: 200 KiB header list served`, async () => {
      const r = await rawH2Headers(secure, 4, 50 * 1024);
      assert.equal(r.data.toString('latin1'), '\x00\x01\x02\x03\x04\x05\x06');
    });
    await check(`${tag}: 400 KiB header list gets 431`, async () => {
      const r = await rawH2Headers(secure, 8, 50 * 1024);
      assert.match(r.data.toString('latin1'), /Request Header Fields Too Large/);
    });
    await check(`${tag}: 4 MiB CONTINUATION stream closes the connection`, async () => {
      const r = await rawH2Headers(secure, 80, 50 * 1024);
      assert.ok(r.closed);
      assert.equal(r.data.length, 0);
    });
  }

  await check('h2c: streams beyond the concurrent limit are refused', async () => {
    const frames = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), h2frame(4, 0, 0, Buffer.alloc(0))];
    // POST /count without END_STREAM keeps each stream open waiting for its body
    const block = Buffer.concat([Buffer.from([0x83, 0x86, 0x04, 6]), Buffer.from('/count')]);
    for (let i = 0; i < 300; i++) frames.push(h2frame(1, 4, 2 * i + 1, block));
    const counts = await new Promise((resolve) => {
      const sock = net.connect({ host: H, port: plainPort });
      let buf = Buffer.alloc(0);
      const seen = { rst: 0, goaway: 0 };
      const t = setTimeout(() => {
        sock.destroy();
        resolve(seen);
      }, 2000);
      sock.on('connect', () => sock.write(Buffer.concat(frames)));
      sock.on('error', () => {});
      sock.on('close', () => {
        clearTimeout(t);
        resolve(seen);
      });
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          if (buf[3] === 3) seen.rst++;
          if (buf[3] === 7) seen.goaway++;
          buf = buf.subarray(9 + buf.readUIntBE(0, 3));
        }
      });
    });
    assert.ok(counts.rst >= 44 || counts.goaway > 0, JSON.stringify(counts));
  });

  // ---- malformed input
  await check('garbage bytes on the plaintext port: 400 and close', async () => {
    const r = await raw([Buffer.from('\x16\x03\x01garbage\r\n\r\n\x00\xff')]);
    assert.ok(r.closed);
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400/);
  });
  await check('bad chunked encoding: 400', async () => {
    const r = await raw([
      'POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n',
    ]);
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400/);
    assert.ok(r.closed);
  });
  await check('oversized HTTP/1.1 header block: 431', async () => {
    const r = await raw([`GET /size/1 HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(300000)}\r\n\r\n`]);
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 431/);
  });
  await check('bad HTTP/2 frames after the preface: GOAWAY and close', async () => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    // DATA on stream 0 is a connection error
    const bad = Buffer.from([0, 0, 4, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    const r = await raw([Buffer.concat([preface, settings, bad])]);
    assert.ok(r.closed);
    assert.ok(r.data.includes(Buffer.from([7])), 'a GOAWAY frame came back');
    const r2 = await raw([Buffer.concat([preface, Buffer.alloc(64, 0xff)])]);
    assert.ok(r2.closed);
  });
  await check('garbage instead of a TLS handshake: closed', async () => {
    const r = await raw([Buffer.from('GET / HTTP/1.1\r\n\r\n')], { port: tlsPort });
    assert.ok(r.closed);
  });
  await check('garbage inside TLS after ALPN h2: closed', async () => {
    const r = await raw([Buffer.alloc(200, 0x41)], { secure: true, alpn: ['h2'] });
    assert.ok(r.closed);
  });
  // ---- slow and idle clients
  if (shortTlsPort && shortPlainPort) {
    await check('silent TCP client on the TLS port is dropped (handshake timeout)', async () => {
      const t0 = Date.now();
      const r = await raw([], { port: shortTlsPort, waitMs: 8000 });
      assert.ok(r.closed);
      assert.ok(Date.now() - t0 < 7000);
    });
    await check('slowloris headers are cut off (header timeout)', async () => {
      const t0 = Date.now();
      const sock = net.connect({ host: H, port: shortPlainPort });
      sock.on('error', () => {});
      const closed = new Promise((res) => sock.on('close', res));
      sock.write('GET /size/1 HTTP/1.1\r\n');
      const drip = setInterval(() => sock.write('X-A: b\r\n'), 200);
      await Promise.race([closed, new Promise((r) => setTimeout(r, 8000))]);
      clearInterval(drip);
      assert.ok(sock.destroyed || sock.closed, 'closed');
      assert.ok(Date.now() - t0 < 7000);
      sock.destroy();
    });
    await check('idle keep-alive connection is closed (idle timeout)', async () => {
      const r = await raw(['GET /size/1 HTTP/1.1\r\nHost: x\r\n\r\n'], {
        port: shortPlainPort,
        waitMs: 8000,
      });
      assert.ok(r.closed);
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 200/);
    });
  }
  if (cappedPort) {
    await check('connections over --max-conns are refused', async () => {
      const socks = [];
      const closedCount = { n: 0 };
      for (let i = 0; i < 8; i++) {
        const s = net.connect({ host: H, port: cappedPort });
        s.on('error', () => {});
        s.on('close', () => closedCount.n++);
        socks.push(s);
        await new Promise((r) => s.on('connect', r));
      }
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(closedCount.n >= 4, `closed ${closedCount.n}`);
      for (const s of socks) s.destroy();
      await new Promise((r) => setTimeout(r, 300));
      const ok = await httpGet(cappedPort, '/size/2', false);
      assert.equal(ok.status, 200);
    });
  }
  await check('server keeps serving after all that', stillServing);

  if (failures) {
    console.log(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('all checks passed');
}

main().catch((e) => {
  console.log('FAIL', e);
  process.exit(1);
});
