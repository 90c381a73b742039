// On-chain payments end to end: lpod on the local Livepeer chain (../chain/chain.js) paid by a
// test gateway written with ethers that follows go-livepeer's sender rules (pm/sender.go,
// core/accounting.go): it signs its GetOrchestrator request and its segments, takes ticket params
// and price from each OrchestratorInfo, checks them as go's sender does, sizes its payments with
// the pre-pay estimate and ticket EV, numbers nonces from 1 per params set and keeps the exact
// rational balance.
//
// What it shows: 20 paid segments; the session's final balance in lpod's "Debited fees" log line
// (printed at -v 5) equals the gateway's exact rational; every payment rejection answered with
// go's status and text; winning tickets stored in <datadir>/lpod_payments.sqlite3 before the
// responses complete, surviving kill -9; params issued before the restart still paying after it,
// with their used nonces still refused; winners redeemed on chain (the gateway's deposit falls).
//
// usage (from ctest): run_with_chain.sh node pay_e2e.js --lpod <binary> --proto <lp_rpc.proto>
//
// Benchmark mode (not a test): --bench N sends N segments on one session, alternating a payment
// of 10 tickets with one of no tickets (paid for by the credit already there), and prints what
// the payment added: the node's own split (lpod_payment_seconds: the checks on the loop, then
// the wait for the durable store after the answer was ready) and the client's round trips of
// paid against unpaid segments.
//   run_with_chain.sh node --expose-gc pay_e2e.js --lpod build-release/lpod \
//     --proto src/proto/lp_rpc.proto --bench 400
'use strict';

const assert = require('assert');
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const http2 = require('http2');
const os = require('os');
const path = require('path');
const { createRequire } = require('module');

const chainDir = path.join(__dirname, '..', 'chain');
const orchDir = path.join(__dirname, '..', 'orch');
function need(dir, mod) {
  try {
    return createRequire(path.join(dir, 'package.json'))(mod);
  } catch (e) {
    console.log(`SKIP: ${mod} is missing in ${dir}/node_modules; run 'npm install' in ${dir}`);
    process.exit(77);
  }
}
const ethers = need(chainDir, 'ethers');
const grpc = need(orchDir, '@grpc/grpc-js');
const protoLoader = need(orchDir, '@grpc/proto-loader');
const protobuf = need(orchDir, 'protobufjs');
const { sleep, freePort, startLpod } = require(path.join(orchDir, 'lpod_proc.js'));

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.lpod || !args.proto || !process.env.LPOD_CHAIN_JSON) {
  console.error('usage: LPOD_CHAIN_JSON=... node pay_e2e.js --lpod <binary> --proto <lp_rpc.proto>');
  process.exit(2);
}
const chain = JSON.parse(fs.readFileSync(process.env.LPOD_CHAIN_JSON, 'utf8'));
const root = new protobuf.Root().loadSync(args.proto, { keepCase: true });
const SegData = root.lookupType('net.SegData');
const Payment = root.lookupType('net.Payment');
const TranscodeResult = root.lookupType('net.TranscodeResult');
const grpcDef = grpc.loadPackageDefinition(
  protoLoader.loadSync(args.proto, { keepCase: true, longs: String, defaults: true, bytes: Buffer }));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lpod-pay-e2e-'));
const t0 = Date.now();
const say = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const M = (1n << 256n) - 1n; // maxWinProb
const PRICE_PER_UNIT = 250000000n;
const TICKET_EV = 100000000000000n; // 1e14: with -maxFaceValue 2e15 one ticket in twenty wins
const MAX_FACE_VALUE = 2000000000000000n;
// The gateway's -maxTicketEV: go's default (3e12) is below what this test's node asks for, so
// the test gateway is configured as an operator would be for such an orchestrator.
const MAX_TICKET_EV = 2n * TICKET_EV;
const PROFILE = { name: 'P144p30fps16x9', width: 256, height: 144, bitrate: 400000, fps: 30, fpsDen: 1 };
const CAPS = { bitstring: ['4099'] }; // h264, mpegts, auth token

