// Test harness: starts the real switchboard binary on a fresh SQLite file, mints tokens, and
// wraps socket.io-client and plain-WebSocket clients so that every event is recorded and every
// wait has a timeout (no sleeps).
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

export const SECRET = 'socketio-interop-secret-0123456789abcdef';
export const WAIT_MS = 5000;

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const binary = process.env.SWITCHBOARD_BIN || join(root, 'target', 'release', 'switchboard');

/** Starts the server; resolves to { url, stop() }. */
export async function startServer(extraEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-sio-'));
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
    log: () => log,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 token signed with the test secret. */
export function token(sub, { role = 'USER', username, ttl = 3600, secret = SECRET } = {}) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const now = Math.floor(Date.now() / 1000);
  const claims = b64url(JSON.stringify({ sub, username: username ?? sub, role, exp: now + ttl }));
  const signature = createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

/** Records every event of an emitter-like source so a test can wait for them in order. */
class Recorder {
  constructor() {
    this.queue = [];
    this.waiters = [];
  }
  push(event, data) {
    this.queue.push({ event, data });
    this.waiters.splice(0).forEach((wake) => wake());
  }
  /** The next recorded event named `event` (earlier ones of other names are skipped). */
  async next(event, timeout = WAIT_MS) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const index = this.queue.findIndex((e) => e.event === event);
      if (index >= 0) {
        const [found] = this.queue.splice(0, index + 1).slice(-1);
        return found.data;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.queue.map((e) => e.event).join(', ') || 'nothing';
        throw new Error(`timed out waiting for "${event}" (queued: ${seen})`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  /** Asserts that no event named `event` arrives for `ms`. */
  async none(event, ms = 300) {
    try {
      const data = await this.next(event, ms);
      throw new Error(`unexpected "${event}": ${JSON.stringify(data)}`);
    } catch (e) {
      if (!String(e.message).startsWith('timed out')) throw e;
    }
  }
}

/** A socket.io client whose events are recorded; resolves after `connected`. */
export async function sioClient(url, options = {}) {
  const socket = io(url, { reconnection: false, forceNew: true, ...options });
  const events = new Recorder();
  socket.onAny((event, data) => events.push(event, data));
  socket.on('connect_error', (err) => events.push('connect_error', err));
  socket.on('disconnect', (reason) => events.push('disconnect', reason));
  socket.events = events;
  socket.ack = (event, data) => socket.timeout(WAIT_MS).emitWithAck(event, data);
  return socket;
}

/** A connected socket.io client (its `connected` payload in `.welcome`). */
export async function sioUser(url, sub, options = {}) {
  const socket = await sioClient(url, { auth: { token: token(sub, options) }, ...options.client });
  socket.welcome = await socket.events.next('connected');
  return socket;
}

/** A plain-WebSocket `/ws` client with the same recording. */
export async function wsUser(url, sub, query = '') {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws?token=${token(sub)}${query}`);
  const events = new Recorder();
  ws.on('message', (raw) => {
    const { event, data } = JSON.parse(raw.toString());
    events.push(event, data);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.events = events;
  ws.emitEvent = (event, data, ack) => ws.send(JSON.stringify({ event, data, ack }));
  ws.welcome = await events.next('connected');
  return ws;
}
