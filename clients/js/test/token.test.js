// The token's life: renewed on `token-expiring` through the application's getter before the
// server would close the connection; an expired token at connect answered by asking the getter
// once for a fresh one; a token that cannot be renewed ends the client with a reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, record, token, until } from './support.js';
import { TRANSPORTS, client } from './clients.js';

// Warned at once (the first token lives less than the warning), no leeway: without a renewal
// the connection would be closed `token_expired` about two seconds in.
const SHORT = { JWT_LEEWAY_SECS: '0', TOKEN_EXPIRY_WARNING_SECS: '30' };

for (const transport of TRANSPORTS) {
  test(`a token about to expire is renewed through the getter and the connection lives on (${transport})`, async () => {
    // Arrange: a getter whose first token lives two seconds, and a long-lived one after.
    const server = await startServer(SHORT);
    const asked = [];
    const getter = (reason) => {
      asked.push(reason);
      return token('renewer', { ttl: asked.length === 1 ? 2 : 3600 });
    };
    const renewer = client(server, 'renewer', transport, { token: getter });
    const seen = record(renewer);
    try {
      // Act: the server warns at once; the client renews.
      const warning = await until(() => seen.named('token-expiring')[0], 'token-expiring');
      await until(() => asked.length === 2, 'the getter asked for the renewal');
      const firstExp = warning.exp;

      // Assert: past the first token's expiry the connection is the same and works.
      await until(() => Date.now() / 1000 > firstExp + 1.5, "the first token's expiry", 6000);
      const users = await renewer.getActiveUsers();
      assert.equal(users.count, 1);
      assert.deepEqual(asked, ['connect', 'expiring']);
      assert.deepEqual(seen.states.map((s) => s.state), ['connecting', 'connected']);
    } finally {
      renewer.close();
      await server.dispose();
    }
  });

  test(`an expired token at connect is replaced once by the getter (${transport})`, async () => {
    const server = await startServer();
    const asked = [];
    const getter = (reason) => {
      asked.push(reason);
      return token('late', { ttl: reason === 'connect' ? -60 : 3600 });
    };
    const late = client(server, 'late', transport, { token: getter });
    const seen = record(late);
    try {
      await until(() => seen.hasState('connected'), 'connected with the fresh token');
      assert.deepEqual(asked, ['connect', 'expired']);
      assert.deepEqual(seen.states.map((s) => s.state), ['connecting', 'connecting', 'connected']);
    } finally {
      late.close();
      await server.dispose();
    }
  });

  test(`a fixed token that expires ends the client with token_expired (${transport})`, async () => {
    const server = await startServer();
    const stale = client(server, 'stale', transport, { token: token('stale', { ttl: -60 }) });
    const seen = record(stale);
    try {
      const closed = await until(() => seen.hasState('closed'), 'closed');
      assert.equal(closed.reason, 'token_expired');
      await assert.rejects(stale.sendMessage('too late'), { code: 'closed' });
    } finally {
      await server.dispose();
    }
  });
}
