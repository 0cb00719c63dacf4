// Test harness: starts the real switchboard binary on a fresh SQLite file, mints tokens, and
// wraps socket.io-client and plain-WebSocket clients so that every event is recorded and every
// wait has a timeout (no sleeps).
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { token } from '../support/server.js';

export { SECRET, startServer, token } from '../support/server.js';
export const WAIT_MS = 5000;

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
