// A graceful restart (SIGTERM, then the server back on the same address and database) with
// the official socket.io-client on its defaults, as the seed's frontend code uses it:
// `io(url, { auth: { token } })`. The client must come back by itself. socket.io-client never
// reconnects after a Socket.IO DISCONNECT from the server ("io server disconnect"), so the
// server must end its sessions by closing the Engine.IO transport ("transport close").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, token, sioClient } from './harness.js';

/** How long a client may take to come back: its reconnect backoff (1 s to 5 s) plus a start. */
const BACK_WITHIN_MS = 15000;

for (const transports of [undefined, ['polling'], ['websocket']]) {
  const label = transports ? transports.join('+') : 'default transports';
  test(`after a graceful restart the official client reconnects by itself (${label})`, async () => {
    // Arrange: a server and a client on socket.io-client's defaults (reconnection on).
    let server = await startServer();
    const { port } = new URL(server.url);
    const options = { auth: { token: token('returner') }, reconnection: true };
    if (transports) options.transports = transports;
    const client = await sioClient(server.url, options);
    try {
      await client.events.next('connected');
      if (!transports) {
        // Stopped on WebSocket, as a client is within a moment of connecting.
        const engine = client.io.engine;
        if (engine.transport.name !== 'websocket') {
          await new Promise((resolve) => engine.once('upgrade', resolve));
        }
      }

      // Act: a graceful stop, then the server back on the same address and database.
      const polling = transports?.[0] === 'polling';
      await server.stop({ keep: true });
      const told = polling ? null : await client.events.next('error');
      const reason = await client.events.next('disconnect');
      server = await startServer({ BIND_ADDR: `127.0.0.1:${port}` }, { dir: server.dir });

      // Assert: disconnected in a way the client recovers from (over WebSocket also told
      // why first; a long-poll that is cut as the transport closes may lose that notice),
      // and back by itself.
      if (polling) {
        assert.ok(['transport close', 'transport error'].includes(reason), `left with "${reason}"`);
      } else {
        assert.equal(told.code, 'server_shutdown', JSON.stringify(told));
        assert.equal(reason, 'transport close', `the client was left with "${reason}"`);
      }
      const welcome = await client.events.next('connected', BACK_WITHIN_MS);
      assert.equal(welcome.user.userId, 'returner');
    } finally {
      client.close();
      await server.stop();
    }
  });
}
