// What the Node test suites (tests/socketio, tests/browser, clients/js,
// examples/webhook-receiver) share: the real switchboard binary started on a fresh SQLite
// file, and HS256 tokens signed with its secret. Node built-ins only, so each suite's own npm
// packages stay its own.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SECRET = 'node-suites-secret-0123456789abcdef';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const binary = process.env.SWITCHBOARD_BIN || join(root, 'target', 'release', 'switchboard');

/**
 * Starts the server; resolves to { url, dir, log(), stop() }. `dir` (a previous server's) keeps
 * its database, for a restart (`BIND_ADDR` in `extraEnv` keeps its port); `stop({ keep: true })`
 * leaves the directory for that, and `stop({ signal: 'SIGKILL' })` is a crash.
 */
export async function startServer(extraEnv = {}, { dir = mkdtempSync(join(tmpdir(), 'switchboard-node-')) } = {}) {
  const child = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      BIND_ADDR: '127.0.0.1:0',
      DATABASE_URL: `sqlite://${join(dir, 'test.db')}`,
      JWT_SECRET: SECRET,
      RUST_LOG: process.env.TEST_LOG ? 'debug' : 'info',
      ...extraEnv,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 20000);
    child.stderr.on('data', (chunk) => {
      log += chunk.toString();
      if (process.env.TEST_LOG) process.stderr.write(chunk);
      const match = log.match(/listening on (http:\/\/[0-9.:]+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
  return {
    url,
    dir,
    log: () => log,
    async stop({ keep = false, signal = 'SIGTERM' } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill(signal);
        await exited;
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 token signed with the test secret (or `secret`). */
export function token(sub, { role = 'USER', username, ttl = 3600, secret = SECRET } = {}) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const now = Math.floor(Date.now() / 1000);
  const claims = b64url(JSON.stringify({ sub, username: username ?? sub, role, exp: now + ttl }));
  const signature = createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}
