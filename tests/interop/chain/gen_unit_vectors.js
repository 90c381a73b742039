#!/usr/bin/env node
// Regenerates tests/unit/eth/vectors.json with ethers (an independent implementation) so the
// unit tests can check lpod's ABI, RLP, transaction and keystore code without Node at test time.
//   node gen_unit_vectors.js [out.json]
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const ethers = require('ethers');

const out = process.argv[2] || path.join(__dirname, '..', '..', 'unit', 'eth', 'vectors.json');
const tbAbi = require('@livepeer/sdk/abis/contracts/pm/TicketBroker.sol/TicketBroker.json').abi;
const tb = new ethers.Interface(tbAbi);
const key = '0x' + '22'.repeat(32);
const wallet = new ethers.Wallet(key);

// spec/payments.md §6.7: a real mainnet redemption.
const mainnet = {
  recipient: '0x9C10672CEE058Fd658103d90872fE431bb6C0AFa',
  sender: '0x3eE860A4abA830AF84EbBCE2b381fc11DB8493e2',
  faceValue: 24703611594215916n,
  winProb: 4687253472865791949219216447262131914283161967982656133076290000000000000000n,
  senderNonce: 1n,
  recipientRandHash: '0xd00ef48a6825d9ae93097ad55bc76057fb50afc203aa98fd4e01aa6576d71298',
  auxData: ethers.concat([ethers.toBeHex(1673, 32), '0xa9f81d59be53a90a12cb12f627aa9e87c505320bad20a98fd98d5ed23bfe9a54']),
};
const mainnetSig = '0x5ff5265992f1a6563851d085f363b16ad65416baaee090ee368b59082437df7a0237214659511fc188d6a4ef57c988bb18faa3e99826c78e9e75eb29366745891b';
const mainnetRand = 21160157592767011607011497540409649304524524744605816319294275445072062630355n;
const ticketTuple = (t) => [t.recipient, t.sender, t.faceValue, t.winProb, t.senderNonce, t.recipientRandHash, t.auxData];
const ticket2 = { ...mainnet, senderNonce: 7n, auxData: '0x' };

const abi = [
  { name: 'redeemWinningTicket', data: tb.encodeFunctionData('redeemWinningTicket', [ticketTuple(mainnet), mainnetSig, mainnetRand]) },
  { name: 'getTicketHash', data: tb.encodeFunctionData('getTicketHash', [ticketTuple(mainnet)]) },
  { name: 'getTicketHashEmptyAux', data: tb.encodeFunctionData('getTicketHash', [ticketTuple(ticket2)]) },
  { name: 'batchRedeemWinningTickets', data: tb.encodeFunctionData('batchRedeemWinningTickets', [[ticketTuple(mainnet), ticketTuple(ticket2)], [mainnetSig, '0x1234'], [mainnetRand, 5n]]) },
  { name: 'getSenderInfo', data: tb.encodeFunctionData('getSenderInfo', [mainnet.sender]) },
  { name: 'claimedReserve', data: tb.encodeFunctionData('claimedReserve', [mainnet.sender, mainnet.recipient]) },
];

const rlp = [
  [],
  '0x',
  '0x00',
  '0x7f',
  '0x80',
  '0x' + 'ab'.repeat(55),
  '0x' + 'cd'.repeat(56),
  '0x' + 'ef'.repeat(1024),
  ['0x01', ['0x', []], '0x' + '11'.repeat(60)],
  Array.from({ length: 30 }, (_, i) => ethers.toBeHex(i * 1000 + 1)),
].map((v) => ({ value: v, encoded: ethers.encodeRlp(v) }));

async function txVectors() {
  const data = abi[0].data;
  const txs = [
    { type: 0, chainId: 1337, nonce: 0, gasPrice: 20000000000n, gasLimit: 21000n, to: mainnet.recipient, value: 10n ** 18n, data: '0x' },
    { type: 0, chainId: 42161, nonce: 300, gasPrice: 100000000n, gasLimit: 1200000n, to: mainnet.sender, value: 0n, data },
    { type: 2, chainId: 1337, nonce: 5, maxPriorityFeePerGas: 1500000000n, maxFeePerGas: 30000000000n, gasLimit: 350000n, to: mainnet.sender, value: 0n, data },
    { type: 2, chainId: 42161, nonce: 0x123456, maxPriorityFeePerGas: 0n, maxFeePerGas: 200000000n, gasLimit: 60000n, to: null, value: 1n, data: '0x6460206000f36000526005601bf3' },
  ];
  const res = [];
  for (const t of txs) {
    const raw = await wallet.signTransaction(t);
    const parsed = ethers.Transaction.from(raw);
    res.push({ tx: JSON.parse(JSON.stringify(t, (k, v) => (typeof v === 'bigint' ? v.toString() : v))), raw, hash: parsed.hash, unsignedHash: parsed.unsignedHash });
  }
  return res;
}

function pbkdf2Keystore(priv, password, rounds) {
  const salt = crypto.randomBytes(32), iv = crypto.randomBytes(16);
  const dk = crypto.pbkdf2Sync(Buffer.from(password, 'utf8'), salt, rounds, 32, 'sha256');
  const c = crypto.createCipheriv('aes-128-ctr', dk.subarray(0, 16), iv);
  const ct = Buffer.concat([c.update(Buffer.from(priv.slice(2), 'hex')), c.final()]);
  const mac = ethers.keccak256(Buffer.concat([dk.subarray(16, 32), ct]));
  return JSON.stringify({
    address: new ethers.Wallet(priv).address.slice(2).toLowerCase(),
    crypto: { cipher: 'aes-128-ctr', ciphertext: ct.toString('hex'), cipherparams: { iv: iv.toString('hex') }, kdf: 'pbkdf2', kdfparams: { c: rounds, dklen: 32, prf: 'hmac-sha256', salt: salt.toString('hex') }, mac: mac.slice(2) },
    id: crypto.randomUUID(), version: 3,
  });
}

async function main() {
  const keystores = [];
  const w2 = new ethers.Wallet('0x' + '33'.repeat(32));
  keystores.push({ kdf: 'scrypt', password: 'lpod-test', address: wallet.address, privateKey: key, json: ethers.encryptKeystoreJsonSync({ address: wallet.address, privateKey: key }, 'lpod-test', { scrypt: { N: 1024 } }) });
  keystores.push({ kdf: 'scrypt', password: '', address: w2.address, privateKey: w2.privateKey, json: ethers.encryptKeystoreJsonSync({ address: w2.address, privateKey: w2.privateKey }, '', { scrypt: { N: 2048, r: 4, p: 2 } }) });
  keystores.push({ kdf: 'pbkdf2', password: 'pässwörd', address: wallet.address, privateKey: key, json: pbkdf2Keystore(key, 'pässwörd', 4096) });
  const v = { generator: 'tests/interop/chain/gen_unit_vectors.js', ethers: ethers.version, privateKey: key, address: wallet.address, abi, rlp, tx: await txVectors(), keystores };
  fs.writeFileSync(out, JSON.stringify(v, null, 1) + '\n');
  console.log(`wrote ${out}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
