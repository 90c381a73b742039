// Load benchmark of admission policies, through the real node (docs/benchmarks.md, "Capacity").
//
// A mix of live streams (1080p -> 4 renditions, 720p -> 3, 360p -> 1) is offered at 0.5x to 3x
// the machine's measured capacity. Each policy runs the same ramp on a fresh node: static
// -maxSessions caps as go-livepeer counts streams (with -costAdmission=false), go-livepeer's
// default cap of 10, and lpod's cost-based admission (-maxSessions auto). For each run it reports
// the work accepted (pixels decoded + encoded by admitted streams) and the share of admitted
// segments that came back within their duration.
//
// usage: node bench_load.js --lpod <release lpod> [--preset veryfast] [--segments 6]
//          [--levels 0.5,1,1.5,2,3] [--capacity N] [--caps 1,2,...|none] [--json FILE]
//          [--logs DIR (each node's log)] [--lpodFlags "-targetRealtimeRatio 0.9" (lpod's run only)]
//          [--alsoLpod "-targetRealtimeRatio 0.7" (a second lpod run with these flags, after the first)]
//          [--alsoBin <another lpod> (the second run's binary, another build to compare with)]
//          [--workers 0|auto|N (-localWorkers; 0, in process, as the recorded figures were run)]
//          [--target R (the headroom to judge by as well; default lpod's -targetRealtimeRatio, 0.8)]
//          [--order blocks|random (default blocks) --seed S]
//          [--sourceMbps M (the 1080p source's rate, the others' by their pixels; default none:
//           x264 veryfast's own choice for the grain, about 55 Mbit/s at 1080p)]
//
// Arrival orders, the same for every policy: "blocks" is one fixed order at every level, blocks
// of three streams with one of each ladder, so every prefix holds the ladders in nearly equal
// numbers and a static cap N is always offered the same first N streams. "random" draws each
// stream's ladder independently at every level (seeded by --seed and the level), so a cap chosen
// in hindsight has to hold whatever mix arrives, as an operator's does. The capacity phase
// always uses the blocks.
//
// Two judgements: "on time" is a segment answered within its duration; "within target" within
// R x its duration, the headroom lpod's controller keeps. The best static cap is reported under
// both, so lpod is compared with the cap an operator would choose by the deadline alone and with
// the one chosen by the same headroom rule lpod applies.
'use strict';

const assert = require('assert');
const { execFileSync } = require('child_process');
const fs = require('fs');
const http2 = require('http2');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const { keccak256 } = require('js-sha3');
const { sleep, freePort, startLpod } = require('./lpod_proc');

const args = { preset: 'veryfast', segments: '6', levels: '0.5,1,1.5,2,3', workers: '0' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.lpod) {
  console.error('usage: node bench_load.js --lpod <lpod> [--preset P] [--segments N] [--levels ...] [--capacity N] [--caps ...] [--json FILE]');
  process.exit(2);
}
const protoFile = args.proto || path.join(__dirname, '../../../src/proto/lp_rpc.proto');
const root = protobuf.loadSync(protoFile);
const SegData = root.lookupType('net.SegData');
const TranscodeResult = root.lookupType('net.TranscodeResult');
const grpcDef = grpc.loadPackageDefinition(
  protoLoader.loadSync(protoFile, { keepCase: true, longs: Number, defaults: true, bytes: Buffer }));