// ---- exact rationals ----------------------------------------------------------------------------
const abs = (a) => (a < 0n ? -a : a);
const gcd = (a, b) => { a = abs(a); b = abs(b); while (b) [a, b] = [b, a % b]; return a; };
const rat = (n, d = 1n) => { if (d < 0n) { n = -n; d = -d; } const g = gcd(n, d) || 1n; return { n: n / g, d: d / g }; };
const radd = (a, b) => rat(a.n * b.d + b.n * a.d, a.d * b.d);
const rsub = (a, b) => radd(a, { n: -b.n, d: b.d });
const rmul = (a, b) => rat(a.n * b.n, a.d * b.d);
const rcmp = (a, b) => { const x = a.n * b.d - b.n * a.d; return x < 0n ? -1 : x > 0n ? 1 : 0; };
const rstr = (a) => `${a.n}/${a.d}`;
const big = (buf) => (buf && buf.length ? BigInt('0x' + Buffer.from(buf).toString('hex')) : 0n);

// ---- chain --------------------------------------------------------------------------------------
const provider = new ethers.JsonRpcProvider(chain.url, undefined, { staticNetwork: true, pollingInterval: 50 });
const deployer = new ethers.NonceManager(new ethers.Wallet(chain.accounts.deployer.privateKey, provider));
const rounds = new ethers.Contract(chain.addresses.RoundsManager, [
  'function setRoundLength(uint256)', 'function initializeRound()',
  'function currentRound() view returns (uint256)', 'function lastInitializedRound() view returns (uint256)',
], deployer);
const broker = new ethers.Contract(chain.addresses.TicketBroker, [
  'function getSenderInfo(address) view returns (tuple(uint256 deposit, uint256 withdrawRound) sender, tuple(uint256 fundsRemaining, uint256 claimedInCurrentRound) reserve)',
  'function setUnlockPeriod(uint256)', 'function unlock()',
], provider);
const mine = async (n) => { for (let i = 0; i < n; i++) await provider.send('evm_mine', []); };
async function initRoundIfNeeded() {
  if ((await rounds.currentRound()) > (await rounds.lastInitializedRound()))
    await (await rounds.initializeRound()).wait();
}
// ---- lpod ---------------------------------------------------------------------------------------
const datadir = path.join(tmp, 'data');
fs.mkdirSync(datadir);
const dbFile = path.join(datadir, 'lpod_payments.sqlite3');

let cliPort = 0; // the admin API's port, kept across the restart
function lpodArgs(port, extra) {
  return ['-cliAddr', `127.0.0.1:${cliPort}`, '-monitor', '-orchestrator', '-transcoder', '-testTranscoder=false', '-costAdmission=false', '-network', 'devenv', '-ethUrl', chain.url,
    '-ethController', chain.addresses.Controller, '-ethKeystorePath', chain.keystore.dir,
    '-ethPassword', chain.keystore.password, '-ticketEV', String(TICKET_EV),
    '-maxFaceValue', String(MAX_FACE_VALUE), '-blockPollingInterval', '200ms',
    '-serviceAddr', `127.0.0.1:${port}`, '-datadir', datadir, '-v', '5', ...extra];
}

async function startNode(port, extra = ['-pricePerUnit', String(PRICE_PER_UNIT)]) {
  const { child, log, exited } = await startLpod(args.lpod, lpodArgs(port, extra), port, { waitMs: 30000 });
  const cert = fs.readFileSync(path.join(datadir, 'cert.pem'));
  const creds = grpc.credentials.createSsl(cert, null, null, { checkServerIdentity: () => undefined });
  const client = new grpcDef.net.Orchestrator(`127.0.0.1:${port}`, creds);
  const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  session.on('error', () => {});
  return {
    child, client, session, exited, log,
    close() { client.close(); session.close(); },
  };
}

// ---- the gateway --------------------------------------------------------------------------------
const wallet = new ethers.Wallet(chain.accounts.gateway.privateKey);
const senderBytes = Buffer.from(ethers.getBytes(wallet.address));
const signHash = (hashHex) => Buffer.from(ethers.getBytes(wallet.signMessageSync(ethers.getBytes(hashHex))));
const nonces = new Map(); // recipientRandHash -> last nonce (go's sender pre-increments from 0)

