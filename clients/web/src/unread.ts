// The user's unread posts and mentions per channel, as the page counts
// them: the gateway's counts (`unread`), which storage keeps a few
// milliseconds behind, plus the posts from others that arrived live after
// what those counts include, less what the user read since.

/** One channel's counts as the gateway gave them (`ChannelUnread`). */
export interface StoredCounts {
  read_seq: number;
  last_seq: number;
  unread: number;
  mentions: number;
}

const NONE: StoredCounts = { read_seq: 0, last_seq: 0, unread: 0, mentions: 0 };

export class UnreadCounter {
  /** The last counts from the gateway. */
  private stored: StoredCounts = NONE;
  /** Whether the gateway answered for this channel yet. */
  known = false;
  /** The user's read position: the gateway's, or further when they read or posted since. */
  read = 0;
  /** Posts from others that arrived live, past both `read` and the stored counts: seq → whether they mention the user. */
  private readonly live = new Map<number, boolean>();

  /** The gateway's counts. Live posts they include are no longer counted apart. */
  take(counts: StoredCounts): void {
    this.stored = { read_seq: counts.read_seq, last_seq: counts.last_seq, unread: counts.unread, mentions: counts.mentions };
    this.known = true;
    this.read = Math.max(this.read, counts.read_seq);
    this.prune(Math.max(this.read, counts.last_seq));
  }

  /** A post from someone else arrived live; returns whether it counts (it is past what is read and counted). */
  post(seq: number, mentionsMe: boolean): boolean {
    if (seq <= this.read || seq <= this.stored.last_seq || this.live.has(seq)) return false;
    this.live.set(seq, mentionsMe);
    return true;
  }

  /** Post `seq` was edited: whether it mentions the user now. */
  edited(seq: number, mentionsMe: boolean): void {
    if (this.live.has(seq)) this.live.set(seq, mentionsMe);
  }

  /** Post `seq` was deleted: it is no longer unread. */
  deleted(seq: number): void {
    this.live.delete(seq);
  }

  /** The user read (or posted) up to `seq`; returns whether that moved their position. */
  readTo(seq: number): boolean {
    if (seq <= this.read) return false;
    this.read = seq;
    this.prune(seq);
    return true;
  }

  /**
   * Whether the stored counts may include posts the user has read since:
   * they read part of what those counts cover. Ask the gateway again.
   */
  get stale(): boolean {
    const s = this.stored;
    return s.unread > 0 && this.read > s.read_seq && this.read < s.last_seq;
  }

  /** Unread posts. */
  get unread(): number {
    return this.fromStored("unread") + this.live.size;
  }

  /** Unread posts that mention the user. */
  get mentions(): number {
    let n = this.fromStored("mentions");
    for (const mention of this.live.values()) if (mention) n += 1;
    return n;
  }

  /** What the stored counts still add: all of them until the user reads past them. */
  private fromStored(what: "unread" | "mentions"): number {
    const s = this.stored;
    if (this.read >= s.last_seq) return 0;
    return s[what];
  }

  private prune(upTo: number): void {
    for (const seq of this.live.keys()) if (seq <= upTo) this.live.delete(seq);
  }
}

/** The page's title with `total` unread posts before it: "(3) alice · chatmesh". */
export function titleWith(total: number, base: string): string {
  return total > 0 ? `(${total}) ${base}` : base;
}

/** The sidebar badge's text and tooltip for `unread` posts, `mentions` of them mentioning the user. */
export function badgeText(unread: number, mentions: number): { text: string; title: string } {
  if (unread === 0) return { text: "", title: "" };
  const posts = unread === 1 ? "1 unread message" : `${unread} unread messages`;
  if (mentions === 0) return { text: String(unread), title: posts };
  return { text: `@ ${unread}`, title: `${posts}, ${mentions === 1 ? "1 mentions" : `${mentions} mention`} you` };
}
