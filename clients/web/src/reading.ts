// Read state on the page: each channel's unread posts and mentions (the
// sidebar's badges and the total in the title), the user's read position
// moved as they read the open channel (`markRead`, at most once a second),
// and the "New messages" line above the first post they had not read.
//
// Counts come from the gateway (`unread`) when the user signs in and after
// every reconnect, and go up as posts from others arrive in a channel the
// user is not looking at: one not open, or any while the page is hidden.
// A channel is read while it is open, its history loaded and the page
// visible; another session of the same user reading it (a `read` event with
// the user's ID) reads it here too.

import type { ChatClient, Message, ReadEvent, UnreadCounts } from "../../js/src/index.js";
import { h } from "./dom.js";
import { mentionsIn, mentionsOf } from "./mentions.js";
import { UnreadCounter } from "./unread.js";
import type { ChannelView } from "./view.js";

/** Least time between two read positions sent for one channel. */
export const READ_GAP_MS = 1_000;

export interface ReadHost {
  client(): ChatClient | undefined;
  user(): string;
  active(): ChannelView | undefined;
  /** Shows `unread` posts, `mentions` of them mentioning the user, on channel `id`'s entry. */
  badge(id: string, unread: number, mentions: number): void;
  /** Unread posts in every channel, for the title. */
  total(unread: number): void;
  /** The open channel's scrolling box. */
  scroller(): HTMLElement;
}

/** The read positions sent for one channel. */
interface Sent {
  /** The highest position the gateway holds or was asked to hold. */
  seq: number;
  /** When the last one went out (Date.now()). */
  at: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class ReadTracker {
  private readonly counters = new Map<string, UnreadCounter>();
  private readonly sent = new Map<string, Sent>();
  /** Counts asked for, per channel. */
  private readonly asking = new Map<string, Promise<void>>();
  /** Channels whose counts could not be read: they are read without a "New messages" line. */
  private readonly unknown = new Set<string>();
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly host: ReadHost,
    private readonly visible: () => boolean = () => document.visibilityState === "visible",
  ) {}

  /** Signed out: forgets everything. */
  clear(): void {
    for (const s of this.sent.values()) clearTimeout(s.timer);
    this.sent.clear();
    this.counters.clear();
    this.asking.clear();
    this.unknown.clear();
    this.refreshing = undefined;
    this.host.total(0);
  }

  /** Channel `id` left the page (or the user left it). */
  forget(id: string): void {
    clearTimeout(this.sent.get(id)?.timer);
    this.sent.delete(id);
    this.counters.delete(id);
    this.unknown.delete(id);
    this.showTotal();
  }

  // -- counts from the gateway ---------------------------------------------------