function getOrchestrator(node) {
  const sig = signHash(ethers.keccak256(ethers.toUtf8Bytes(wallet.address)));
  return new Promise((resolve, reject) => {
    node.client.GetOrchestrator({ address: senderBytes, sig, capabilities: CAPS },
      { deadline: Date.now() + 20000 }, (err, info) => (err ? reject(err) : resolve(info)));
  });
}

// go's sender.validateTicketParams plus the price check of validatePrice.
async function checkParams(info, initialPrice) {
  const tp = info.ticket_params;
  assert(tp && info.price_info, 'OrchestratorInfo carries ticket params and a price');
  const block = BigInt(await provider.getBlockNumber());
  assert(big(tp.expiration_block) - block > 1n, 'params expire more than one block ahead');
  const fv = big(tp.face_value), wp = big(tp.win_prob);
  const ev = rat(fv * wp, M);
  assert(rcmp(ev, rat(MAX_TICKET_EV)) <= 0, `ticket EV ${rstr(ev)} above max`);
  assert(rcmp(ev, rat(fv)) < 0, 'ticket EV below face value');
  const si = await broker.getSenderInfo(wallet.address);
  assert(fv <= si.sender.deposit, 'face value covered by the deposit');
  assert(Buffer.from(tp.recipient).equals(Buffer.from(info.address)), 'recipient is the node');
  const price = rat(BigInt(info.price_info.pricePerUnit), BigInt(info.price_info.pixelsPerUnit));
  assert(price.n > 0n, 'a positive price');
  if (initialPrice) assert(rcmp(price, rmul(initialPrice, rat(2n))) <= 0, 'price within 2x of the first');
  return { ev, price };
}

function ticketHash(tp, exp, nonce) {
  const aux = ethers.concat([ethers.zeroPadValue(ethers.toBeHex(BigInt(exp.creation_round)), 32),
    exp.creation_round_block_hash]);
  return ethers.solidityPackedKeccak256(
    ['address', 'address', 'uint256', 'uint256', 'uint256', 'bytes32', 'bytes'],
    [ethers.getAddress(ethers.hexlify(tp.recipient)), wallet.address, big(tp.face_value),
      big(tp.win_prob), nonce, ethers.hexlify(tp.recipient_rand_hash), aux]);
}

// A Payment as go's genPayment builds it; over lets a case break one part.
function payment(info, n, over = {}) {
  const tp = over.params || info.ticket_params;
  const exp = tp.expiration_params;
  const key = Buffer.from(tp.recipient_rand_hash).toString('hex');
  const tickets = [];
  for (let i = 0; i < n; i++) {
    const nonce = over.nonces ? over.nonces[i] : (nonces.get(key) || 0) + 1;
    if (!over.nonces) nonces.set(key, nonce);
    tickets.push({ sender_nonce: nonce, sig: signHash(ticketHash(tp, exp, nonce)) });
  }
  const msg = {
    ticket_params: {
      recipient: over.recipient || tp.recipient, face_value: tp.face_value, win_prob: tp.win_prob,
      recipient_rand_hash: tp.recipient_rand_hash, seed: over.seed || tp.seed, expiration_block: tp.expiration_block,
    },
    sender: over.sender !== undefined ? over.sender : senderBytes,
    expiration_params: over.noExpiration ? undefined : {
      creation_round: exp.creation_round, creation_round_block_hash: exp.creation_round_block_hash,
    },
    ticket_sender_params: tickets,
    expected_price: over.noPrice ? undefined
      : over.price || { pricePerUnit: info.price_info.pricePerUnit, pixelsPerUnit: info.price_info.pixelsPerUnit },
  };
  if (over.badSig) tickets[over.badSig - 1].sig[5] ^= 0x55;
  const ev = rat(big(tp.face_value) * big(tp.win_prob), M);
  return { header: Buffer.from(Payment.encode(Payment.fromObject(msg)).finish()).toString('base64'),
    credit: rmul(ev, rat(BigInt(n))), nonces: tickets.map((t) => t.sender_nonce) };
}

