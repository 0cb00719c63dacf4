/**
 * The `/ws` door: one JSON object per text frame (docs/protocol.md section 1), with no
 * dependency: the browser's `WebSocket`, Node's global one (Node >= 22, or 20.10+ with
 * `--experimental-websocket`), or any implementation of the same standard API passed in.
 *
 * The standard API hides why a handshake failed (no status, no body), yet the client must
 * tell a revoked or invalid token (stop) from a server that is down (retry). So after a
 * connection that never opened, it asks once over HTTP: a plain GET of the same URL gets the
 * same admission answer (401 and its text for a token, 400 for a bad cursor, 503 while
 * stopping, 503 `busy` with `Retry-After` and the exact `retryAfterMs` in the body when no
 * handshake turn came in time). A valid token gets 400 "Connection header did not include
 * 'upgrade'", and any failure of the probe itself counts as "down, come back later".
 */
import { Handlers, Opening, Transport, Connector, AckReply } from './transport.js';
import { hintOf, reasonOfClose, reasonOfRefusal, CLOSE_REASONS } from './reasons.js';

/** The parts of the standard `WebSocket` the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WsOptions {
  WebSocket?: WebSocketConstructor;
  /** For the admission probe; `false` skips it (every failed open is then retried). */
  fetch?: typeof fetch | false;
}

/** The `/ws` URL for an opening: `ws(s)://host/ws?token=...&lastMessageId=...`. */
export function wsUrl({ url, token, lastMessageId }: Opening): string {
  const target = new URL(url);
  target.protocol = target.protocol === 'https:' || target.protocol === 'wss:' ? 'wss:' : 'ws:';
  target.pathname = `${target.pathname.replace(/\/$/, '')}/ws`;
  target.searchParams.set('token', token);
  if (lastMessageId !== undefined) target.searchParams.set('lastMessageId', String(lastMessageId));
  return target.toString();
}

export function wsConnector(options: WsOptions = {}): Connector {
  return (opening, handlers) => new WsTransport(opening, handlers, options);
}

class WsTransport implements Transport {
  private socket: WebSocketLike | undefined;
  private nextAck = 1;
  private readonly acks = new Map<number, (reply: AckReply) => void>();
  private opened = false;
  private probing = false;
  private done = false;
  /** A retry hint from an `error` frame sent just before a close. */
  private hint: number | undefined;

  constructor(private readonly opening: Opening, private readonly handlers: Handlers, private readonly options: WsOptions) {
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Impl) {
      throw new Error('no WebSocket implementation: pass one as `WebSocket` (Node < 22 has no global WebSocket)');
    }
    try {
      this.socket = new Impl(wsUrl(opening));
    } catch {
      // A constructor that throws (offline, a bad URL) is a failed attempt like any other.
      queueMicrotask(() => this.end('transport_error'));
      return;
    }
    const socket = this.socket;
    socket.onopen = () => {
      this.opened = true;
    };
    socket.onmessage = (message) => this.receive(message.data);
    // A failed handshake fires `error`, and `close` after it, except in some implementations
    // (Node 20's undici fires only `error`): either one starts the probe, once.
    socket.onerror = () => {
      if (!this.opened) void this.probe();
    };
    socket.onclose = (event) => {
      if (this.opened) {
        const reason = reasonOfClose(event.code, event.reason);
        this.end(reason, this.hint ?? hintOf(event.reason));
      } else {
        void this.probe();
      }
    };
  }

  send(event: string, data: unknown, ack?: (reply: AckReply) => void): void {
    const frame: { event: string; data?: unknown; ack?: number } = { event };
    if (data !== undefined) frame.data = data;
    if (ack) {
      frame.ack = this.nextAck++;
      this.acks.set(frame.ack, ack);
    }
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify(frame));
  }

  close(): void {
    this.done = true;
    try {
      this.socket?.close(1000, 'closed by the client');
    } catch {
      // Already closing.
    }
  }

  private receive(raw: unknown): void {
    if (typeof raw !== 'string') return;
    let frame: { event?: unknown; data?: unknown };
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (typeof frame.event !== 'string') return;
    if (frame.event === 'ack') {
      const { ack, ...reply } = (frame.data ?? {}) as { ack?: number } & AckReply;
      const settle = typeof ack === 'number' ? this.acks.get(ack) : undefined;
      if (settle) {
        this.acks.delete(ack as number);
        settle(reply as AckReply);
      }
      return;
    }
    if (frame.event === 'error') {
      const code = (frame.data as { code?: unknown } | undefined)?.code;
      if (typeof code === 'string' && code in CLOSE_REASONS) this.hint = hintOf(frame.data) ?? this.hint;
    }
    this.handlers.event(frame.event, frame.data);
  }

  /** Why a connection did not open: the admission answer of a plain GET (see the module doc). */
  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const fetcher = this.options.fetch === false ? undefined : (this.options.fetch ?? globalThis.fetch);
    if (!fetcher || this.done) return this.end('transport_error');
    try {
      const url = new URL(wsUrl(this.opening));
      url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
      const response = await fetcher(url.toString());
      const body = (await response.json().catch(() => ({}))) as { error?: unknown; retryAfterMs?: unknown };
      const text = typeof body.error === 'string' ? body.error : '';
      // The body's `retryAfterMs` is exact; `Retry-After` is whole seconds, rounded up.
      const retryAfter = Number(response.headers.get('retry-after'));
      const hint = hintOf(body) ?? (Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
      // A valid token reaches the upgrade check: the failure was elsewhere (network, proxy).
      const refused =
        response.status === 401 || response.status === 403 || text.startsWith('lastMessageId') || text.startsWith('server busy');
      this.end(refused ? reasonOfRefusal(text, response.status) : 'unavailable', hint);
    } catch {
      this.end('transport_error');
    }
  }

  private end(reason: string, retryAfterMs?: number): void {
    if (this.done) return;
    this.done = true;
    this.acks.clear();
    this.handlers.ended(reason, retryAfterMs);
  }
}