  /** Reads the counts of every channel of the user (signed in, or connected again). */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    const client = this.host.client();
    if (!client) return Promise.resolve();
    const asked = new Set(this.counters.keys());
    const done = client
      .unread()
      .then(
        (counts) => {
          if (this.host.client() !== client) return;
          // A channel left out is one the user is not in: nothing of it is counted.
          this.take(counts, asked);
        },
        () => {
          // Counts are advisory: live posts keep the badges going, and the next reconnect asks again.
        },
      )
      .finally(() => {
        if (this.refreshing === done) this.refreshing = undefined;
      });
    this.refreshing = done;
    return done;
  }

  /** Reads channel `id`'s counts, unless they are known (and `again` is not asked) or on their way. */
  private ask(id: string, again = false): Promise<void> {
    const pending = this.asking.get(id);
    if (pending) return pending;
    const client = this.host.client();
    if (!client) return Promise.resolve();
    const done = (async () => {
      await this.refreshing;
      if (!again && this.counter(id).known && !this.counter(id).stale) return;
      try {
        const counts = await client.unread([id]);
        if (this.host.client() !== client) return;
        this.take(counts, new Set([id]));
        this.unknown.delete(id);
      } catch {
        if (this.host.client() === client && !this.counter(id).known) this.unknown.add(id);
      }
    })().finally(() => {
      if (this.asking.get(id) === done) this.asking.delete(id);
    });
    this.asking.set(id, done);
    return done;
  }

  /** Takes an answer to `unread`; `asked` are the channels it answers for, listed or not. */
  private take(counts: UnreadCounts, asked: Set<string>): void {
    const answered = new Set<string>();
    for (const c of counts.channels) {
      this.counter(c.channel_id).take(c);
      this.confirmed(c.channel_id, c.read_seq);
      answered.add(c.channel_id);
    }
    for (const id of asked) if (!answered.has(id)) this.counter(id).take({ read_seq: 0, last_seq: 0, unread: 0, mentions: 0 });
    for (const id of new Set([...answered, ...asked])) this.display(id);
    const view = this.host.active();
    if (view && (answered.has(view.id) || asked.has(view.id))) this.update(view);
  }

  /**
   * Channel `id` is subscribed for its badge now: posts from here on arrive
   * live, and the counts read now include those before.
   */
  watched(id: string): void {
    void this.ask(id, true);
  }

  // -- what arrives ---------------------------------------------------------------

  /** A post arrived on `view`'s subscription. */
  posted(view: ChannelView, post: Message): void {
    const me = this.host.user();
    const counter = this.counter(view.id);
    if (post.sender_id === me) {
      // Posting moves the author's read position to the post.
      counter.readTo(post.seq);
      this.confirmed(view.id, post.seq);
    } else {
      counter.post(post.seq, mentionsOf(post).includes(me));
    }
    this.update(view);
    this.display(view.id);
  }

  /** A change arrived: a deleted post is no longer unread, an edited one may mention the user now. */
  changed(view: ChannelView, change: Message): void {
    const target = change.target_seq;
    if (target === undefined) return;
    const counter = this.counter(view.id);
    if (change.kind === "delete") counter.deleted(target);
    else if (change.kind === "edit") counter.edited(target, mentionsIn(change.body, change.sender_id).includes(this.host.user()));
    else return;
    this.display(view.id);
  }

  /** A read receipt: the user's own (another session of theirs read the channel) clears its count. */
  read(view: ChannelView, e: ReadEvent): void {
    if (e.user_id !== this.host.user()) return;
    const counter = this.counter(view.id);
    counter.readTo(e.seq);
    this.confirmed(view.id, e.seq);
    if (counter.stale) void this.ask(view.id);
    this.display(view.id);
  }

  // -- reading ---------------------------------------------------------------

  /** The page shows `view` instead of `previous`. */
  shown(previous: ChannelView | undefined, view: ChannelView | undefined): void {
    if (previous && previous !== view) {
      previous.reading = false;
      // The line marked what was new when the user came; the next visit marks anew.
      this.placeDivider(previous, undefined);
      this.display(previous.id);
    }
    if (!view) return;
    this.display(view.id);
    this.update(view);
  }

  /** The page was hidden or shown again. */
  visibility(): void {
    const view = this.host.active();
    if (!view) return;
    if (!this.visible()) view.reading = false;
    this.display(view.id);
    this.update(view);
  }

  /**
   * Reads `view` when the user is looking at it: up to the newest post
   * shown. The first time since it was opened or the page was shown, the
   * "New messages" line goes above the first post not read before.
   */
  update(view: ChannelView): void {
    if (view !== this.host.active() || !this.visible() || !view.loaded) return;
    const counter = this.counter(view.id);
    if (!counter.known && !this.unknown.has(view.id)) {
      void this.ask(view.id).then(() => {
        if (this.counter(view.id).known || this.unknown.has(view.id)) this.update(view);
      });
      return;
    }
    if (!view.reading) {
      view.reading = true;
      if (counter.known) this.markNew(view, counter.read);
    }
    const newest = view.timeline.newest?.seq;
    if (newest !== undefined && counter.readTo(newest)) this.display(view.id);
    // Sends only what the gateway does not hold: never a position the user's own post moved it to.
    this.send(view.id);
  }

  /** Stores the user's read position of channel `id`, at most once every READ_GAP_MS. */
  private send(id: string): void {
    const client = this.host.client();
    const counter = this.counters.get(id);
    if (!client || !counter) return;
    const sent = this.sentOf(id);
    const seq = counter.read;
    if (seq <= sent.seq || sent.timer !== undefined) return;
    const wait = sent.at + READ_GAP_MS - Date.now();
    if (wait > 0) {
      sent.timer = setTimeout(() => {
        sent.timer = undefined;
        if (this.sent.get(id) === sent) this.send(id);
      }, wait);
      return;
    }
    const before = sent.seq;
    sent.at = Date.now();
    sent.seq = seq;
    client.markRead(id, seq).then(
      (held) => {
        if (this.host.client() !== client) return;
        const c = this.counters.get(id);
        if (!c) return;
        c.readTo(held);
        this.confirmed(id, held);
        if (c.stale) void this.ask(id);
        this.display(id);
      },
      () => {
        // Not stored: the next post read, or showing the page again, tries again.
        if (sent.seq === seq) sent.seq = before;
      },
    );
  }

  /** The gateway holds the user's position in `id` at `seq` or beyond. */
  private confirmed(id: string, seq: number): void {
    const sent = this.sentOf(id);
    sent.seq = Math.max(sent.seq, seq);
  }

  /** Puts the "New messages" line above the first post from someone else after `read`, if any, and brings it into view. */
  private markNew(view: ChannelView, read: number): void {
    const me = this.host.user();
    const first = view.timeline.toArray().find((m) => m.seq > read && m.sender_id !== me);
    if (!first) return;
    this.placeDivider(view, first.seq, read);
    const divider = view.divider;
    if (!divider) return;
    const box = this.host.scroller();
    const above = divider.getBoundingClientRect().top - box.getBoundingClientRect().top;
    if (above < 0) box.scrollTop += above - 8;
  }

  /** Puts the line above post `seq`, the first after `read` (none for `undefined`). */
  private placeDivider(view: ChannelView, seq: number | undefined, read = 0): void {
    view.divider?.remove();
    view.divider = undefined;
    const node = seq === undefined ? undefined : view.nodes.get(seq);
    if (!node) return;
    const divider = h(
      "li",
      { class: "unread-divider", data: { after: String(read) }, attrs: { role: "separator", "aria-label": "new messages" } },
      h("span", { text: "New messages" }),
    );
    node.before(divider);
    view.divider = divider;
  }

  // -- showing the counts ---------------------------------------------------------

  /** Channel `id`'s badge, and the title: nothing counts while the user is looking at the channel. */
  display(id: string): void {
    const [unread, mentions] = this.shownCounts(id);
    this.host.badge(id, unread, mentions);
    this.showTotal();
  }

  private shownCounts(id: string): [number, number] {
    const counter = this.counters.get(id);
    if (!counter) return [0, 0];
    if (this.host.active()?.id === id && this.visible()) return [0, 0];
    return [counter.unread, counter.mentions];
  }

  private showTotal(): void {
    let total = 0;
    for (const id of this.counters.keys()) total += this.shownCounts(id)[0];
    this.host.total(total);
  }

  private counter(id: string): UnreadCounter {
    let counter = this.counters.get(id);
    if (!counter) {
      counter = new UnreadCounter();
      this.counters.set(id, counter);
    }
    return counter;
  }

  private sentOf(id: string): Sent {
    let sent = this.sent.get(id);
    if (!sent) {
      sent = { seq: 0, at: Number.NEGATIVE_INFINITY, timer: undefined };
      this.sent.set(id, sent);
    }
    return sent;
  }
}