function segHeader(info, body, seq) {
  const hash = Buffer.from(ethers.getBytes(ethers.keccak256(body)));
  const manifestId = Buffer.from('pay-e2e');
  const seqWord = Buffer.from(ethers.getBytes(ethers.zeroPadValue(ethers.toBeHex(seq), 32)));
  const flat = Buffer.concat([manifestId, seqWord, hash,
    Buffer.from(ethers.keccak256(ethers.toUtf8Bytes(PROFILE.name)).slice(2, 10))]);
  const msg = {
    manifestId, seq, hash, duration: 2000, capabilities: CAPS, fullProfiles: [PROFILE],
    auth_token: { token: info.auth_token.token, session_id: info.auth_token.session_id,
      expiration: info.auth_token.expiration },
    sig: signHash(ethers.keccak256(flat)),
  };
  return Buffer.from(SegData.encode(SegData.fromObject(msg)).finish()).toString('base64');
}

function postSegment(node, seg, pay, body) {
  return new Promise((resolve, reject) => {
    const req = node.session.request({ ':method': 'POST', ':path': '/segment', 'content-type': 'video/MP2T',
      'livepeer-segment': seg, 'livepeer-payment': pay, 'content-length': String(body.length) });
    let status = 0;
    const chunks = [];
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    req.end(body);
  });
}

// The pre-pay estimate of go's gateway: W×H×fps×ceil(duration)×1.02 pixels at the price.
const minCredit = (price) => rmul(rat(BigInt(PROFILE.width * PROFILE.height * PROFILE.fps * 2) * 102n, 100n), price);

function makeSegment() {
  const file = path.join(tmp, 'in.ts');
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=30', '-t', '2',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '60', '-pix_fmt', 'yuv420p', '-f', 'mpegts', file]);
  return fs.readFileSync(file);
}

const winnersInLog = (log) => [...log.matchAll(/Received winning ticket .* sig=0x([0-9a-f]{130})/g)].map((m) => m[1]);
const sql = (q) => execFileSync('sqlite3', [dbFile, q]).toString().trim();
const storedSigs = () => new Set(sql('SELECT lower(hex(sig)) FROM ticketQueue;').split('\n').filter(Boolean));

async function expectReject(node, info, seq, pay, body, status, text, what) {
  const r = await postSegment(node, segHeader(info, body, seq), pay, body);
  const got = r.body.toString().trim();
  assert.strictEqual(r.status, status, `${what}: status ${r.status} ${got}`);
  if (text instanceof RegExp) assert.match(got, text, what);
  else assert.strictEqual(got, text, what);
  say(`ok   rejection: ${what} -> ${r.status} ${got}`);
}

const pct = (a, q) => { const v = [...a].sort((x, y) => x - y); return v[Math.min(v.length - 1, Math.floor(q * v.length))]; };

async function bench(body, count) {
  await (await rounds.setRoundLength(100)).wait();
  await initRoundIfNeeded();
  const port = await freePort();
  // a low price: ten tickets pay for many segments, so every other one can go without tickets
  const node = await startNode(port, ['-pricePerUnit', '1000']);
  let info = await getOrchestrator(node);
  const paid = [], unpaid = [];
  for (let seq = 0; seq < count; seq++) {
    // first a paid one so that there is credit for the unpaid one after it
    const n = seq % 2 === 0 ? 10 : 0;
    const pay = payment(info, n);
    // signing allocates a lot; with --expose-gc its garbage is collected before the clock starts
    if (global.gc) global.gc();
    const t = process.hrtime.bigint();
    const r = await postSegment(node, segHeader(info, body, seq), pay.header, body);
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    assert.strictEqual(r.status, 200, `segment ${seq}: ${r.status} ${r.body}`);
    const res = TranscodeResult.decode(r.body);
    assert(res.data, `segment ${seq}: ${res.error}`);
    (n ? paid : unpaid).push(ms);
    info = { ...info, ...TranscodeResult.toObject(res, { longs: String, bytes: Buffer, defaults: true }).info, auth_token: info.auth_token };
  }
  const lines = [...node.log().matchAll(/Segment payment tickets=10 check=([\d.]+)ms store_wait=([\d.]+)ms/g)];
  const check = lines.map((m) => Number(m[1])), wait = lines.map((m) => Number(m[2]));
  const total = lines.map((m) => Number(m[1]) + Number(m[2]));
  const f = (a) => `p50 ${pct(a, 0.5).toFixed(3)} ms, p90 ${pct(a, 0.9).toFixed(3)} ms, max ${Math.max(...a).toFixed(3)} ms`;
  console.log(`segments of 10 tickets: ${lines.length}`);
  console.log(`  node, checks on the loop:       ${f(check)}`);
  console.log(`  node, wait for the store:       ${f(wait)}`);
  console.log(`  node, payment total:            ${f(total)}`);
  console.log(`  client round trip, 10 tickets:  ${f(paid)}`);
  console.log(`  client round trip, no tickets:  ${f(unpaid)}`);
  console.log(`  client p50 difference:          ${(pct(paid, 0.5) - pct(unpaid, 0.5)).toFixed(3)} ms`);
  node.child.kill('SIGTERM');
  await Promise.race([node.exited, sleep(10000)]);
  node.close();
}

