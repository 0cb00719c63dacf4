// The package's pure parts: backoff with full jitter, the cursor and duplicate filter with a
// storage, and the verdicts on close reasons and refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verdictOf, reasonOfClose, reasonOfRefusal, hintOf } from '../dist/index.js';
import { Backoff } from '../dist/backoff.js';
import { Cursor } from '../dist/cursor.js';

test('backoff draws between 0 and a bound that doubles up to the maximum, and resets', () => {
  const highest = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => highest.next()), [99, 199, 399, 799, 999, 999]);
  highest.reset();
  assert.equal(highest.next(), 99);
  const lowest = new Backoff({ initialMs: 100 }, () => 0);
  assert.equal(lowest.next(), 0, 'full jitter: a client may come back at once');
});

test("a server's hint is a floor under the backoff, still spread", () => {
  const backoff = new Backoff({ initialMs: 100 }, () => 0.5);
  const wait = backoff.next(5000);
  assert.ok(wait >= 5000 && wait < 5100, String(wait));
});

test('the cursor drops ids seen, keeps acked ids out of the cursor, and survives in storage', async () => {
  const saved = new Map([['k', '7']]);
  const storage = { get: (key) => saved.get(key), set: (key, value) => void saved.set(key, value) };
  const cursor = new Cursor(storage, 'k', undefined, 3);
  await cursor.load();
  assert.equal(cursor.value, 7);
  assert.equal(cursor.admit(7), false, 'at the cursor: seen');
  assert.equal(cursor.admit(9), true);
  cursor.remember(12); // our own send's id: later copies dropped, the cursor stays
  assert.equal(cursor.value, 9);
  assert.equal(cursor.admit(10), true);
  assert.equal(cursor.admit(12), false);
  assert.equal(cursor.admit(13), true);
  await Promise.resolve();
  assert.equal(saved.get('k'), '13');

  const local = { items: {}, getItem(k) { return this.items[k] ?? null; }, setItem(k, v) { this.items[k] = v; } };
  const browser = new Cursor(local, 'k', 3);
  await browser.load();
  browser.admit(4);
  assert.equal(local.items.k, '4', 'localStorage works as it is');
});

test('verdicts: stop on revocation and refusals, renew on expiry, retry on the rest', () => {
  for (const reason of ['revoked', 'invalid_token', 'forbidden', 'bad_request']) assert.equal(verdictOf(reason).action, 'stop', reason);
  for (const reason of ['token_expired', 'token_not_yet_valid']) assert.equal(verdictOf(reason).action, 'renew', reason);
  for (const reason of ['server_shutdown', 'node_lost', 'kicked', 'idle_timeout', 'rate_limited', 'transport_error', 'unavailable']) {
    assert.equal(verdictOf(reason).action, 'retry', reason);
  }
  assert.deepEqual(verdictOf('server_shutdown', 3000), { action: 'retry', reason: 'server_shutdown', retryAfterMs: 3000 });
});

test('close frames and refusal texts map to reason words', () => {
  assert.equal(reasonOfClose(4003, 'token revoked by an operator'), 'revoked');
  assert.equal(reasonOfClose(1008, 'disconnected by an operator'), 'kicked');
  assert.equal(reasonOfClose(1001, ''), 'server_shutdown');
  assert.equal(reasonOfClose(1006, ''), 'transport_error');
  assert.equal(reasonOfRefusal('token revoked', 401), 'revoked');
  assert.equal(reasonOfRefusal('token expired', 401), 'token_expired');
  assert.equal(reasonOfRefusal('invalid token: bad signature', 401), 'invalid_token');
  assert.equal(reasonOfRefusal('origin not allowed', 403), 'forbidden');
  assert.equal(reasonOfRefusal('server is shutting down', 503), 'unavailable');
  assert.equal(reasonOfRefusal('xhr poll error'), 'unavailable');
  assert.equal(reasonOfRefusal('server busy; retry after 1834 ms', 503), 'busy');
  assert.equal(reasonOfRefusal('server busy; retry after 1834 ms'), 'busy');
  assert.deepEqual(verdictOf('busy', 1834), { action: 'retry', reason: 'busy', retryAfterMs: 1834 });
});

test('retry hints: fields in ms or seconds, JSON or words in a close sentence', () => {
  assert.equal(hintOf({ code: 'server_shutdown', retryAfterMs: 1500 }), 1500);
  assert.equal(hintOf({ retryAfter: 2 }), 2000);
  assert.equal(hintOf('{"retryAfterMs": 700}'), 700);
  assert.equal(hintOf('server shutting down; retry after 3 s'), 3000);
  assert.equal(hintOf('server shutting down; retry after 250 ms'), 250);
  assert.equal(hintOf('server shutting down'), undefined);
  assert.equal(hintOf('server busy; retry after 1834 ms'), 1834, 'a Socket.IO connect_error');
  assert.equal(hintOf({ error: 'server busy; retry after 1834 ms', code: 'busy', retryAfterMs: 1834 }), 1834);
});
