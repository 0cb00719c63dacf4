/**
 * Why a connection ended or was refused, and what the client does about it.
 *
 * The server says why in three ways (docs/protocol.md sections 2 and 11, README "Close
 * reasons"): a `/ws` close frame (code and sentence), a Socket.IO `error { code }` just before
 * the disconnect, and an admission refusal (an HTTP status and text on `/ws`, the
 * `connect_error` message on Socket.IO). This module turns each into one `Verdict`: retry
 * with backoff, retry once with a fresh token, or stop. The tables are held equal to the
 * server's by `test/events.test.js` (close reasons) and `test/unit.test.js` (refusals).
 */

/** The server's close reasons (`sessions.disconnect_reason`) with their `/ws` close codes. */
export const CLOSE_REASONS = {
  frame_too_large: { code: 1009, sentence: 'frame too large' },
  rate_limited: { code: 1008, sentence: 'rate limit exceeded too often' },
  slow_consumer: { code: 1008, sentence: 'slow consumer: the client does not read fast enough' },
  idle_timeout: { code: 1000, sentence: 'idle timeout: nothing received from the client' },
  token_expired: { code: 4001, sentence: 'token expired' },
  kicked: { code: 1008, sentence: 'disconnected by an operator' },
  revoked: { code: 4003, sentence: 'token revoked by an operator' },
  server_shutdown: { code: 1001, sentence: 'server shutting down' },
  node_lost: { code: 1013, sentence: 'this node lost contact with the cluster; reconnect' },
} as const;

export type CloseReason = keyof typeof CLOSE_REASONS;

/** What to do after a connection ended or could not open. */
export type Verdict =
  /** Come back after the backoff (and at least `retryAfterMs` when the server hinted). */
  | { action: 'retry'; reason: string; retryAfterMs?: number }
  /** Ask the token-getter for a fresh token, then come back; stop if that one fails too. */
  | { action: 'renew'; reason: string }
  /** Do not come back: the server will refuse this client until the application acts. */
  | { action: 'stop'; reason: string };

/** Reasons after which coming back is pointless or unwanted. */
const FINAL = new Set<string>(['revoked', 'forbidden', 'invalid_token', 'bad_request']);

/** The verdict on a close reason word (`server_shutdown`, `revoked`, ...). */
export function verdictOf(reason: string, retryAfterMs?: number): Verdict {
  if (FINAL.has(reason)) return { action: 'stop', reason };
  if (reason === 'token_expired' || reason === 'token_not_yet_valid') return { action: 'renew', reason };
  return retryAfterMs === undefined ? { action: 'retry', reason } : { action: 'retry', reason, retryAfterMs };
}

/** The reason word of a `/ws` close frame: by its sentence, else by its code. */
export function reasonOfClose(code: number, sentence: string): string {
  for (const [reason, known] of Object.entries(CLOSE_REASONS)) {
    if (known.sentence === sentence) return reason;
  }
  for (const [reason, known] of Object.entries(CLOSE_REASONS)) {
    // 1008 names three reasons; without the sentence, all three mean "come back later".
    if (known.code === code) return reason;
  }
  return 'transport_error';
}

/**
 * The reason word of an admission refusal: its text (the `/ws` body's `error`, or the
 * Socket.IO `connect_error` message) and, on `/ws`, its HTTP status.
 */
export function reasonOfRefusal(text: string, status?: number): string {
  if (text === 'token revoked') return 'revoked';
  if (text === 'token expired') return 'token_expired';
  if (text === 'token not yet valid') return 'token_not_yet_valid';
  if (text === 'missing token' || text.startsWith('invalid token') || text.startsWith('malformed Authorization')) {
    return 'invalid_token';
  }
  if (text === 'origin not allowed' || status === 403) return 'forbidden';
  if (text.startsWith('lastMessageId must be')) return 'bad_request';
  // No handshake turn in time: come back after the hint the text carries (`retry after N ms`).
  if (text.startsWith('server busy')) return 'busy';
  if (status === 401) return 'invalid_token';
  // 503 (shutting down, unavailable, too many connections) and anything unknown: later.
  return 'unavailable';
}

/**
 * A retry hint in an `error` payload or a close sentence, in milliseconds: `retryAfterMs`,
 * or `retryAfter` in seconds (as HTTP's Retry-After); in a sentence, a JSON object with
 * those fields or the words `retry after <n> ms` / `retry after <n> s`.
 */
export function hintOf(source: unknown): number | undefined {
  if (typeof source === 'string') {
    const text = source.trim();
    if (text.startsWith('{')) {
      try {
        return hintOf(JSON.parse(text));
      } catch {
        return undefined;
      }
    }
    const words = /retry[ -]after[ =:]*(\d+(?:\.\d+)?)\s*(ms|s)?\b/i.exec(text);
    if (!words) return undefined;
    const n = Number(words[1]);
    return words[2]?.toLowerCase() === 'ms' ? n : n * 1000;
  }
  if (source && typeof source === 'object') {
    const { retryAfterMs, retryAfter } = source as { retryAfterMs?: unknown; retryAfter?: unknown };
    if (typeof retryAfterMs === 'number' && retryAfterMs >= 0) return retryAfterMs;
    if (typeof retryAfter === 'number' && retryAfter >= 0) return retryAfter * 1000;
  }
  return undefined;
}
