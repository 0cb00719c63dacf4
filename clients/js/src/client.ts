/**
 * The client: one logical connection that outlives its sockets.
 *
 * It owns what the server leaves to clients (docs/protocol.md sections 7 and 10): the cursor
 * passed on every reconnect, the duplicate filter, the sends waiting for their ack (resent
 * with the same `clientMsgId` until acknowledged), the reconnect schedule and the token's
 * renewal. The transports (`ws.ts`, `socketio.ts`) only frame; `reasons.ts` decides whether
 * an ending is worth coming back from.
 */
import { Backoff, BackoffOptions } from './backoff.js';
import { Cursor, CursorStorage } from './cursor.js';
import { AckOf, ClientEventName, Payload, ServerEventName, ServerEvents } from './events.js';
import { verdictOf } from './reasons.js';
import { loadIo, IoFunction, socketIoConnector } from './socketio.js';
import { AckReply, Connector, Transport } from './transport.js';
import { WebSocketConstructor, wsConnector } from './ws.js';

/** Why the token-getter is asked. */
export type TokenReason = 'connect' | 'expired' | 'expiring';
export type TokenGetter = (reason: TokenReason) => string | Promise<string>;

export interface ClientOptions {
  /** The gateway's base URL, `https://host[:port]` (no path: `/ws` or `/socket.io/` is added). */
  url: string;
  /** A token, or a function that returns the current one (asked again when it expires). */
  token: string | TokenGetter;
  /** The door. Default `'ws'`. */
  transport?: 'ws' | 'socket.io';
  /** `/ws`: a `WebSocket` implementation; default the global one. */
  WebSocket?: WebSocketConstructor;
  /** `/ws`: `fetch` for the admission probe after a failed open; `false` turns it off. */
  fetch?: typeof fetch | false;
  /** Socket.IO: socket.io-client's `io`; default `import('socket.io-client')`. */
  io?: IoFunction;
  /** Socket.IO: more `io()` options (e.g. `{ transports: ['websocket'] }`). */
  socketOptions?: Record<string, unknown>;
  /** The cursor to start from; a larger stored one wins. `0`: everything the user may see. */
  lastMessageId?: number;
  /** Where the cursor survives a reload: `localStorage` or `{ get(key), set(key, value) }`. */
  storage?: CursorStorage;
  /** The storage key. Default `switchboard:lastMessageId`. */
  storageKey?: string;
  backoff?: BackoffOptions;
  /** How many recent ids the duplicate filter remembers beside the cursor. Default 2048. */
  dedupeWindow?: number;
  /** A renewal on `token-expiring` failed (the getter threw or the server refused the token). */
  onTokenError?: (error: unknown) => void;
  /** Test seam: opens connections. */
  connector?: Connector;
}

/** The connection's state, as `onState` listeners hear it. */
export type ConnectionState =
  | { state: 'connecting'; attempt: number }
  | { state: 'connected'; welcome: ServerEvents['connected'] }
  /** The catch-up after a (re)connect with a cursor ended: `count` messages were missed. */
  | { state: 'recovered'; count: number; complete: boolean }
  /** Cut off; a new attempt follows in `retryInMs`. */
  | { state: 'offline'; reason: string; retryInMs: number }
  /** Over for good: `client_closed`, `revoked`, `invalid_token`, `token_expired`, `forbidden`, ... */
  | { state: 'closed'; reason: string };

/** A refusal from the server (`ok: false`), or a send the client gave up on. */
export class SwitchboardError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'SwitchboardError';
  }
}

/** A custom event (REST `publish` or the embedded API): any object, stored ones with `id`. */
export type CustomEvent = Record<string, unknown>;
type DataOf<E extends string> = E extends ServerEventName ? ServerEvents[E] : CustomEvent;
type Listener = (data: any) => void;

/** Requests that are safe to send again after a cut: reads, idempotent writes, keyed sends. */
const RESENDABLE = new Set<string>(['get-active-users', 'get-users-stats', 'send-message', 'join-room', 'room-message', 'sync']);

