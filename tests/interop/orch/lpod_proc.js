// Running lpod processes from the Node test peers and benchmarks: a free loopback port, and a
// node started with its output captured, returned once its service port accepts connections.
'use strict';

const { spawn } = require('child_process');
const net = require('net');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

const accepts = (port) => new Promise((r) => {
  const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
  s.on('error', () => r(false));
});

// Spawns bin with argv; resolves with { child, log(), exited } once 127.0.0.1:port accepts
// (waitMs at most), or rejects with the process's output when it exits first. exited resolves
// with { code, sig }.
async function startLpod(bin, argv, port, { env, waitMs = 10000 } = {}) {
  const child = spawn(bin, argv, { env: env || process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
  for (const t0 = Date.now(); child.exitCode === null && Date.now() - t0 < waitMs;) {
    if (await accepts(port)) break;
    await sleep(50);
  }
  if (child.exitCode !== null) throw new Error(`lpod exited early:\n${log}`);
  return { child, log: () => log, exited };
}

module.exports = { sleep, freePort, startLpod };
