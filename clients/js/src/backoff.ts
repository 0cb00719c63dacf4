/**
 * Reconnect delays: exponential backoff with full jitter (a uniform draw between 0 and the
 * exponential bound), so that clients cut off together, as at a restart, come back spread
 * out instead of in waves. A server hint is a floor: the wait is never shorter than it.
 */

export interface BackoffOptions {
  /** The bound of the first attempt's draw (ms). Default 500. */
  initialMs?: number;
  /** The largest bound (ms). Default 30000. */
  maxMs?: number;
  /** How much the bound grows per failed attempt. Default 2. */
  factor?: number;
}

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30000;
    this.factor = options.factor ?? 2;
  }

  /** The wait before the next attempt; each call widens the following one. */
  next(floorMs = 0): number {
    const bound = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt += 1;
    const drawn = Math.floor(this.random() * bound);
    // Above a hint, jitter still spreads the clients that got the same hint.
    return floorMs > 0 ? floorMs + Math.floor(this.random() * Math.min(bound, floorMs)) : drawn;
  }

  /** A connection opened: the next cut starts from the first bound again. */
  reset(): void {
    this.attempt = 0;
  }
}
