/**
 * The recovery cursor and the duplicate filter.
 *
 * The cursor is the highest message id the application was handed; every reconnect passes it
 * as `lastMessageId`, so the server replays what was missed (docs/protocol.md section 7). It
 * is kept in memory and, when the application passes a storage (`localStorage` fits), written
 * there too, so a reload resumes where it stopped.
 *
 * The server delivers at least once (a replay repeats ids, a resend after a cut may too), so
 * messages are filtered by id: one at or below the cursor was seen already (a connection gets
 * messages in id order), and a bounded set of recent ids covers the ids seen without moving
 * the cursor (the acks of the client's own sends, which the cursor must not skip past).
 */

/** Where the cursor survives a reload: `localStorage`, or anything with the same two calls. */
export interface CursorStorage {
  getItem?(key: string): string | null | undefined;
  setItem?(key: string, value: string): void;
  get?(key: string): string | null | undefined | Promise<string | null | undefined>;
  set?(key: string, value: string): void | Promise<void>;
}

export class Cursor {
  private highest: number | undefined;
  private readonly recent = new Set<number>();

  constructor(
    private readonly storage: CursorStorage | undefined,
    private readonly key: string,
    initial: number | undefined,
    private readonly window = 2048,
  ) {
    this.highest = initial;
  }

  /** Reads a stored cursor (once, before the first connection); a stored one wins. */
  async load(): Promise<void> {
    if (!this.storage) return;
    const raw = this.storage.get ? await this.storage.get(this.key) : this.storage.getItem?.(this.key);
    const stored = raw == null ? NaN : Number(raw);
    if (Number.isSafeInteger(stored) && stored >= 0 && (this.highest === undefined || stored > this.highest)) {
      this.highest = stored;
    }
  }

  /** The highest id handed to the application, if any. */
  get value(): number | undefined {
    return this.highest;
  }

  /**
   * Takes the id of a message about to be handed to the application: `false` when it was
   * seen already (drop it), else records it and moves the cursor.
   */
  admit(id: number): boolean {
    if (this.isDuplicate(id)) return false;
    this.remember(id);
    this.highest = id;
    void this.save();
    return true;
  }

  /** An id known without being handed over (an ack of our own send): a later copy is dropped. */
  remember(id: number): void {
    this.recent.add(id);
    if (this.recent.size > this.window) {
      // Sets iterate in insertion order: the first is the oldest.
      const oldest = this.recent.values().next().value as number;
      this.recent.delete(oldest);
    }
  }

  isDuplicate(id: number): boolean {
    return this.recent.has(id) || (this.highest !== undefined && id <= this.highest);
  }

  private async save(): Promise<void> {
    if (!this.storage || this.highest === undefined) return;
    const value = String(this.highest);
    try {
      if (this.storage.set) await this.storage.set(this.key, value);
      else this.storage.setItem?.(this.key, value);
    } catch {
      // A full or refused storage costs the cursor's survival across reloads, not the session.
    }
  }
}
