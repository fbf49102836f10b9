// Read receipts: under the user's latest post in a channel, who else has
// read that far ("Seen by bob, carol"). Members' positions come from
// `GET /v1/channels/<id>/reads` when the channel opens (and after a
// reconnect, since receipts are not replayed), then from `read` events;
// a member who posted after the user's post has read it too, since posting
// moves the author's position to their post.

import type { ChatClient, Message, ReadEvent } from "../../js/src/index.js";
import type { ChannelView } from "./view.js";

/** Names shown before the rest are counted. */
const NAMED = 5;

/** "Seen by bob", "Seen by bob, carol", "Seen by a, b, c, d, e and 2 others". */
export function seenText(users: readonly string[]): string {
  if (users.length === 0) return "";
  if (users.length <= NAMED) return `Seen by ${users.join(", ")}`;
  const rest = users.length - NAMED;
  return `Seen by ${users.slice(0, NAMED).join(", ")} and ${rest === 1 ? "1 other" : `${rest} others`}`;
}

/** Who of `positions` (user → read position) and `later` posts' authors has read post `seq`, without `me`, sorted. */
export function readersOf(seq: number, me: string, positions: ReadonlyMap<string, number>, later: readonly Pick<Message, "seq" | "sender_id">[]): string[] {
  const readers = new Set<string>();
  for (const [user, at] of positions) if (user !== me && at >= seq) readers.add(user);
  for (const m of later) if (m.seq > seq && m.sender_id !== me) readers.add(m.sender_id);
  return [...readers].sort();
}

export interface ReceiptsHost {
  client(): ChatClient | undefined;
  user(): string;
  /** Draws post `seq` of `view` again. */
  redraw(view: ChannelView, seq: number): void;
}

export class Receipts {
  constructor(private readonly host: ReceiptsHost) {}

  /** Reads every member's position in `view`'s channel. */
  async load(view: ChannelView): Promise<void> {
    const client = this.host.client();
    if (!client) return;
    try {
      const positions = await client.http.readPositions(view.id);
      if (this.host.client() !== client) return;
      for (const p of positions) this.move(view, p.user_id, p.seq);
    } catch {
      // Receipts are advisory; the events keep them going.
      return;
    }
    this.update(view);
  }

  /** A member's read position moved. */
  read(view: ChannelView, e: ReadEvent): void {
    if (e.user_id === this.host.user()) return;
    this.move(view, e.user_id, e.seq);
    this.update(view);
  }

  private move(view: ChannelView, user: string, seq: number): void {
    if (seq > (view.positions.get(user) ?? 0)) view.positions.set(user, seq);
  }

  /** Works out what the user's latest post shows under it, and draws what changed. */
  update(view: ChannelView): void {
    if (!view.loaded) return;
    const me = this.host.user();
    const posts = view.timeline.toArray();
    let at = posts.length - 1;
    while (at >= 0 && (posts[at]?.sender_id !== me || posts[at]?.deleted === true)) at -= 1;
    const mine = posts[at];
    const users = mine ? readersOf(mine.seq, me, view.positions, posts.slice(at + 1)) : [];
    const next = mine && users.length > 0 ? { seq: mine.seq, users } : undefined;
    const previous = view.receipt;
    if (previous?.seq === next?.seq && previous?.users.join(",") === next?.users.join(",")) return;
    view.receipt = next;
    if (previous) this.host.redraw(view, previous.seq);
    if (next && next.seq !== previous?.seq) this.host.redraw(view, next.seq);
  }
}