async function main() {
  const body = makeSegment();
  if (args.bench) return bench(body, parseInt(args.bench, 10));
  cliPort = await freePort();
  // Ticket params live 40 blocks; rounds of 100 blocks keep them redeemable (validity 2 rounds).
  await (await rounds.setRoundLength(100)).wait();
  await initRoundIfNeeded();
  const deposit0 = (await broker.getSenderInfo(wallet.address)).sender.deposit;

  // An on-chain node without -pricePerUnit refuses to start, as go-livepeer does.
  {
    const child = spawn(args.lpod, lpodArgs(await freePort(), []), { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    assert.notStrictEqual(code, 0, 'exits with an error');
    assert.match(log, /-pricePerUnit must be set/);
    say('ok   no -pricePerUnit: refused');
  }

  const port = await freePort();
  let node = await startNode(port);

  // ---- 20 paid segments on one session ----
  let info = await getOrchestrator(node);
  const session = info.auth_token.session_id;
  const first = await checkParams(info);
  let balance = rat(0n);
  const oldInfos = [];
  let firstPay = null;
  for (let seq = 0; seq < 20; seq++) {
    const { ev, price } = await checkParams(info, first.price);
    const gap = rsub(minCredit(price), balance);
    // StageUpdate: ceil((minCredit - existing credit) / EV) tickets
    const num = gap.n * ev.d, den = gap.d * ev.n;
    const n = gap.n > 0n ? Number((num + den - 1n) / den) : 0;
    const pay = payment(info, Math.max(n, 1));
    if (seq === 0) firstPay = pay;
    const r = await postSegment(node, segHeader(info, body, seq), pay.header, body);
    assert.strictEqual(r.status, 200, `segment ${seq}: ${r.status} ${r.body}`);
    const res = TranscodeResult.toObject(TranscodeResult.decode(r.body), { longs: String, bytes: Buffer, defaults: true });
    assert(res.data, `segment ${seq} transcoded: ${res.error}`);
    assert.strictEqual(res.data.sig.length, 65, 'TranscodeData is signed');
    balance = radd(balance, pay.credit);
    const pixels = res.data.segments.reduce((a, s) => a + BigInt(s.pixels), 0n);
    balance = rsub(balance, rmul(rat(pixels), price));
    oldInfos.push(info);
    // the info of each result carries fresh params at the session's price
    info = { ...info, ...res.info, auth_token: info.auth_token };
    assert(res.info.ticket_params && res.info.price_info, 'result info has params and price');
    assert.strictEqual(rcmp(rat(BigInt(res.info.price_info.pricePerUnit), BigInt(res.info.price_info.pixelsPerUnit)), price), 0);
  }
  const debits = [...node.log().matchAll(new RegExp(`Debited fees .* manifestID=${session} .* balance=(-?\\d+/\\d+)`, 'g'))];
  assert.strictEqual(debits.length, 20, 'one debit per segment');
  assert.strictEqual(debits[19][1], rstr(balance), 'final balance is exact');
  say(`ok   20 segments paid; balance ${rstr(balance)}`);
  // every paid segment is timed in the node's payment histogram
  const metrics = await (await fetch(`http://127.0.0.1:${cliPort}/metrics`)).text();
  for (const part of ['check', 'store_wait'])
    assert.match(metrics, new RegExp(`^lpod_payment_seconds_count\\{[^}]*part="${part}"\\} 20$`, 'm'), `payment ${part} timed`);

  // ---- rejections (spec/payments.md §3) ----
  const other = await getOrchestrator(node);
  const addr = wallet.address;
  let seq = 100;
  await expectReject(node, other, seq++, payment(other, 1, { badSig: 1 }).header, body, 400,
    'invalid ticket signature', 'bad signature');
  const stranger = ethers.Wallet.createRandom().address;
  await expectReject(node, other, seq++, payment(other, 1, { recipient: Buffer.from(ethers.getBytes(stranger)) }).header, body, 400,
    new RegExp(`^orchestrator ${stranger} is inactive in round \\d+, cannot process payments$`), 'recipient not an active orchestrator');
  // an active orchestrator on chain (step 3 passes) that is not this node (step C1)
  const orch2 = chain.accounts.orchestrator2.address;
  await expectReject(node, other, seq++, payment(other, 1, { recipient: Buffer.from(ethers.getBytes(orch2)) }).header, body, 400,
    'invalid ticket recipient', 'recipient another active orchestrator');
  const pi = other.price_info;
  await expectReject(node, other, seq++, payment(other, 1, { price: { pricePerUnit: String(BigInt(pi.pricePerUnit) + 1n), pixelsPerUnit: pi.pixelsPerUnit } }).header, body, 400,
    `invalid expected price sent with payment err="expected price ${BigInt(pi.pricePerUnit) + 1n}/${pi.pixelsPerUnit} is not the quoted price ${pi.pricePerUnit}/${pi.pixelsPerUnit}"`, 'wrong price');
  await expectReject(node, other, seq++, payment(other, 1, { seed: Buffer.from('0badseed', 'hex') }).header, body, 400,
    'invalid recipientRand for ticket recipientRandHash', 'tampered params');
  // the segment signature is checked against Payment.sender before any ticket, as in go
  await expectReject(node, other, seq++, payment(other, 1, { sender: Buffer.alloc(0) }).header, body, 403,
    'ErrSegSig', 'no sender');
  // so the zero sender of step C2 never gets that far either: no key signs for it
  await expectReject(node, other, seq++, payment(other, 1, { sender: Buffer.alloc(20) }).header, body, 403,
    'ErrSegSig', 'zero sender');
  await expectReject(node, other, seq++, payment(other, 1, { noExpiration: true }).header, body, 400,
    'missing expiration params in payment', 'no expiration params');
  await expectReject(node, other, seq++, payment(other, 0).header, body, 400, 'Insufficient balance', 'insufficient balance');
  await expectReject(node, info, seq++, firstPay.header, body, 400,
    `invalid ticket senderNonce: already seen sender=${addr} nonce=${firstPay.nonces[firstPay.nonces.length - 1]}`, 'replayed nonces');
  // params past their expiration block (40 blocks) are refused
  const stale = oldInfos[oldInfos.length - 1];
  await mine(41);
  await initRoundIfNeeded();
  await sleep(1500); // a few of the node's 200 ms block polls
  await expectReject(node, other, seq++, payment(stale, 1).header, body, 400, 'TicketParams expired', 'expired params');
  // the expected price comes before any ticket (spec §3.1 step 4)
  await expectReject(node, other, seq++, payment(other, 1, { noPrice: true }).header, body, 400,
    'invalid expected price sent with payment err="expected price is nil"', 'no expected price');
  await expectReject(node, other, seq++, payment(other, 1, { price: { pricePerUnit: pi.pricePerUnit, pixelsPerUnit: '0' } }).header, body, 400,
    'invalid expected price sent with payment err="pixels per unit is 0"', 'pixels per unit 0');

  // ---- kill -9: stored winners survive, outstanding params keep working ----
  const s3 = await getOrchestrator(node);
  const kept = s3.ticket_params;
  let r = await postSegment(node, segHeader(s3, body, 200), payment(s3, 12).header, body);
  assert.strictEqual(r.status, 200, `paid before the kill: ${r.body}`);
  const won = winnersInLog(node.log());
  node.child.kill('SIGKILL');
  await node.exited;
  node.close();
  const stored = storedSigs();
  assert(won.length > 0, 'some tickets won');
  for (const w of won) assert(stored.has(w), `winning ticket ${w.slice(0, 16)}… stored`);
  say(`ok   kill -9: all ${won.length} winning tickets stored`);

  node = await startNode(port);
  assert.match(node.log(), /nonceSets=[1-9]/, 'nonce sets restored');
  const s4 = await getOrchestrator(node);
  const oldKey = Buffer.from(kept.recipient_rand_hash).toString('hex');
  r = await postSegment(node, segHeader(s4, body, 300), payment(s4, 12, { params: kept }).header, body);
  assert.strictEqual(r.status, 200, `params from before the restart: ${r.status} ${r.body}`);
  assert(TranscodeResult.decode(r.body).data, 'transcoded with old params');
  say(`ok   restart: params issued before it still pay (nonces up to ${nonces.get(oldKey)})`);
  await expectReject(node, s4, 301, payment(s4, 1, { params: kept, nonces: [1] }).header, body, 400,
    `invalid ticket senderNonce: already seen sender=${addr} nonce=1`, 'nonce replayed across a restart');

  // ---- redemption: after the params expire, every winner is redeemed on chain ----
  await mine(41);
  await initRoundIfNeeded();
  const all = storedSigs().size;
  let left = all;
  for (let i = 0; i < 900 && left > 0; i++) {
    await sleep(100);
    // a live chain makes a block every second or so; this one only mines on transactions, and a
    // redemption put off to a later block would otherwise wait for one forever
    if (i % 10 === 9) await mine(1);
    left = Number(sql('SELECT count(*) FROM ticketQueue WHERE redeemedAt IS NULL;'));
  }
  const redeemed = Number(sql("SELECT count(*) FROM ticketQueue WHERE txHash IS NOT NULL AND txHash != '' AND txHash NOT LIKE '%0000000000000000000000000000000000000000000000000000000000000000%';"));
  assert.strictEqual(left, 0, `${left} of ${all} winning tickets still unredeemed:\n${node.log().split('\n').filter((l) => /edeem/.test(l)).slice(-5).join('\n')}`);
  const deposit1 = (await broker.getSenderInfo(wallet.address)).sender.deposit;
  assert(deposit1 < deposit0, 'the gateway deposit went down');
  say(`ok   ${redeemed} of ${all} winning tickets redeemed on chain; deposit ${deposit0} -> ${deposit1}`);

  // ---- 600 nonces per params set (§3.3): six payments of 100 tickets, then one more ----
  // (after the redemption check: its winners are left queued when the test ends)
  const full = await getOrchestrator(node);
  for (let i = 0; i < 6; i++) {
    const r6 = await postSegment(node, segHeader(full, body, 500 + i), payment(full, 100).header, body);
    assert.strictEqual(r6.status, 200, `payment ${i} of 100 tickets: ${r6.status} ${r6.body}`);
  }
  await expectReject(node, full, 506, payment(full, 1).header, body, 400,
    `invalid ticket senderNonce: too many values sender=${addr} nonce=601`, 'the 601st nonce of a params set');

  // ---- a sender whose deposit unlocks next round (spec §3.2 B2) ----
  // refused; the node reads the sender's state afresh at start
  await (await broker.connect(deployer).setUnlockPeriod(1)).wait();
  await (await broker.connect(wallet.connect(provider)).unlock()).wait();
  node.child.kill('SIGTERM');
  await Promise.race([node.exited, sleep(10000)]);
  node.close();
  node = await startNode(port);
  const s6 = await getOrchestrator(node);
  await expectReject(node, s6, 400, payment(s6, 1).header, body, 400,
    `deposit and reserve for sender ${addr} is set to unlock soon`, 'a sender unlocking its deposit');
  node.child.kill('SIGTERM');
  await Promise.race([node.exited, sleep(10000)]);
  node.close();
}

main().then(() => {
  provider.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}).catch((e) => {
  console.error(`FAIL: ${e.stack || e}`);
  provider.destroy();
  process.exit(1);
});
