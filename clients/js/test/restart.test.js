// The restart at scale (issue 23 item 5): 1,000 clients of the package (half on /ws, half on
// its Socket.IO door) and 1,000 official socket.io-clients following the README's recipe
// (`auth` as a function sending the token and the last id seen; repeats dropped in `onAny`,
// which hands the rest to the application; socket.io-client's default transports, polling
// then the upgrade), in one Node process against the real release binary on a SQLite file.
// A publisher posts to everyone (REST `POST /websocket/publish`) before, during and after a
// graceful restart (SIGTERM, the server again on the same file), then the same around a
// crash (SIGKILL). After each, every client must be back and every acknowledged message must
// have reached every client exactly once, in id order, as the application sees it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as pause } from 'node:timers/promises';
import { io } from 'socket.io-client';
import { connect } from '../dist/index.js';
import { startServer, token, until } from './support.js';

/** Every other one follows the recipe; the package's alternate between /ws and Socket.IO. */
const CLIENTS = Number(process.env.RESTART_TEST_CLIENTS ?? 2000);
/** Clients opened together: more at once would overflow the loopback accept queue on 2 cores. */
const WAVE = 100;
/** The publisher's pace: about 10 messages a second, each fanned out to 2,000 connections. */
const PUBLISH_EVERY_MS = 100;
/** Messages acknowledged (and seen by all) before a stop, and acknowledged after the start. */
const AROUND_STOP = 10;
/** Generous for 2,000 clients and the server sharing two cores, and still finite. */
const FLEET_MS = 60000;
/** Open files each process needs: the clients' sockets here, the connections in the server. */
const FILES_NEEDED = CLIENTS + 2000;

test('2,000 clients come back from a graceful restart and a crash, each acknowledged message once', { timeout: 240000 }, async (t) => {
  // A child inherits this process's limit, so the shell's answer is ours (and the server's).
  const files = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  if (files !== 'unlimited' && Number(files) < FILES_NEEDED) {
    const why = `needs ${FILES_NEEDED} open files, ulimit -n is ${files}: raise it (scripts/test does)`;
    if (process.env.CI === 'true') throw new Error(why);
    console.error(`!! SKIPPED: the restart of ${CLIENTS} clients ${why} !!`);
    return t.skip(why);
  }
  const server = await startServer({
    // Short spread: the test is about the returns, not waiting for them.
    RECONNECT_SPREAD_SECS: '2',
    // 2,000 users arriving would send every connection 2,000 presence events (4M frames):
    // the cost of presence, not of recovery, and not what is tested here.
    PRESENCE_EVENTS: 'off',
  });
  const fleet = [];
  try {
    // Arrange: the fleet, in waves, interleaving the three kinds.
    const order = Array.from({ length: CLIENTS }, (_, i) => (i % 2 ? 'recipe' : i % 4 ? 'package-socket.io' : 'package-ws'));
    for (let start = 0; start < order.length; start += WAVE) {
      const wave = order.slice(start, start + WAVE).map((kind, i) => open(server.url, kind, `u${start + i}`));
      fleet.push(...wave);
      await until(() => wave.every((c) => c.connects >= 1), `wave ${start / WAVE + 1} connected`, FLEET_MS);
    }

    for (const signal of ['SIGTERM', 'SIGKILL']) {
      await t.test(`${signal}, then the server again on the same file`, async () => {
        const started = Date.now();
        const connectsBefore = fleet.map((c) => c.connects);
        const replayedBefore = sum(fleet, (c) => c.replayed);
        const publisher = publish(server);
        try {
          // Every client has a cursor before the stop (a client that never saw a message has
          // none to come back with: clients/js/README.md "What it does not do yet").
          await until(() => publisher.acked.length >= AROUND_STOP, 'the first messages acknowledged', FLEET_MS);
          const firstBatch = publisher.acked.at(AROUND_STOP - 1);
          await until(() => fleet.every((c) => c.last() >= firstBatch), 'the first messages everywhere', FLEET_MS);

          // Act: stop while publishing, start on the same file, keep publishing while the
          // clients come back (spread over RECONNECT_SPREAD_SECS, or their backoff after a crash).
          const ackedBeforeStop = publisher.acked.length;
          const stopping = Date.now();
          await server.stop(signal);
          const ackedAtStop = publisher.acked.length;
          publisher.duringStop = ackedAtStop - ackedBeforeStop;
          await server.restart();
          publisher.downMs = Date.now() - stopping;
          await until(() => publisher.acked.length >= ackedAtStop + AROUND_STOP, 'messages acknowledged after the start', FLEET_MS);
          await until(
            () => fleet.every((c, i) => c.connects > connectsBefore[i] && c.isConnected()),
            'every client back',
            FLEET_MS,
          ).catch((e) => fail(e, server, fleet.filter((c, i) => !(c.connects > connectsBefore[i] && c.isConnected()))));
          publisher.backMs = Date.now() - stopping;
        } finally {
          await publisher.stop();
        }

        // Assert: every acknowledged message reached every client once, in id order.
        const acked = publisher.acked;
        const lastAcked = acked.at(-1);
        await until(() => fleet.every((c) => c.last() >= lastAcked), 'every acknowledged message everywhere', FLEET_MS).catch((e) =>
          fail(e, server, fleet.filter((c) => c.last() < lastAcked)),
        );
        const problems = [];
        for (const c of fleet) {
          const ids = c.ids;
          const outOfOrder = ids.findIndex((id, i) => i > 0 && id <= ids[i - 1]);
          if (outOfOrder >= 0) problems.push(`${c.name}: id ${ids[outOfOrder]} after ${ids[outOfOrder - 1]} (a repeat or out of order)`);
          const have = new Set(ids);
          const missing = acked.filter((id) => !have.has(id));
          if (missing.length) problems.push(`${c.name}: missed ${missing.length} acknowledged, first ${missing.slice(0, 5)}`);
        }
        assert.deepEqual(problems.slice(0, 20), [], `${problems.length} clients wrong`);
        // The test itself: clients were away while messages were acknowledged, and caught up.
        const replayed = sum(fleet, (c) => c.replayed) - replayedBefore;
        assert.ok(replayed > 0, 'no client missed a message while away: the restart went unfelt');

        const raw = sum(fleet, (c) => c.rawRepeats);
        t.diagnostic(
          `${signal}: stop and start ${publisher.downMs} ms, all back after ${publisher.backMs} ms; ` +
            `${acked.length} acknowledged (${publisher.duringStop} during the stop), ` +
            `${publisher.refused.length} refused (${summarize(publisher.refused)}); ${replayed} deliveries by replay; ` +
            `${raw} repeats reached the recipe clients' socket.on (dropped by the recipe); ${Date.now() - started} ms`,
        );
      });
    }
  } finally {
    for (const c of fleet) c.close();
    await server.dispose();
  }
});

