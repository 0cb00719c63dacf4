// The package's test support: the real switchboard binary (SWITCHBOARD_BIN, as in
// tests/support/server.js, whose tokens and secret it shares), startable again on the same
// address and database after a SIGTERM or a SIGKILL; REST calls as an admin; recorders of
// what a client hands the application; and `until`, the one way a test waits.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SECRET, token, root } from '../../../tests/support/server.js';
import { SERVER_EVENT_FIELDS } from '../dist/index.js';

export { SECRET, token, root };
export const binary = process.env.SWITCHBOARD_BIN || join(root, 'target', 'release', 'switchboard');
export const WAIT_MS = 10000;

/** Resolves once `probe()` is truthy (polled on events of the loop, never a fixed sleep). */
export async function until(probe, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A server on a fresh database; `restart()` brings it back on the same port and file. */
export async function startServer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-client-'));
  const server = { dir, env, url: undefined, child: undefined, log: '' };
  await launch(server, '127.0.0.1:0');
  const { port } = new URL(server.url);
  return {
    get url() {
      return server.url;
    },
    log: () => server.log,
    /** SIGKILL (a crash) or SIGTERM (a graceful stop), and wait for the exit. */
    async stop(signal = 'SIGTERM') {
      const { child } = server;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
    async restart() {
      await launch(server, `127.0.0.1:${port}`);
    },
    async dispose() {
      await this.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
    /** An admin REST call: `rest('POST', '/websocket/users/u/revoke')`. */
    async rest(method, path, body) {
      const response = await fetch(`${server.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token('ops', { role: 'ADMIN' })}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
      return text ? JSON.parse(text) : undefined;
    },
  };
}

async function launch(server, bind) {
  const child = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      BIND_ADDR: bind,
      DATABASE_URL: `sqlite://${join(server.dir, 'test.db')}`,
      JWT_SECRET: SECRET,
      RUST_LOG: process.env.TEST_LOG ? 'debug' : 'info',
      ...server.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  server.child = child;
  server.url = await new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 20000);
    child.stderr.on('data', (chunk) => {
      log += chunk.toString();
      server.log += chunk.toString();
      if (process.env.TEST_LOG) process.stderr.write(chunk);
      const match = log.match(/listening on (http:\/\/[0-9.:]+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
}

/**
 * Records what a client hands the application: each event (payload keys checked against
 * the package's field lists, so a field the server sends and the types lack fails the test)
 * and each state change.
 */
export function record(client) {
  const seen = { events: [], states: [], ids: [], unknownFields: [] };
  for (const name of Object.keys(SERVER_EVENT_FIELDS)) {
    client.on(name, (data) => {
      seen.events.push({ name, data });
      if (typeof data?.id === 'number') seen.ids.push(data.id);
      const known = SERVER_EVENT_FIELDS[name].map((f) => f.replace(/\?$/, ''));
      for (const key of Object.keys(data ?? {})) {
        if (!known.includes(key)) seen.unknownFields.push(`${name}.${key}`);
      }
    });
  }
  client.onState((state) => seen.states.push(state));
  seen.named = (name) => seen.events.filter((e) => e.name === name).map((e) => e.data);
  seen.hasState = (state, from = 0) => seen.states.slice(from).find((s) => s.state === state);
  return seen;
}

/**
 * A `WebSocket` (or socket.io-client `io`) whose network the test can pull: while `down`,
 * opening throws, as a browser that is offline fails at once.
 */
export function switchable(open) {
  const link = { down: false };
  link.open = function (...args) {
    if (link.down) throw new Error('network down (test)');
    return open(...args);
  };
  return link;
}
