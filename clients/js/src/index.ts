/**
 * `@switchboard/client`: a switchboard client that recovers by itself (README.md beside this
 * package). `connect(options)` is the entry point; the rest is its types.
 */
export { connect, SwitchboardClient, SwitchboardError } from './client.js';
export type { ClientOptions, ConnectionState, CustomEvent, TokenGetter, TokenReason } from './client.js';
export type { BackoffOptions } from './backoff.js';
export type { CursorStorage } from './cursor.js';
export * from './events.js';
export { CLOSE_REASONS, verdictOf, reasonOfClose, reasonOfRefusal, hintOf } from './reasons.js';
export type { CloseReason, Verdict } from './reasons.js';
export type { WebSocketConstructor, WebSocketLike } from './ws.js';
export type { IoFunction, SocketLike } from './socketio.js';
export type { AckReply, Connector, Handlers, Opening, Transport } from './transport.js';
