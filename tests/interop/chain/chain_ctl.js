#!/usr/bin/env node
// Moves a running chain.js chain along for end-to-end tests.
//   node chain_ctl.js <chain.json> mine [N]        mine N blocks (default 1)
//   node chain_ctl.js <chain.json> next-round      mine to the next round and initialize it
//   node chain_ctl.js <chain.json> fund <deposit> <reserve>   top up the gateway (wei)
//   node chain_ctl.js <chain.json> info            round, blocks and the gateway's funds as JSON
'use strict';
const fs = require('fs');
const path = require('path');
const ethers = require('ethers');

const ART = path.join(path.dirname(require.resolve('@livepeer/sdk/package.json')), 'abis', 'contracts');
const abi = (rel) => JSON.parse(fs.readFileSync(path.join(ART, rel), 'utf8')).abi;

async function main() {
  const [file, cmd, ...args] = process.argv.slice(2);
  if (!file || !cmd) throw new Error('usage: chain_ctl.js <chain.json> mine|next-round|fund|info');
  const chain = JSON.parse(fs.readFileSync(file, 'utf8'));
  const provider = new ethers.JsonRpcProvider(chain.url, undefined, { staticNetwork: true, pollingInterval: 50 });
  const deployer = new ethers.Wallet(chain.accounts.deployer.privateKey, provider);
  const gateway = new ethers.Wallet(chain.accounts.gateway.privateKey, provider);
  const rounds = new ethers.Contract(chain.addresses.RoundsManager, abi('rounds/RoundsManager.sol/RoundsManager.json'), deployer);
  const broker = new ethers.Contract(chain.addresses.TicketBroker, abi('pm/TicketBroker.sol/TicketBroker.json'), gateway);
  const mine = async (n) => { for (let i = 0; i < n; i++) await provider.send('evm_mine', []); };
  let out;
  if (cmd === 'mine') {
    await mine(args[0] ? parseInt(args[0], 10) : 1);
  } else if (cmd === 'next-round') {
    const len = await rounds.roundLength();
    const start = await rounds.currentRoundStartBlock();
    const bn = BigInt(await provider.getBlockNumber());
    await mine(Number(start + len > bn ? start + len - bn : 0n));
    const tx = await rounds.initializeRound();
    await tx.wait();
  } else if (cmd === 'fund') {
    const deposit = BigInt(args[0] || '0'), reserve = BigInt(args[1] || '0');
    const tx = await broker.fundDepositAndReserve(deposit, reserve, { value: deposit + reserve });
    await tx.wait();
  } else if (cmd !== 'info') {
    throw new Error(`unknown command ${cmd}`);
  }
  const [sender, lir, cur, block] = await Promise.all([
    broker.getSenderInfo(chain.accounts.gateway.address), rounds.lastInitializedRound(),
    rounds.currentRound(), provider.getBlockNumber()]);
  out = {
    block, lastInitializedRound: lir.toString(), currentRound: cur.toString(),
    gateway: { deposit: sender.sender.deposit.toString(), withdrawRound: sender.sender.withdrawRound.toString(), reserve: sender.reserve.fundsRemaining.toString() },
  };
  console.log(JSON.stringify(out));
  provider.destroy();
}
main().catch((e) => { console.error(`chain_ctl.js: ${e.shortMessage || e.message}`); process.exit(1); });