interface Pending {
  event: string;
  data: unknown;
  resolve(value: any): void;
  reject(error: SwitchboardError): void;
  /** Sent on the current connection (and not yet answered). */
  sent: boolean;
}

let keyCounter = 0;
/** A `clientMsgId`: made once per send and reused on every resend. */
function newClientMsgId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  keyCounter += 1;
  return `${Date.now().toString(36)}-${keyCounter}-${Math.random().toString(36).slice(2)}`;
}

export class SwitchboardClient {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly stateListeners = new Set<(state: ConnectionState) => void>();
  private readonly pending = new Set<Pending>();
  private readonly cursor: Cursor;
  private readonly backoff: Backoff;
  private current: ConnectionState = { state: 'connecting', attempt: 0 };
  private transport: Transport | undefined;
  private connector: Connector | undefined;
  private token: string | undefined;
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** A fresh token was asked for after an expiry; another expiry before `connected` is final. */
  private renewed = false;
  private renewing = false;
  /** The catch-up in progress: how many messages it handed over so far. */
  /**
   * A catch-up under way. `held` fills once the first page ended with `more: true`: from then
   * on the server's live messages and the next pages' replays interleave (both above the
   * page's last id), and handing a live message over would move the cursor past the replay
   * still to come, which the duplicate filter would then drop. So stored messages are held,
   * by id, until the last page, then handed over in id order.
   */
  private recovering: { count: number; held?: Map<number, [string, unknown]> } | undefined;
  private started: Promise<void> | undefined;

  constructor(private readonly options: ClientOptions) {
    this.cursor = new Cursor(options.storage, options.storageKey ?? 'switchboard:lastMessageId', options.lastMessageId, options.dedupeWindow);
    this.backoff = new Backoff(options.backoff);
  }

  /** Starts connecting (once); resolves when the first attempt has begun. */
  connect(): Promise<void> {
    this.started ??= (async () => {
      await this.cursor.load();
      this.connector = this.options.connector ?? (await this.defaultConnector());
      this.attempt();
    })();
    return this.started;
  }

  /** The current state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** The highest message id handed to the application: the recovery cursor. */
  get lastMessageId(): number | undefined {
    return this.cursor.value;
  }

