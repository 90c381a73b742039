#!/usr/bin/env node
// Local Livepeer chain for lpod's eth tests.
//
// Starts ganache on loopback, deploys the Livepeer protocol contracts from the Hardhat artifacts
// of @livepeer/sdk behind the Controller (proxied managers behind ManagerProxy, as the protocol's
// own deployment does), registers two orchestrators (the node's and another), funds a gateway
// and initializes a round.
// Then writes the addresses and accounts to a JSON file.
//
//   node chain.js --out chain.json [--port N] [-- command args...]
//
// With a command it runs it with LPOD_CHAIN_JSON and LPOD_ETH_URL set, stops the chain when the
// command exits and exits with the command's status. Without one it keeps serving until killed.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');

let ganache, ethers;
try {
  ganache = require('ganache');
  ethers = require('ethers');
  require.resolve('@livepeer/sdk/package.json');
} catch (e) {
  console.error(`chain.js: node modules missing (${e.message}); run npm install in ${__dirname}`);
  process.exit(77);
}

const ART = path.join(path.dirname(require.resolve('@livepeer/sdk/package.json')), 'abis',
  'contracts');
const artifact = (rel) => JSON.parse(fs.readFileSync(path.join(ART, rel), 'utf8'));

// Fixed keys so tests and vectors can name the accounts; funded with 10000 ETH each.
const KEYS = {
  deployer: '0x' + '11'.repeat(32),
  orchestrator: '0x' + '22'.repeat(32),
  gateway: '0x' + '33'.repeat(32),
  delegator: '0x' + '44'.repeat(32),
  // a second orchestrator in the pool: a payment naming it is for an active orchestrator that
  // is not the node under test
  orchestrator2: '0x' + '55'.repeat(32),
};
const ROUND_LENGTH = 20;
const LPT = 10n ** 18n;

