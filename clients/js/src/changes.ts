import type { Message } from "./http.js";

/** What a change event does to the post it names (`target_seq`). */
export type ChangeKind = NonNullable<Message["kind"]>;

/** A change event: an edit, a delete, or a reaction added or taken back. */
export type Change = Message & { kind: ChangeKind; target_seq: number };

/** Whether `message` is a change to an earlier post rather than a post. */
export function isChange(message: Message): message is Change {
  return message.kind !== undefined;
}

export interface MessageStateOptions {
  /**
   * The reader, for each reaction's `me`. Without it, `me` is what the
   * stored state said, and live reactions leave it as it was.
   */
  userId?: string | undefined;
}

/** One emoji's reactions on a post. */
interface Tally {
  /** Members known to have reacted (true) or not (false), from this emoji's events and the reader's `me`. */
  known: Map<string, boolean>;
  /** Reactions counted in a stored state whose members it does not name. */
  unnamed: number;
  /** The stored state's `me`, when the reader is not known. */
  storedMe: boolean;
}

interface Entry {
  post: Message;
  /** By emoji, in first-use order. */
  tallies: Map<string, Tally>;
}

/**
 * The posts of one channel in their current state, folded from its message
 * events in `seq` order: live ones, ones replayed after a reconnect, and
 * history pages. It follows the protocol's rule: a post carries its state
 * (and the `version` that state includes), and a change applies only when
 * its `seq` is above its target's `version`, so nothing is applied twice.
 *
 * - `edit`: the text is replaced, `edit_count` + 1, `edited_at_ms` is the
 *   edit's time, and the reactions are cleared (they were given to the old text).
 * - `delete`: the post becomes a tombstone: `deleted`, no text,
 *   attachments or reactions. A deleted post takes no further change.
 * - `reaction_add` / `reaction_remove`: once per member and emoji; an
 *   emoji whose count falls to 0 disappears.
 *
 * History gives each emoji's count, not who reacted: a member's second
 * `reaction_add` of an emoji already counted in a stored state counts
 * again (the server keeps one), and a `reaction_remove` from a member the
 * state does not name takes one of the stored count back.
 */
export class MessageState {
  private readonly entries = new Map<number, Entry>();
  private readonly userId: string | undefined;
  private channel: string | undefined;

  constructor(options: MessageStateOptions = {}) {
    this.userId = options.userId;
  }

  /**
   * Folds in one message event. Returns the post it added or changed, in
   * its new state; `undefined` when it changed nothing: a change at or
   * below its target's `version`, to a post this state does not hold (older
   * than what was loaded) or to a deleted one, a duplicate reaction, or a
   * post whose state is not newer than the one held.
   */
  apply(message: Message): Message | undefined {
    if (this.channel === undefined) this.channel = message.channel_id;
    else if (message.channel_id !== this.channel) {
      throw new Error(`MessageState holds channel ${this.channel}, not ${message.channel_id}`);
    }
    if (!isChange(message)) return this.put(message);
    const entry = this.entries.get(message.target_seq);
    if (!entry) return undefined;
    const post = entry.post;
    if (message.seq <= (post.version ?? 0) || post.deleted) return undefined;
    const next: Message = { ...post, version: message.seq };
    switch (message.kind) {
      case "edit":
        next.body = message.body;
        next.edit_count = (post.edit_count ?? 0) + 1;
        next.edited_at_ms = message.created_at_ms;
        entry.tallies.clear();
        break;
      case "delete":
        next.body = "";
        next.deleted = true;
        delete next.attachments;
        entry.tallies.clear();
        break;
      case "reaction_add":
      case "reaction_remove":
        if (!this.react(entry, message)) return undefined;
        break;
      default:
        // A kind this SDK does not know: leave the post as it is.
        return undefined;
    }
    entry.post = this.render(next, entry.tallies);
    return entry.post;
  }

  /** The post `seq`, in its current state. */
  get(seq: number): Message | undefined {
    return this.entries.get(seq)?.post;
  }

  /** Every post held, in `seq` order. */
  get posts(): Message[] {
    return [...this.entries.values()].map((e) => e.post).sort((a, b) => a.seq - b.seq);
  }

  /** How many posts are held. */
  get size(): number {
    return this.entries.size;
  }

  private put(post: Message): Message | undefined {
    const held = this.entries.get(post.seq);
    if (held && (post.version ?? 0) <= (held.post.version ?? 0)) return undefined;
    const tallies = new Map<string, Tally>();
    for (const r of post.reactions ?? []) {
      const known = new Map<string, boolean>();
      let unnamed = r.count;
      if (this.userId !== undefined) {
        known.set(this.userId, r.me);
        if (r.me) unnamed -= 1;
      }
      tallies.set(r.emoji, { known, unnamed: Math.max(0, unnamed), storedMe: r.me });
    }
    const entry: Entry = { post: this.render({ ...post }, tallies), tallies };
    this.entries.set(post.seq, entry);
    return entry.post;
  }

  /** Adds or takes back `change`'s reaction; false when that changes nothing. */
  private react(entry: Entry, change: Change): boolean {
    const emoji = change.emoji ?? "";
    const sender = change.sender_id;
    let tally = entry.tallies.get(emoji);
    if (change.kind === "reaction_add") {
      if (tally?.known.get(sender) === true) return false;
      if (!tally) {
        tally = { known: new Map(), unnamed: 0, storedMe: false };
        entry.tallies.set(emoji, tally);
      }
      tally.known.set(sender, true);
      return true;
    }
    if (!tally) return false;
    const was = tally.known.get(sender);
    if (was === false || (was === undefined && tally.unnamed === 0)) return false;
    if (was === undefined) tally.unnamed -= 1;
    tally.known.set(sender, false);
    if (this.count(tally) === 0) entry.tallies.delete(emoji);
    return true;
  }

  private count(tally: Tally): number {
    let n = tally.unnamed;
    for (const present of tally.known.values()) if (present) n += 1;
    return n;
  }

  /** `post` with `reactions` from `tallies`; fields at their zero value left out, as the server does. */
  private render(post: Message, tallies: Map<string, Tally>): Message {
    const reactions = [];
    for (const [emoji, tally] of tallies) {
      const count = this.count(tally);
      if (count === 0) continue;
      const me = this.userId !== undefined ? tally.known.get(this.userId) === true : tally.storedMe;
      reactions.push({ emoji, count, me });
    }
    if (reactions.length > 0) post.reactions = reactions;
    else delete post.reactions;
    return post;
  }
}