  /** Listens to a server event (typed for the protocol's events); returns the unsubscribe. */
  on<E extends ServerEventName | (string & {})>(event: E, listener: (data: DataOf<E>) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Listens to connection state changes; returns the unsubscribe. */
  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /**
   * Sends a client event; resolves with its ack's fields, rejects with a `SwitchboardError`
   * (the server's `code`, or `closed` / `disconnected`). Sent now when connected, else on the
   * next connection; `send-message` and `room-message` get a `clientMsgId` if they have none.
   */
  request<E extends ClientEventName>(event: E, ...[data]: Payload<E> extends void ? [] : [Payload<E>]): Promise<AckOf<E>> {
    if (this.current.state === 'closed') {
      return Promise.reject(new SwitchboardError('closed', `the client is closed (${this.current.reason})`));
    }
    let payload: unknown = data;
    if ((event === 'send-message' || event === 'room-message') && data && !(data as { clientMsgId?: string }).clientMsgId) {
      payload = { ...(data as object), clientMsgId: newClientMsgId() };
    }
    return new Promise((resolve, reject) => {
      const entry: Pending = { event, data: payload, resolve, reject, sent: false };
      this.pending.add(entry);
      if (this.current.state === 'connected' || this.current.state === 'recovered') this.transmit(entry);
    });
  }

  sendMessage(message: string, options: { to?: string; clientMsgId?: string } = {}): Promise<AckOf<'send-message'>> {
    return this.request('send-message', { message, ...options });
  }
  roomMessage(room: string, message: string, options: { clientMsgId?: string } = {}): Promise<AckOf<'room-message'>> {
    return this.request('room-message', { room, message, ...options });
  }
  joinRoom(room: string): Promise<AckOf<'join-room'>> {
    return this.request('join-room', { room });
  }
  leaveRoom(room: string): Promise<AckOf<'leave-room'>> {
    return this.request('leave-room', { room });
  }
  getActiveUsers(): Promise<AckOf<'get-active-users'>> {
    return this.request('get-active-users');
  }
  getUsersStats(): Promise<AckOf<'get-users-stats'>> {
    return this.request('get-users-stats');
  }

  /** Drops the current connection and comes back at once (e.g. on the browser's `online`). */
  reconnect(): void {
    if (this.current.state === 'closed' || !this.connector) return;
    clearTimeout(this.timer);
    this.transport?.close();
    this.transport = undefined;
    this.backoff.reset();
    this.cut();
    this.attempt();
  }

  /** Closes for good: pending sends are rejected with `closed`. */
  close(): void {
    this.finish('client_closed');
  }

  private async defaultConnector(): Promise<Connector> {
    if (this.options.transport === 'socket.io') {
      const io = this.options.io ?? (await loadIo());
      return socketIoConnector(io, { socketOptions: this.options.socketOptions ?? {} });
    }
    const ws: Parameters<typeof wsConnector>[0] = {};
    if (this.options.WebSocket) ws.WebSocket = this.options.WebSocket;
    if (this.options.fetch !== undefined) ws.fetch = this.options.fetch;
    return wsConnector(ws);
  }

  private async currentToken(reason: TokenReason): Promise<string> {
    const source = this.options.token;
    if (typeof source === 'string') return source;
    if (this.token === undefined || reason !== 'connect') this.token = await source(reason);
    return this.token;
  }

  private attempt(fresh = false): void {
    if (this.current.state === 'closed' || !this.connector) return;
    this.attempts += 1;
    const attempt = this.attempts;
    this.setState({ state: 'connecting', attempt });
    const connector = this.connector;
    void this.currentToken(fresh ? 'expired' : 'connect').then(
      (token) => {
        // Superseded meanwhile (`reconnect()`, `close()`).
        if (this.attempts !== attempt || this.current.state !== 'connecting') return;
        const opening = { url: this.options.url, token, ...(this.cursor.value === undefined ? {} : { lastMessageId: this.cursor.value }) };
        this.recovering = this.cursor.value === undefined ? undefined : { count: 0 };
        let transport: Transport | undefined;
        transport = connector(opening, {
          event: (name, data) => {
            if (this.transport === transport) this.receive(name, data);
          },
          ended: (reason, hint) => {
            if (this.transport === transport) this.ended(reason, hint);
          },
        });
        this.transport = transport;
      },
      (error) => {
        if (this.attempts !== attempt || this.current.state !== 'connecting') return;
        // A getter that fails may succeed later (the application's back end was down).
        this.options.onTokenError?.(error);
        this.ended('token_unavailable');
      },
    );
  }

  private receive(name: string, data: unknown): void {
    if (name === 'connected') return this.opened(data as ServerEvents['connected']);
    const id = (data as { id?: unknown } | null)?.id;
    if (typeof id === 'number' && name !== 'error') {
      const held = this.recovering?.held;
      if (held) {
        if (!this.cursor.isDuplicate(id)) held.set(id, [name, data]);
        return;
      }
      // A stored message: handed over once, in id order.
      if (!this.cursor.admit(id)) return;
      if (this.recovering) this.recovering.count += 1;
    }
    if (name === 'sync-complete' && this.recovering) return this.caughtUp(data as ServerEvents['sync-complete']);
    if (name === 'token-expiring') void this.renewToken();
    this.emit(name, data);
  }

  private opened(welcome: ServerEvents['connected']): void {
    this.backoff.reset();
    this.renewed = false;
    this.setState({ state: 'connected', welcome });
    this.emit('connected', welcome);
    // In the order they were made: the server gives ids in the order events arrive.
    for (const entry of this.pending) if (!entry.sent) this.transmit(entry);
  }

  /** The end of a catch-up page: asks for the next one, or says how much was recovered. */
  private caughtUp(done: ServerEvents['sync-complete']): void {
    if (done.more) {
      if (this.recovering) this.recovering.held ??= new Map();
      this.transport?.send('sync', { since: done.lastMessageId });
      return;
    }
    const recovering = this.recovering;
    this.recovering = undefined;
    let count = recovering?.count ?? 0;
    const held = recovering?.held;
    if (held) {
      for (const id of [...held.keys()].sort((a, b) => a - b)) {
        const [event, data] = held.get(id) as [string, unknown];
        if (!this.cursor.admit(id)) continue;
        count += 1;
        this.emit(event, data);
      }
    }
    this.setState({ state: 'recovered', count, complete: done.complete });
  }

  private transmit(entry: Pending): void {
    const transport = this.transport;
    if (!transport) return;
    entry.sent = true;
    transport.send(entry.event, entry.data, (reply: AckReply) => {
      if (this.transport !== transport || !this.pending.has(entry)) return;
      this.pending.delete(entry);
      if (reply.ok) {
        const { ok: _ok, ...fields } = reply;
        if (typeof fields.id === 'number') this.cursor.remember(fields.id);
        entry.resolve(fields);
      } else {
        entry.reject(new SwitchboardError(reply.code, reply.error));
      }
    });
  }

  private async renewToken(): Promise<void> {
    // One renewal at a time: a fresh token that is itself within the warning gets warned
    // again at once, and must not turn into a loop of renewals.
    if (typeof this.options.token === 'string' || this.renewing) return;
    this.renewing = true;
    try {
      const previous = this.token;
      const token = await this.currentToken('expiring');
      if (token !== previous) await this.request('refresh-token', { token });
    } catch (error) {
      this.options.onTokenError?.(error);
    } finally {
      this.renewing = false;
    }
  }

  /** The connection ended: come back later, with a fresh token, or never. */
  private ended(reason: string, hintMs?: number): void {
    this.transport = undefined;
    this.cut();
    const verdict = verdictOf(reason, hintMs);
    if (verdict.action === 'stop') return this.finish(reason);
    if (verdict.action === 'renew') {
      if (typeof this.options.token === 'string' || this.renewed) return this.finish(reason);
      this.renewed = true;
      return this.attempt(true);
    }
    const retryInMs = this.backoff.next(verdict.retryAfterMs);
    this.setState({ state: 'offline', reason, retryInMs });
    this.timer = setTimeout(() => this.attempt(), retryInMs);
  }

  /** What a cut does to the sends in flight: resent later, or given up when unsafe to repeat. */
  private cut(): void {
    this.recovering = undefined;
    for (const entry of this.pending) {
      if (!entry.sent) continue;
      entry.sent = false;
      if (!RESENDABLE.has(entry.event)) {
        this.pending.delete(entry);
        entry.reject(new SwitchboardError('disconnected', `the connection was cut before "${entry.event}" was answered`));
      }
    }
  }

  private finish(reason: string): void {
    if (this.current.state === 'closed') return;
    clearTimeout(this.timer);
    const transport = this.transport;
    this.transport = undefined;
    transport?.close();
    this.setState({ state: 'closed', reason });
    for (const entry of this.pending) entry.reject(new SwitchboardError('closed', `the client is closed (${reason})`));
    this.pending.clear();
  }

  private setState(state: ConnectionState): void {
    this.current = state;
    for (const listener of [...this.stateListeners]) listener(state);
  }

  private emit(name: string, data: unknown): void {
    for (const listener of [...(this.listeners.get(name) ?? [])]) listener(data);
  }
}

/** Creates a client and starts connecting. */
export function connect(options: ClientOptions): SwitchboardClient {
  const client = new SwitchboardClient(options);
  void client.connect();
  return client;
}
