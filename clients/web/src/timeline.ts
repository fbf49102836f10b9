// A channel's messages as the page shows them: in sequence order, each
// once, whether it came live, from a replay after a reconnect, or from a
// page of history.

export interface Sequenced {
  message_id: string;
  seq: number;
}

function compare(a: Sequenced, b: Sequenced): number {
  if (a.seq !== b.seq) return a.seq - b.seq;
  // Equal numbers do not happen within a channel; keep the order total anyway.
  const x = BigInt(a.message_id);
  const y = BigInt(b.message_id);
  return x < y ? -1 : x > y ? 1 : 0;
}

export class Timeline<T extends Sequenced> {
  private readonly items: T[] = [];
  private readonly ids = new Set<string>();

  get length(): number {
    return this.items.length;
  }

  has(messageId: string): boolean {
    return this.ids.has(messageId);
  }

  /** Inserts `item` in order; returns its index, or -1 if it is already there. */
  insert(item: T): number {
    if (this.ids.has(item.message_id)) return -1;
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const at = this.items[mid];
      if (at !== undefined && compare(at, item) < 0) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, item);
    this.ids.add(item.message_id);
    return lo;
  }

  at(index: number): T | undefined {
    return this.items[index];
  }

  /** The message with the lowest `seq`. */
  get oldest(): T | undefined {
    return this.items[0];
  }

  /** The message with the highest `seq`. */
  get newest(): T | undefined {
    return this.items[this.items.length - 1];
  }

  toArray(): T[] {
    return [...this.items];
  }
}
