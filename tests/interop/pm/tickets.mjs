// Checks lpod's ticket hashing and signature recovery against ethers on random tickets.
// usage: node tickets.mjs <path to pm_interop_tool> [count]
// Exits 77 (skip) when this folder's node_modules are not installed.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';

const here = new URL('.', import.meta.url);
if (!existsSync(new URL('node_modules/ethers/package.json', here))) {
  console.log('SKIP: ethers is not installed; run `npm ci` in tests/interop/pm');
  process.exit(77);
}
const {
  Wallet, Signature, SigningKey, concat, getAddress, getBytes, hashMessage, hexlify, keccak256,
  randomBytes, recoverAddress, solidityPackedKeccak256, toBeHex, zeroPadValue, MaxUint256, ZeroHash,
} = await import('ethers');

const tool = process.argv[2];
const count = Number(process.argv[3] || 1000);
if (!tool) {
  console.error('usage: node tickets.mjs <pm_interop_tool> [count]');
  process.exit(2);
}

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const HALF_N = N >> 1n;
const rnd = (n) => Number(BigInt(hexlify(randomBytes(4))) % BigInt(n));
const randUint = (maxBytes) => {
  const k = rnd(maxBytes + 1);
  return k === 0 ? 0n : BigInt(hexlify(randomBytes(k)));
};
const wallets = Array.from({ length: 40 }, () => new Wallet(hexlify(randomBytes(32))));

function makeTicket(i) {
  const w = wallets[i % wallets.length];
  const edge = rnd(10);
  const faceValue = edge === 0 ? 0n : edge === 1 ? MaxUint256 : randUint(32);
  const winProb = edge === 2 ? 0n : edge === 3 ? MaxUint256 : randUint(32);
  const senderNonce = edge === 4 ? 0 : edge === 5 ? 0xffffffff : Number(randUint(4));
  const recipientRand = randUint(32);
  const recipientRandHash = solidityPackedKeccak256(['uint256'], [recipientRand]);
  // Round 0 with a zero block hash means empty auxData; keep some of those.
  const emptyAux = rnd(20) === 0;
  const creationRound = emptyAux ? 0n : randUint(7);
  const creationRoundBlockHash = emptyAux ? ZeroHash : hexlify(randomBytes(32));
  const auxData = creationRound === 0n && creationRoundBlockHash === ZeroHash
    ? '0x'
    : concat([zeroPadValue(toBeHex(creationRound), 32), creationRoundBlockHash]);
  const recipient = hexlify(randomBytes(20));
  const hash = solidityPackedKeccak256(
    ['address', 'address', 'uint256', 'uint256', 'uint256', 'bytes32', 'bytes'],
    [recipient, w.address, faceValue, winProb, senderNonce, recipientRandHash, auxData]);
  const digest = hashMessage(getBytes(hash));
  let sig = getBytes(w.signingKey.sign(digest).serialized);
  const kind = ['ok', 'ok', 'ok', 'ok', 'ok', 'flipR', 'v01', 'highS', 'short', 'otherKey', 'badV'][rnd(11)];
  if (kind === 'flipR') sig[rnd(32)] ^= 1 << rnd(8);
  if (kind === 'v01') sig[64] -= 27;
  if (kind === 'badV') sig[64] = 29 + rnd(200);
  if (kind === 'short') sig = sig.slice(0, 64);
  if (kind === 'highS') {
    const s = BigInt(hexlify(sig.slice(32, 64)));
    sig.set(getBytes(zeroPadValue(toBeHex(N - s), 32)), 32);
    sig[64] = sig[64] === 27 ? 28 : 27;
  }
  if (kind === 'otherKey') sig = getBytes(new SigningKey(hexlify(randomBytes(32))).sign(digest).serialized);
  return {
    input: {
      recipient, sender: w.address.toLowerCase(), faceValue: faceValue.toString(),
      winProb: winProb.toString(), senderNonce: String(senderNonce), recipientRandHash,
      creationRound: creationRound.toString(), creationRoundBlockHash,
      recipientRand: recipientRand.toString(), sig: hexlify(sig),
    },
    kind, hash, digest, sig, w, recipientRand, recipientRandHash, winProb,
  };
}

// What go-livepeer's verifier says, computed with ethers for the recovery itself.
function expectedSig(t) {
  const sig = t.sig;
  if (sig.length !== 65) return { err: 'invalid signature length' };
  if (BigInt(hexlify(sig.slice(32, 64))) > HALF_N) return { err: 'signature s value too high' };
  if (sig[64] !== 27 && sig[64] !== 28) return { err: 'signature v value must be 27 or 28' };
  try {
    const s = Signature.from({ r: hexlify(sig.slice(0, 32)), s: hexlify(sig.slice(32, 64)), v: sig[64] });
    return { signer: recoverAddress(t.digest, s) };
  } catch {
    return { err: 'invalid signature' };
  }
}

const tickets = Array.from({ length: count }, (_, i) => makeTicket(i));
const child = spawn(tool, [], { stdio: ['pipe', 'pipe', 'inherit'] });
const answers = [];
const rl = createInterface({ input: child.stdout });
rl.on('line', (l) => answers.push(JSON.parse(l)));
for (const t of tickets) child.stdin.write(JSON.stringify(t.input) + '\n');
child.stdin.end();
const code = await new Promise((res) => child.on('close', res));
if (code !== 0) {
  console.error(`pm_interop_tool exited with ${code}`);
  process.exit(1);
}

let failed = 0;
const kinds = {};
tickets.forEach((t, i) => {
  const a = answers[i] || {};
  const exp = expectedSig(t);
  const winHash = keccak256(concat([t.sig, zeroPadValue(toBeHex(t.recipientRand), 32)]));
  const problems = [];
  if (a.inputError) problems.push(`input error ${a.inputError}`);
  if (a.hash !== t.hash) problems.push(`hash ${a.hash} != ${t.hash}`);
  if (a.digest !== t.digest) problems.push(`digest ${a.digest} != ${t.digest}`);
  if (exp.err ? a.sigError !== exp.err : a.signer !== exp.signer)
    problems.push(`signature: lpod ${a.signer || a.sigError}, expected ${exp.signer || exp.err}`);
  if (a.verified !== (exp.signer === t.w.address)) problems.push(`verified ${a.verified}`);
  if (a.senderEip55 !== getAddress(t.input.sender)) problems.push(`EIP-55 ${a.senderEip55}`);
  if (a.recipientRandHashOfRand !== t.recipientRandHash) problems.push('recipientRandHash');
  if (a.wins !== (BigInt(winHash) < t.winProb)) problems.push(`wins ${a.wins}`);
  kinds[t.kind] = (kinds[t.kind] || 0) + 1;
  if (problems.length) {
    failed++;
    if (failed <= 10) console.error(`ticket ${i} (${t.kind}): ${problems.join('; ')}\n  ${JSON.stringify(t.input)}`);
  }
});
console.log(`tickets by signature variant: ${JSON.stringify(kinds)}`);
console.log(`${count - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
