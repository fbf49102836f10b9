// How many replies a thread's first message shows. Storage gives a first
// message its `reply_count`: the replies stored when it was read. The page
// also sees replies itself: live, in history pages, in a thread it opened.
// The count shown adds the replies seen that the stored count cannot
// include, counts each reply once, and never goes down.

interface Stored {
  /** `reply_count` as read. */
  count: number;
  /** The highest `seq` that count can include. */
  basis: number;
}

/** A thread's first message, as far as its count goes. */
export interface ThreadRoot {
  seq: number;
  reply_count?: number;
}

/** A reply, as far as the count goes. */
export interface ThreadReply {
  seq: number;
  reply_to?: number;
}

export class ReplyCounts {
  private readonly stored = new Map<number, Stored>();
  private readonly seen = new Map<number, Set<number>>();

  /**
   * Takes the stored state of a thread's first message. `basis` is the
   * highest `seq` its `reply_count` can include: for a page of history, the
   * newest message stored when it was read. Pass `Infinity` when that is not
   * known (a message replayed from storage): the count is then the larger
   * of the stored one and the replies seen. Returns whether the count changed.
   */
  root(root: ThreadRoot, basis: number): boolean {
    const count = root.reply_count ?? 0;
    if (count === 0) return false;
    const before = this.count(root.seq);
    const held = this.stored.get(root.seq);
    const candidate = { count, basis };
    if (!held || this.total(root.seq, candidate) >= this.total(root.seq, held)) this.stored.set(root.seq, candidate);
    return this.count(root.seq) !== before;
  }

  /** Takes a reply; returns whether its thread's count changed (false for one seen before). */
  reply(reply: ThreadReply): boolean {
    if (reply.reply_to === undefined) return false;
    const before = this.count(reply.reply_to);
    let seen = this.seen.get(reply.reply_to);
    if (!seen) {
      seen = new Set();
      this.seen.set(reply.reply_to, seen);
    }
    seen.add(reply.seq);
    return this.count(reply.reply_to) !== before;
  }

  /** The replies in the thread of message `root`. */
  count(root: number): number {
    const held = this.stored.get(root);
    const seen = this.seen.get(root)?.size ?? 0;
    return held ? Math.max(this.total(root, held), seen) : seen;
  }

  private total(root: number, stored: Stored): number {
    let later = 0;
    for (const seq of this.seen.get(root) ?? []) if (seq > stored.basis) later += 1;
    return stored.count + later;
  }
}