function parseArgs(argv) {
  const o = { out: null, port: 0, cmd: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') { o.cmd = argv.slice(i + 1); break; }
    if (argv[i] === '--out') o.out = argv[++i];
    else if (argv[i] === '--port') o.port = parseInt(argv[++i], 10);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!o.out) throw new Error('--out is required');
  return o;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A contract that answers every call with one zero word: stands in for the L2LPTDataCache that
// the Minter reads on L2 (no L1 circulating supply on a dev chain).
const ZERO_WORD_INITCODE = '0x6460206000f36000526005601bf3';

function linkBytecode(art, libs) {
  let code = art.bytecode.slice(2);
  for (const [file, names] of Object.entries(art.linkReferences || {})) {
    for (const [name, refs] of Object.entries(names)) {
      const addr = libs[`${file}:${name}`];
      if (!addr) throw new Error(`no address for library ${file}:${name}`);
      for (const { start, length } of refs) {
        code = code.slice(0, start * 2) + addr.slice(2).toLowerCase() +
          code.slice((start + length) * 2);
      }
    }
  }
  return '0x' + code;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const port = opts.port || await freePort();
  const server = ganache.server({
    logging: { quiet: true },
    chain: { chainId: 1337, hardfork: 'london' },
    wallet: {
      accounts: Object.values(KEYS).map((k) => ({ secretKey: k, balance: '0x' + (10n ** 22n).toString(16) })),
    },
    miner: { instamine: 'eager' },
  });
  await server.listen(port, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  const provider = new ethers.JsonRpcProvider(url, undefined, { staticNetwork: true, pollingInterval: 50 });
  const wallets = Object.fromEntries(Object.entries(KEYS).map(([n, k]) => [n, new ethers.NonceManager(new ethers.Wallet(k, provider))]));
  const deployer = wallets.deployer;

  const send = async (p) => { const tx = await p; const r = await tx.wait(); if (r.status !== 1) throw new Error('tx failed'); return r; };
  const deploy = async (rel, args = [], libs = {}) => {
    const art = artifact(rel);
    const f = new ethers.ContractFactory(art.abi, linkBytecode(art, libs), deployer);
    const c = await f.deploy(...args);
    await c.waitForDeployment();
    return c;
  };

  const controller = await deploy('Controller.sol/Controller.json');
  const ctrlAddr = await controller.getAddress();
  const id = (name) => ethers.keccak256(ethers.toUtf8Bytes(name));
  const register = (name, addr) => send(controller.setContractInfo(id(name), addr, '0x' + '00'.repeat(20)));

  const addresses = { Controller: ctrlAddr };
  const proxied = async (name, rel, libs) => {
    const target = await deploy(rel, [ctrlAddr], libs);
    await register(`${name}Target`, await target.getAddress());
    const proxy = await deploy('ManagerProxy.sol/ManagerProxy.json', [ctrlAddr, id(`${name}Target`)]);
    const addr = await proxy.getAddress();
    await register(name, addr);
    addresses[name] = addr;
    addresses[`${name}Target`] = await target.getAddress();
    return new ethers.Contract(addr, artifact(rel).abi, deployer);
  };

  const token = await deploy('token/LivepeerToken.sol/LivepeerToken.json');
  addresses.LivepeerToken = await token.getAddress();
  await register('LivepeerToken', addresses.LivepeerToken);

  const minter = await deploy('token/Minter.sol/Minter.json', [ctrlAddr, 137, 3, 500000]);
  addresses.Minter = await minter.getAddress();
  await register('Minter', addresses.Minter);

  const cache = await send(deployer.sendTransaction({ data: ZERO_WORD_INITCODE }));
  addresses.L2LPTDataCache = cache.contractAddress;
  await register('L2LPTDataCache', addresses.L2LPTDataCache);

  const sdll = await deploy('libraries/SortedDoublyLL.sol/SortedDoublyLL.json');
  const libs = { 'contracts/libraries/SortedDoublyLL.sol:SortedDoublyLL': await sdll.getAddress() };
  const bonding = await proxied('BondingManager', 'bonding/BondingManager.sol/BondingManager.json', libs);
  const broker = await proxied('TicketBroker', 'pm/TicketBroker.sol/TicketBroker.json');
  // The Minter only takes ETH from the contract registered under the legacy JobsManager name.
  await register('JobsManager', addresses.TicketBroker);
  const rounds = await proxied('RoundsManager', 'rounds/RoundsManager.sol/RoundsManager.json');
  const registry = await proxied('ServiceRegistry', 'ServiceRegistry.sol/ServiceRegistry.json');

  const faucet = await deploy('token/LivepeerTokenFaucet.sol/LivepeerTokenFaucet.json',
    [addresses.LivepeerToken, 1000n * LPT, 1]);
  addresses.LivepeerTokenFaucet = await faucet.getAddress();
  await register('LivepeerTokenFaucet', addresses.LivepeerTokenFaucet);

  // Protocol parameters (small periods so tests can move through rounds quickly).
  await send(bonding.setUnbondingPeriod(7));
  await send(bonding.setNumActiveTranscoders(10));
  await send(broker.setUnlockPeriod(40));
  await send(broker.setTicketValidityPeriod(2));
  await send(rounds.setRoundLength(ROUND_LENGTH));
  await send(rounds.setRoundLockAmount(100000));

  const MINTER_ROLE = id('MINTER_ROLE');
  await send(token.grantRole(MINTER_ROLE, addresses.Minter));
  await send(token.grantRole(MINTER_ROLE, await deployer.getAddress()));
  await send(token.mint(addresses.LivepeerTokenFaucet, 1000000n * LPT));
  await send(token.mint(await wallets.orchestrator.getAddress(), 10000n * LPT));
  await send(token.mint(await wallets.orchestrator2.getAddress(), 1000n * LPT));

  if (await controller.paused()) await send(controller.unpause());

  const mine = async (n) => { for (let i = 0; i < n; i++) await provider.send('evm_mine', []); };
  const nextRound = async () => {
    const len = await rounds.roundLength();
    const start = await rounds.currentRoundStartBlock();
    const bn = BigInt(await provider.getBlockNumber());
    if (bn < start + len) await mine(Number(start + len - bn));
    await send(rounds.connect(deployer).initializeRound());
  };
  await nextRound();

  // Orchestrator: bond to itself and register as a transcoder.
  const orch = wallets.orchestrator;
  const orchAddr = await orch.getAddress();
  await send(token.connect(orch).approve(addresses.BondingManager, 1000n * LPT));
  await send(bonding.connect(orch).bond(1000n * LPT, orchAddr));
  await send(bonding.connect(orch).transcoder(100000, 50000));
  await send(registry.connect(orch).setServiceURI('https://127.0.0.1:8935'));
  const orch2 = wallets.orchestrator2;
  await send(token.connect(orch2).approve(addresses.BondingManager, 100n * LPT));
  await send(bonding.connect(orch2).bond(100n * LPT, await orch2.getAddress()));
  await send(bonding.connect(orch2).transcoder(100000, 50000));

  // Gateway: deposit and reserve.
  const gw = wallets.gateway;
  const deposit = 10n ** 18n, reserve = 2n * 10n ** 18n;
  await send(broker.connect(gw).fundDepositAndReserve(deposit, reserve, { value: deposit + reserve }));

  // A new round makes the orchestrator active and gives the round a block hash.
  await nextRound();

  // The orchestrator's key as a keystore file, written by ethers, for -ethKeystorePath.
  const ksDir = path.join(path.dirname(path.resolve(opts.out)), 'keystore');
  fs.mkdirSync(ksDir, { recursive: true });
  const ksPassword = 'lpod-chain-test';
  const ksJson = ethers.encryptKeystoreJsonSync({ address: orchAddr, privateKey: KEYS.orchestrator }, ksPassword, { scrypt: { N: 4096 } });
  const ksFile = path.join(ksDir, `UTC--${orchAddr.slice(2).toLowerCase()}`);
  fs.writeFileSync(ksFile, ksJson);

  const lir = await rounds.lastInitializedRound();
  const info = {
    url,
    port,
    chainId: 1337,
    roundLength: ROUND_LENGTH,
    addresses,
    accounts: Object.fromEntries(await Promise.all(Object.entries(wallets).map(async ([n, w]) => [n, { address: await w.getAddress(), privateKey: KEYS[n] }]))),
    gateway: { deposit: deposit.toString(), reserve: reserve.toString() },
    lastInitializedRound: lir.toString(),
    lastInitializedRoundBlockHash: await rounds.blockHashForRound(lir),
    keystore: { dir: ksDir, file: ksFile, password: ksPassword },
    orchestratorActive: await bonding.isActiveTranscoder(orchAddr),
    orchestrator2Active: await bonding.isActiveTranscoder(await orch2.getAddress()),
    poolSize: (await bonding.getTranscoderPoolSize()).toString(),
  };
  fs.writeFileSync(opts.out, JSON.stringify(info, null, 2) + '\n');
  provider.destroy();

  const stop = async (code) => { try { await server.close(); } catch (e) { /* already closed */ } process.exit(code); };
  process.on('SIGTERM', () => stop(143));
  process.on('SIGINT', () => stop(130));
  if (opts.cmd.length === 0) {
    console.log(`chain ready at ${url}; addresses in ${opts.out}`);
    return;
  }
  const child = spawn(opts.cmd[0], opts.cmd.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, LPOD_CHAIN_JSON: path.resolve(opts.out), LPOD_ETH_URL: url },
  });
  child.on('exit', (code, sig) => stop(code === null ? 128 + (sig ? 15 : 0) : code));
}

main().catch((e) => {
  console.error(`chain.js: ${e.stack || e}`);
  process.exit(1);
});