const SEG_MS = 2000;
// a flag string as the node's argv
const flagList = (text) => (text ? text.split(/\s+/).filter(Boolean) : []);
const lpodFlags = flagList(args.lpodFlags);
const flagTarget = lpodFlags.indexOf('-targetRealtimeRatio');
const TARGET = Number(args.target || (flagTarget >= 0 ? lpodFlags[flagTarget + 1] : 0.8));
const SEGMENTS = Number(args.segments);
const ORDER = args.order || 'blocks';
if (!['blocks', 'random'].includes(ORDER)) {
  console.error(`--order: blocks or random, not ${ORDER}`);
  process.exit(2);
}
const SEED = args.seed === undefined ? 1 : Number(args.seed);
if (!Number.isInteger(SEED) || SEED < 0 || (args.seed !== undefined && ORDER !== 'random')) {
  console.error('--seed: a whole number, with --order random');
  process.exit(2);
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lpod-bench-load-'));

const P720 = { name: 'P720p30fps16x9', width: 1280, height: 720, bitrate: 3000000, fps: 30 };
const P480 = { name: 'P480p30fps16x9', width: 854, height: 480, bitrate: 1600000, fps: 30 };
const P360 = { name: 'P360p30fps16x9', width: 640, height: 360, bitrate: 1200000, fps: 30 };
const P240 = { name: 'P240p30fps16x9', width: 426, height: 240, bitrate: 600000, fps: 30 };
// pixels per segment: the source decoded plus the renditions encoded (30 fps, 2 s)
const frames = 30 * SEG_MS / 1000;
const px = (w, h) => w * h * frames;
const LADDERS = {
  A: { size: '1920x1080', profiles: [P720, P480, P360, P240] },
  B: { size: '1280x720', profiles: [P480, P360, P240] },
  C: { size: '640x360', profiles: [P240] },
};
for (const l of Object.values(LADDERS)) {
  const [w, h] = l.size.split('x').map(Number);
  l.work = px(w, h) + l.profiles.reduce((a, p) => a + px(p.width, p.height), 0);
}

// The arrival order of n streams (see "Arrival orders" above); `at` is the level's index.
function mix(n, at = -1) {
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const order = [];
  if (ORDER === 'random' && at >= 0) {
    seed = (SEED * 7919 + at * 104729) % 2147483648;
    for (let i = 0; i < 3; i++) rnd();
    while (order.length < n) order.push('ABC'[Math.floor(rnd() * 3)]);
    return order;
  }
  while (order.length < n) {
    const block = ['A', 'B', 'C'];
    for (let i = 2; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [block[i], block[j]] = [block[j], block[i]];
    }
    order.push(...block);
  }
  return order.slice(0, n);
}

// --sourceMbps: an ingest's rate cap (as a gateway's encoder sets one) instead of the quality
// x264 chooses for the grain, which costs the decoder far more than live streams do
const SOURCE_MBPS = args.sourceMbps === undefined ? 0 : Number(args.sourceMbps);
if (!(SOURCE_MBPS >= 0)) {
  console.error(`--sourceMbps: a rate in Mbit/s, not ${args.sourceMbps}`);
  process.exit(2);
}

function makeSource(size) {
  const file = path.join(tmp, `src${size}.ts`);
  const [w, h] = size.split('x').map(Number);
  const kbps = Math.round(SOURCE_MBPS * 1000 * (w * h) / (1920 * 1080));
  const rate = SOURCE_MBPS ? ['-b:v', `${kbps}k`, '-maxrate', `${kbps}k`, '-bufsize', `${2 * kbps}k`] : [];
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=30`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '2',
    '-vf', 'noise=alls=12:allf=t', '-c:v', 'libx264', '-preset', 'veryfast', ...rate, '-g', '60', '-keyint_min', '60',
    '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-f', 'mpegts', file]);
  return fs.readFileSync(file);
}

async function startNode(extra, bin = args.lpod) {
  const port = await freePort();
  const datadir = fs.mkdtempSync(path.join(tmp, 'node-'));
  const argv = ['-orchestrator', '-transcoder', '-network', 'offchain', '-serviceAddr', `127.0.0.1:${port}`,
    '-datadir', datadir, '-cliAddr', '127.0.0.1:0', '-cpuPreset', args.preset, '-v', args.v || '3', '-localWorkers', args.workers, ...extra];
  // the first start of a cost-admission node calibrates its devices first (about a minute on 2 cores)
  const { child, log, exited } = await startLpod(bin, argv, port, { waitMs: 120000 });
  const cert = fs.readFileSync(path.join(datadir, 'cert.pem'));
  const creds = grpc.credentials.createSsl(cert, null, null, { checkServerIdentity: () => undefined });
  const client = new grpcDef.net.Orchestrator(`127.0.0.1:${port}`, creds);
  // Node's default 10 MB of session memory refuses new streams (ENHANCE_YOUR_CALM) once a few
  // 1080p uploads are in flight on the one connection the streams share
  const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false, maxSessionMemory: 512 });
  session.on('error', () => {});
  return {
    client, session, log,
    async stop() {
      client.close();
      session.close();
      child.kill('SIGTERM');
      if (!(await Promise.race([exited, sleep(15000).then(() => null)]))) child.kill('SIGKILL');
    },
  };
}

const unary = (node, method, req) => new Promise((resolve, reject) => {
  node.client[method](req, { deadline: Date.now() + 10000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
});

function segHeader(info, body, seq, profiles) {
  const msg = {
    manifestId: Buffer.from(`load-${info.auth_token.session_id}`), seq,
    hash: Buffer.from(keccak256.arrayBuffer(body)), duration: SEG_MS,
    capabilities: { bitstring: [0x1003] },
    authToken: { token: info.auth_token.token, sessionId: info.auth_token.session_id,
      expiration: info.auth_token.expiration },
    fullProfiles: profiles,
  };
  return Buffer.from(SegData.encode(SegData.create(msg)).finish()).toString('base64');
}

function postSegment(node, header, body) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const req = node.session.request({ ':method': 'POST', ':path': '/segment', 'content-type': 'video/MP2T',
      'livepeer-payment': '', 'livepeer-segment': header, 'content-length': String(body.length) });
    let status = 0;
    const chunks = [];
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const b = Buffer.concat(chunks);
      let error = status === 200 ? null : (b.toString().trim() || `HTTP ${status}`);
      if (status === 200) {
        const r = TranscodeResult.decode(b);
        if (r.error) error = r.error;
      }
      resolve({ error, ms: Date.now() - t0 });
    });
    req.on('error', (e) => resolve({ error: String(e), ms: Date.now() - t0 }));
    req.end(body);
  });
}

// One live stream: discovery, then a segment every SEG_MS. Refused at discovery or at its first
// segment with OrchestratorCapped: not admitted.
async function stream(node, kind, sources, startAt) {
  await sleep(startAt);
  const lad = LADDERS[kind];
  let info;
  try {
    info = await unary(node, 'GetOrchestrator', { address: Buffer.alloc(20), sig: Buffer.alloc(0),
      capabilities: { bitstring: [0x1003] } });
  } catch (e) {
    return { kind, admitted: false, why: e.details };
  }
  const t0 = Date.now();
  const segs = [];
  for (let seq = 0; seq < SEGMENTS; seq++) {
    const due = t0 + seq * SEG_MS;
    if (Date.now() < due) await sleep(due - Date.now());
    const r = await postSegment(node, segHeader(info, sources[kind], seq, lad.profiles), sources[kind]);
    if (seq === 0 && r.error && /OrchestratorCapped/.test(r.error)) return { kind, admitted: false, why: r.error };
    segs.push(r);
  }
  unary(node, 'EndTranscodingSession', { auth_token: info.auth_token }).catch(() => {});
  return { kind, admitted: true, segs };
}

// One level of offered load on a running node: k streams arriving over one segment duration.
async function level(node, k, sources, at = -1) {
  const kinds = mix(k, at);
  const res = await Promise.all(kinds.map((kind, i) => stream(node, kind, sources, Math.floor(i * SEG_MS / k))));
  let work = 0, segs = 0, onTime = 0, inTarget = 0, failed = 0;
  const lat = [];
  const errors = {};
  for (const r of res) {
    if (!r.admitted) continue;
    for (const s of r.segs) {
      segs++;
      if (s.error) {
        failed++;
        errors[s.error] = (errors[s.error] || 0) + 1;
        continue;
      }
      work += LADDERS[r.kind].work;
      lat.push(s.ms);
      if (s.ms <= SEG_MS) onTime++;
      if (s.ms <= TARGET * SEG_MS) inTarget++;
    }
  }
  lat.sort((a, b) => a - b);
  await sleep(2500); // the node ends the sessions and settles before the next level
  return {
    offered: k, admitted: res.filter((r) => r.admitted).length,
    admittedKinds: res.filter((r) => r.admitted).map((r) => r.kind).join(''),
    segments: segs, failed, onTime, inTarget, work, errors,
    p99: lat.length ? lat[Math.min(lat.length - 1, Math.round(0.99 * (lat.length - 1)))] : 0,
  };
}

async function runPolicy(name, extra, levels, sources, bin) {
  const node = await startNode(extra, bin);
  try {
    const out = [];
    for (const [at, k] of levels.entries()) {
      const r = await level(node, k, sources, at);
      console.log(`  ${name.padEnd(12)} offered ${String(r.offered).padStart(2)} admitted ${String(r.admitted).padStart(2)} ` +
        `(${r.admittedKinds.padEnd(10)}) work ${(r.work / 1e9).toFixed(2)} Gpx  on time ${r.onTime}/${r.segments}` +
        `${r.failed ? ` failed ${r.failed}` : ''}  p99 ${r.p99} ms`);
      for (const [e, n] of Object.entries(r.errors)) console.log(`               ${n} x ${e}`);
      out.push(r);
    }
    return out;
  } finally {
    if (args.logs) fs.mkdirSync(args.logs, { recursive: true });
    if (args.logs) fs.writeFileSync(path.join(args.logs, `${name.replace(/[^\w.]+/g, '-')}.log`), node.log());
    await node.stop();
  }
}

const total = (rs) => rs.reduce((a, r) => ({ work: a.work + r.work, segments: a.segments + r.segments,
  onTime: a.onTime + r.onTime, inTarget: a.inTarget + r.inTarget }), { work: 0, segments: 0, onTime: 0, inTarget: 0 });
const share = (t) => (t.segments ? t.onTime / t.segments : 1);
const shareTarget = (t) => (t.segments ? t.inTarget / t.segments : 1);

(async () => {
  const t0 = Date.now();
  const sources = { A: makeSource('1920x1080'), B: makeSource('1280x720'), C: makeSource('640x360') };
  console.log(`sources: ${Object.entries(sources).map(([k, b]) => `${k} ${(b.length * 8 / 2e6).toFixed(1)} Mbit/s`).join(', ')}`);
  console.log(`lpod load benchmark: preset ${args.preset}, ${SEGMENTS} live segments of ${SEG_MS} ms per stream, ` +
    `${os.cpus().length} CPUs (${os.cpus()[0].model}), load average ${os.loadavg()[0].toFixed(1)}`);
  const uncapped = ['-costAdmission=false', '-testTranscoder=false', '-maxSessions', '1000'];
  // capacity: the most streams of the mix that keep 99% of their segments within duration
  let capacity = Number(args.capacity || 0);
  if (!capacity) {
    const node = await startNode(uncapped);
    try {
      for (let k = 1; k <= 32; k++) {
        const r = await level(node, k, sources);
        console.log(`  capacity     ${k} streams (${mix(k).join('')}): on time ${r.onTime}/${r.segments}, p99 ${r.p99} ms`);
        if (r.onTime < 0.99 * r.segments) break;
        capacity = k;
      }
    } finally {
      await node.stop();
    }
  }
  assert.ok(capacity >= 1, 'the machine keeps at least one stream of the mix in real time');
  const levels = [...new Set(args.levels.split(',').map((x) => Math.max(1, Math.round(Number(x) * capacity))))];
  console.log(`measured capacity: ${capacity} streams of the mix; levels ${levels.join(', ')} streams`);
  console.log(`arrival order ${ORDER}: ${levels.map((k, at) => mix(k, at).join('')).join(', ')}`);
  const caps = args.caps === 'none' ? [] : args.caps ? args.caps.split(',').map(Number)
    : [...Array(Math.max(2, 2 * capacity)).keys()].map((i) => i + 1);
  const runs = {};
  for (const c of caps) {
    runs[`static ${c}`] = await runPolicy(`static ${c}`, ['-costAdmission=false', '-testTranscoder=false',
      '-maxSessions', String(c)], levels, sources);
  }
  if (args.caps !== 'none' && !caps.includes(10)) {
    runs['static 10'] = await runPolicy('static 10', ['-costAdmission=false', '-testTranscoder=false'], levels, sources);
  }
  // lpod's controller: calibrated once at start (its cache lives in the run's data dir)
  // --lpodFlags adds flags to lpod's run only (for example a different -targetRealtimeRatio)
  runs.lpod = await runPolicy('lpod', ['-maxSessions', 'auto', ...lpodFlags], levels, sources);
  // --alsoLpod: the controller with other flags, on the same ramp in the same script
  // --alsoBin: that run on another build
  const alsoFlags = flagList(args.alsoLpod);
  const alsoName = alsoFlags.length || args.alsoBin
    ? ['lpod', args.alsoBin ? `(${args.alsoBin})` : '', ...alsoFlags].filter(Boolean).join(' ') : null;
  if (alsoName) {
    runs[alsoName] = await runPolicy(alsoName, ['-maxSessions', 'auto', ...alsoFlags], levels, sources,
      args.alsoBin || args.lpod);
  }

  const rows = Object.entries(runs).map(([name, rs]) => ({ name, ...total(rs), share: share(total(rs)),
    shareTarget: shareTarget(total(rs)) }));
  const bestBy = (key) => rows.filter((r) => r.name.startsWith('static') && r[key] >= 0.99)
    .sort((a, b) => b.work - a.work)[0] || null;
  const best = bestBy('share');
  const bestT = bestBy('shareTarget');
  const lp = rows.find((r) => r.name === 'lpod');
  console.log(`\npolicy        work accepted (Gpx)   admitted segments on time   within ${TARGET} x duration`);
  for (const r of rows) {
    const marks = [best && r.name === best.name ? 'best static cap' : '',
      bestT && r.name === bestT.name ? `best static cap at ${TARGET}` : ''].filter(Boolean).join(', ');
    console.log(`${r.name.padEnd(13)} ${(r.work / 1e9).toFixed(2).padStart(10)}            ` +
      `${`${(100 * r.share).toFixed(1)}% (${r.onTime}/${r.segments})`.padEnd(24)}  ` +
      `${(100 * r.shareTarget).toFixed(1)}% (${r.inTarget}/${r.segments})${marks ? `  <- ${marks}` : ''}`);
  }
  const summary = {
    preset: args.preset, segments: SEGMENTS, capacity, levels, cpus: os.cpus().length, order: ORDER,
    source_mbps: SOURCE_MBPS || null,
    arrivals: levels.map((k, at) => mix(k, at).join('')),
    best_static: best && best.name, lpod_work_vs_best_static: best ? lp.work / best.work : null,
    lpod_on_time: lp.share,
    target: TARGET, best_static_at_target: bestT && bestT.name,
    lpod_work_vs_best_static_at_target: bestT ? lp.work / bestT.work : null,
    lpod_within_target: lp.shareTarget,
    default10_on_time: rows.find((r) => r.name === 'static 10') ? rows.find((r) => r.name === 'static 10').share : null,
    wall_s: (Date.now() - t0) / 1000, runs,
  };
  const also = alsoName && rows.find((r) => r.name === alsoName);
  if (also) {
    summary.also = { flags: args.alsoLpod || '', bin: args.alsoBin || args.lpod, work_vs_lpod: also.work / lp.work, on_time: also.share,
      within_target: also.shareTarget, work_vs_best_static: best ? also.work / best.work : null };
  }
  if (best) console.log(`\nlpod accepted ${(100 * summary.lpod_work_vs_best_static).toFixed(1)}% of the work of the best static cap (${best.name}), ${(100 * lp.share).toFixed(1)}% on time`);
  else console.log('\nno static cap kept 99% of its segments on time');
  if (bestT) console.log(`lpod accepted ${(100 * summary.lpod_work_vs_best_static_at_target).toFixed(1)}% of the work of the best static cap within ${TARGET} x duration (${bestT.name}), ${(100 * lp.shareTarget).toFixed(1)}% within it`);
  else console.log(`no static cap kept 99% of its segments within ${TARGET} x duration`);
  if (also) {
    console.log(`${alsoName} accepted ${(100 * also.work / lp.work).toFixed(1)}% of lpod's work, ` +
      `${(100 * also.share).toFixed(1)}% on time${best ? `, ${(100 * also.work / best.work).toFixed(1)}% of ${best.name}'s` : ''}`);
  }
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(summary, null, 1));
  fs.rmSync(tmp, { recursive: true, force: true });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
