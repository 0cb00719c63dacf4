// Clients of the package for the tests, on either door.
import { io } from 'socket.io-client';
import { connect } from '../dist/index.js';
import { token } from './support.js';

export const TRANSPORTS = ['ws', 'socket.io'];

/**
 * A client of user `sub` on `transport`. `link` (from `switchable`) lets the test pull its
 * network; `options` override the rest.
 */
export function client(server, sub, transport, { link, ...options } = {}) {
  const base = { url: server.url, token: token(sub), transport, backoff: { initialMs: 200, maxMs: 1000 } };
  if (transport === 'ws' && link) base.WebSocket = link.open;
  if (transport === 'socket.io') {
    base.io = link ? link.open : io;
    base.socketOptions = { transports: ['websocket'] };
  }
  return connect({ ...base, ...options });
}

/** The opener `switchable` wraps for a transport. */
export function opener(transport) {
  return transport === 'ws' ? function Open(url) { return new WebSocket(url); } : (url, options) => io(url, options);
}
