// A server with no handshake turn to give refuses `busy` with a hint (docs/protocol.md
// section 2, "Busy"): the client waits at least the hint, offline with reason `busy`, then
// comes back and gets in once a turn is free. `/ws` learns the hint from its probe's body,
// Socket.IO from the `connect_error` text.
//
// The server's one turn (HANDSHAKE_CONCURRENCY=1, no queue) is held without timing: a raw
// Engine.IO long-polling client resumes from message 0, owed more than its queues hold
// (OUTBOUND_QUEUE_CAPACITY=8), and does not poll, so its catch-up keeps the turn until it does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, record, token, until } from './support.js';
import { TRANSPORTS, client } from './clients.js';

const OWED = 60;

/** `switchboard_handshakes_in_progress`, read from /metrics. */
async function inProgress(server) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('switchboard_handshakes_in_progress '));
  return Number(line?.split(' ')[1]);
}

/** One Engine.IO polling request; its body. */
async function poll(server, sid, body) {
  const query = sid ? `&sid=${sid}` : '';
  const response = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling${query}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'text/plain' },
    body,
  });
  assert.equal(response.status, 200);
  return response.text();
}

/** Holds the server's one handshake turn; resolves to the holder's Engine.IO sid. */
async function holdTheTurn(server) {
  for (let i = 0; i < OWED; i++) await server.rest('POST', '/websocket/broadcast', { message: `owed ${i}` });
  const open = await poll(server);
  const { sid } = JSON.parse(open.slice(1));
  // Engine.IO's first ping goes out as its session starts, into the queue the replay will
  // fill: answered first, or a full queue would make it a heartbeat timeout on a loaded
  // machine. The next one is 25 s away.
  assert.equal(await poll(server, sid), '2');
  assert.equal(await poll(server, sid, '3'), 'ok');
  assert.equal(await poll(server, sid, `40${JSON.stringify({ token: token('holder'), lastMessageId: 0 })}`), 'ok');
  await until(async () => (await inProgress(server)) === 1, 'the holder holds the turn');
  return sid;
}

/** Reads what the holder is owed until its catch-up completes, which gives the turn back. */
async function release(server, sid) {
  await until(async () => (await poll(server, sid)).includes('sync-complete'), "the holder's catch-up");
}

for (const transport of TRANSPORTS) {
  test(`a busy refusal keeps the client offline for at least its hint, then it gets in (${transport})`, async () => {
    const server = await startServer({ HANDSHAKE_CONCURRENCY: '1', HANDSHAKE_QUEUE: '0', OUTBOUND_QUEUE_CAPACITY: '8' });
    let late;
    try {
      const holder = await holdTheTurn(server);
      // On /ws the probe's `Retry-After` is turned into a minute: only the body's exact
      // `retryAfterMs` keeps the wait under 4 s.
      const fetch = async (url) => {
        const response = await globalThis.fetch(url);
        const headers = new Headers(response.headers);
        if (headers.has('retry-after')) headers.set('retry-after', '60');
        return new Response(await response.text(), { status: response.status, headers });
      };
      late = client(server, 'late', transport, transport === 'ws' ? { fetch } : {});
      const seen = record(late);

      const offline = await until(() => seen.hasState('offline'), 'offline');
      assert.equal(offline.reason, 'busy');
      // Without the hint the tests' backoff stays under 1 s; with it, hint (1 to 3 s) plus
      // less than one backoff bound (1 s).
      assert.ok(offline.retryInMs >= 1000 && offline.retryInMs < 4000, `${offline.retryInMs}`);

      await release(server, holder);
      await until(() => seen.hasState('connected'), 'connected once a turn is free');
    } finally {
      late?.close();
      await server.dispose();
    }
  });
}