/** One client of `kind`: what its application was handed (`ids`), and whether it is connected. */
function open(url, kind, sub) {
  const c = { kind, name: `${kind} ${sub}`, ids: [], connects: 0, replayed: 0, rawRepeats: 0 };
  c.last = () => c.ids.at(-1) ?? -1;
  if (kind === 'recipe') return Object.assign(c, recipe(url, sub, c));
  const client = connect({
    url,
    token: token(sub),
    transport: kind === 'package-ws' ? 'ws' : 'socket.io',
    io,
    socketOptions: { transports: ['websocket'] },
    // The default's cap (30 s) would let an unlucky client sit out the test; the shape is the same.
    backoff: { initialMs: 500, maxMs: 4000 },
  });
  client.on('tick', (m) => c.ids.push(m.id));
  client.onState((s) => {
    if (s.state === 'connected') c.connects += 1;
    if (s.state === 'recovered') c.replayed += s.count;
    c.state = s;
  });
  // `recovered` follows `connected` once a reconnect's catch-up is done: connected too.
  c.isConnected = () => ['connected', 'recovered'].includes(client.state.state);
  c.close = () => client.close();
  return c;
}

/** The README's Socket.IO recipe ("Socket.IO recipe"), with the application's handler for `tick`. */
function recipe(url, sub, c) {
  let lastSeen; // the recovery cursor (the README keeps it in localStorage too)
  const socket = io(url, {
    auth: (cb) => cb({ token: token(sub), lastMessageId: lastSeen }),
  });
  const onMessage = { tick: (m) => c.ids.push(m.id) };
  socket.onAny((event, data) => {
    if (typeof data?.id !== 'number') return;
    if (data.id <= (lastSeen ?? -1)) return; // seen already: a replay or a re-delivery repeats it
    lastSeen = data.id;
    onMessage[event]?.(data);
  });
  // Not the application's view: what a socket.on('tick') handler gets, repeats included.
  const raw = new Set();
  socket.on('tick', (m) => {
    if (raw.has(m.id)) c.rawRepeats += 1;
    raw.add(m.id);
  });
  socket.on('connected', () => (c.connects += 1));
  socket.on('sync-complete', (done) => (c.replayed += done.count));
  socket.on('disconnect', (why) => (c.state = { state: 'disconnected', why }));
  socket.on('connect_error', (e) => (c.state = { state: 'connect_error', message: e.message }));
  return { isConnected: () => socket.connected, close: () => socket.close() };
}

/** Posts `tick` to everyone until stopped; records the acknowledged ids and the refusals. */
function publish(server) {
  const acked = [];
  const refused = [];
  const headers = { authorization: `Bearer ${token('publisher', { role: 'ADMIN' })}`, 'content-type': 'application/json' };
  let running = true;
  const loop = (async () => {
    for (let n = 0; running; n++) {
      try {
        const response = await fetch(`${server.url}/websocket/publish`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ event: 'tick', data: { n }, everyone: true }),
          signal: AbortSignal.timeout(10000),
        });
        const body = await response.text();
        if (response.ok) acked.push(JSON.parse(body).id);
        else refused.push(String(response.status));
      } catch (e) {
        refused.push(e.cause?.code ?? e.name);
      }
      await pause(PUBLISH_EVERY_MS);
    }
  })();
  return {
    acked,
    refused,
    async stop() {
      running = false;
      await loop;
    },
  };
}

function sum(fleet, of) {
  return fleet.reduce((total, c) => total + of(c), 0);
}

function summarize(values) {
  const counts = new Map();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].map(([v, n]) => `${v} x${n}`).join(', ') || 'none';
}

/** Rethrows with the clients left behind and the server's warnings, to see why. */
function fail(error, server, behind) {
  const sample = behind.slice(0, 10).map((c) => `${c.name} last=${c.last()} state=${JSON.stringify(c.state)}`);
  const warnings = server
    .log()
    .split('\n')
    .filter((line) => /WARN|ERROR/.test(line))
    .slice(-30);
  throw new Error(`${error.message}: ${behind.length} behind\n${sample.join('\n')}\nserver warnings:\n${warnings.join('\n')}`);
}
