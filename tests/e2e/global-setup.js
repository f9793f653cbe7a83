// Starts the whole stack with `ghostworks dev` in a temporary data directory on free ports,
// waits until the web app is ready, and hands its addresses to the tests through the
// environment. Missing chromium or binary fails the run: nothing is skipped.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const coverage = require('./coverage');

const root = path.resolve(__dirname, '../..');

const freePort = () => new Promise((resolve, reject) => {
  const srv = net.createServer();
  srv.unref();
  srv.on('error', reject);
  srv.listen(0, '127.0.0.1', () => {
    const { port } = srv.address();
    srv.close(() => resolve(port));
  });
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = async () => {
  const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(chromium)) {
    throw new Error(`${chromium} is missing: install Debian's chromium (scripts/install-deps.sh does)`);
  }
  const bin = process.env.GHOSTWORKS_BIN || path.join(root, 'target/debug/ghostworks');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: build it first (cargo build -p ghostworks)`);
  }
  const [api, worker, web] = [await freePort(), await freePort(), await freePort()];
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ghostworks-e2e-'));
  // PostgreSQL runs as the postgres user when the tests run as root: it must reach its directory.
  fs.chmodSync(dataDir, 0o755);
  fs.mkdirSync(path.join(root, 'target/e2e/screenshots'), { recursive: true });
  fs.rmSync(coverage.dir, { recursive: true, force: true });
  const log = fs.createWriteStream(path.join(root, 'target/e2e/stack.log'));
  const child = spawn(bin, ['dev', '--data-dir', dataDir], {
    cwd: root,
    detached: true,
    env: {
      ...process.env,
      GHOSTWORKS_BIND: `127.0.0.1:${api}`,
      WORKER_BIND: `127.0.0.1:${worker}`,
      WEB_BIND: `127.0.0.1:${web}`,
      // Every browser of the run shares one loopback address.
      RATE_LIMIT_ENABLED: 'false',
      JOB_POLL_SECONDS: '1',
      LOG_LEVEL: process.env.LOG_LEVEL || 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let mailUrl = null;
  let exited = null;
  child.on('exit', (code) => { exited = code; });
  child.stdout.on('data', (chunk) => {
    log.write(chunk);
    const m = /e-mail\s+(http:\/\/[^\s]+)/.exec(chunk.toString());
    if (m) mailUrl = m[1];
  });
  child.stderr.on('data', (chunk) => log.write(chunk));

  const webUrl = `http://127.0.0.1:${web}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited !== null) throw new Error(`ghostworks dev exited with ${exited}; see target/e2e/stack.log`);
    if (Date.now() > deadline) throw new Error('the stack did not become ready in 120 s; see target/e2e/stack.log');
    if (mailUrl) {
      try {
        const res = await fetch(`${webUrl}/health/ready`);
        if (res.ok) break;
      } catch (_) { /* not listening yet */ }
    }
    await sleep(250);
  }
  process.env.GW_WEB_URL = webUrl;
  process.env.GW_API_URL = `http://127.0.0.1:${api}`;
  process.env.GW_MAIL_URL = mailUrl;

  return async () => {
    try { process.kill(-child.pid, 'SIGINT'); } catch (_) { /* already gone */ }
    for (let i = 0; i < 40 && exited === null; i += 1) await sleep(250);
    if (exited === null) { try { process.kill(-child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }
    fs.rmSync(dataDir, { recursive: true, force: true });
    const c = coverage.report();
    console.log(`app.js line coverage: ${c.covered}/${c.valid} (${(c.rate * 100).toFixed(1)} %), target/ci/coverage-frontend.xml`);
  };
};
