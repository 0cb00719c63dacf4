// Endings the client must not come back from: a revocation (the server would refuse every
// attempt), and a token the server does not accept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, record, token, until } from './support.js';
import { TRANSPORTS, client } from './clients.js';

/** Long enough for several reconnect attempts at the tests' backoff (200 ms to 1 s). */
const QUIET_MS = 1500;

async function quietFor(ms) {
  const start = Date.now();
  await until(() => Date.now() - start >= ms, `${ms} ms`);
}

for (const transport of TRANSPORTS) {
  test(`a revoked client closes with reason revoked and does not reconnect (${transport})`, async () => {
    const server = await startServer();
    const victim = client(server, 'victim', transport);
    const seen = record(victim);
    try {
      await until(() => seen.hasState('connected'), 'connected');
      const pending = victim.request('join-room', { room: 'after-revoke' });

      await server.rest('POST', '/websocket/users/victim/revoke');

      const closed = await until(() => seen.hasState('closed'), 'closed');
      assert.equal(closed.reason, 'revoked');
      const statesAtClose = seen.states.length;
      await quietFor(QUIET_MS);
      assert.equal(seen.states.length, statesAtClose, JSON.stringify(seen.states.slice(statesAtClose)));
      await pending.catch(() => {});
    } finally {
      victim.close();
      await server.dispose();
    }
  });

  test(`a token the server refuses ends the client at once (${transport})`, async () => {
    const server = await startServer();
    const forged = client(server, 'forger', transport, { token: token('forger', { secret: 'another-secret-0123456789abcdef' }) });
    const seen = record(forged);
    try {
      const closed = await until(() => seen.hasState('closed'), 'closed');
      assert.equal(closed.reason, 'invalid_token');
      assert.deepEqual(seen.states.map((s) => s.state), ['connecting', 'closed']);
    } finally {
      await server.dispose();
    }
  });
}
