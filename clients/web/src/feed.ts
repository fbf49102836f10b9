// A channel's list of messages: posts in sequence order, each once, in
// their current state, whether they came live, replayed after a reconnect,
// in a page of history or in an opened thread; and its history, the newest
// page first, older pages as the user scrolls up. Every message event goes
// through the channel's MessageState, so a change applies once (by
// version) however often it arrives.

import { isChange, type ChatClient, type HistoryPage, type Message } from "../../js/src/index.js";
import { describe, h } from "./dom.js";
import type { MessageRenderer } from "./message.js";
import type { ChannelView } from "./view.js";

/** How close to the bottom (px) still counts as following the conversation. */
const PINNED_SLACK = 48;
/** Messages per history page. */
const PAGE_SIZE = 50;
/** How close to the top (px) loads the next older page. */
const TOP_SLACK = 40;

export interface FeedHost {
  client(): ChatClient | undefined;
  active(): ChannelView | undefined;
  /** A post arrived live or replayed (not from a page of history). */
  posted(view: ChannelView, post: Message): void;
  /** Post `seq` of `view` is new or changed: the open thread may show it. */
  threadShows(view: ChannelView, post: Message): void;
  /** A change arrived live and applied to `post`. */
  changed(view: ChannelView, change: Message, post: Message): void;
}

/** Changes kept for posts a channel's history has not brought yet. */
const EARLY_KEPT = 1_000;

/** Where the posts taken come from. */
interface Source {
  /** The highest `seq` the stored reply counts can include (see ReplyCounts.root). */
  basis: number;
  /** Whether they go into the channel's list (an opened thread's do not). */
  list: boolean;
  /** Whether they came on the subscription. */
  live: boolean;
}

export class Feed {
  constructor(
    private readonly scroller: HTMLElement,
    private readonly renderer: MessageRenderer,
    private readonly host: FeedHost,
  ) {}

  isPinned(): boolean {
    const m = this.scroller;
    return m.scrollHeight - m.scrollTop - m.clientHeight < PINNED_SLACK;
  }

  scrollToBottom(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** A message event from the subscription: a post, or a change to one. */
  receive(view: ChannelView, m: Message): void {
    if (!isChange(m)) {
      this.take(view, [m], { basis: Number.POSITIVE_INFINITY, list: true, live: true });
      return;
    }
    const post = view.state.apply(m);
    if (!post) {
      // A channel watched before its history is loaded: the change may be to a post that history brings.
      if (!view.loaded && view.early.length < EARLY_KEPT) view.early.push(m);
      return;
    }
    this.host.changed(view, m, post);
    const pinned = view === this.host.active() && this.isPinned();
    this.redraw(view, post.seq);
    // Replies quote the text of their thread's first message.
    if (m.kind === "edit" || m.kind === "delete") this.redrawQuotes(view, post.seq);
    if (pinned) this.scrollToBottom();
  }

  /**
   * A page of history; `basis` is the newest `seq` storage held when it was
   * read. An older page keeps what is on screen where it is.
   */
  insertPage(view: ChannelView, page: HistoryPage, older: boolean, basis: number): void {
    const shown = view === this.host.active();
    const box = this.scroller;
    const height = box.scrollHeight;
    const top = box.scrollTop;
    this.take(view, page.messages, { basis, list: true, live: false });
    if (!shown) return;
    if (older) box.scrollTop = top + (box.scrollHeight - height);
    else this.scrollToBottom();
  }

  /** The history is in: the changes that came before it apply now, unless it holds them already. */
  replayEarly(view: ChannelView): void {
    const early = view.early.splice(0);
    for (const m of early) this.receive(view, m);
  }

  /** Replies loaded for an opened thread: their state is taken, the list is left as it is. */
  takeThread(view: ChannelView, replies: Message[]): void {
    this.take(view, replies, { basis: Number.POSITIVE_INFINITY, list: false, live: false });
  }

  private take(view: ChannelView, posts: Message[], source: Source): void {
    const pinned = source.live && view === this.host.active() && this.isPinned();
    const touched = new Set<number>();
    for (const m of posts) {
      if (m.reply_to !== undefined && view.replies.reply(m)) touched.add(m.reply_to);
      if (view.replies.root(m, source.basis)) touched.add(m.seq);
      const fresh = view.state.apply(m);
      const post = fresh ?? view.state.get(m.seq) ?? m;
      if (source.list && !view.timeline.has(post.message_id)) {
        this.insert(view, post);
        touched.delete(post.seq);
        if (source.live) this.host.posted(view, post);
        // A thread's first message loaded after its replies: they quote it now.
        else if (view.replies.count(post.seq) > 0) this.redrawQuotes(view, post.seq);
      } else if (fresh) {
        touched.add(post.seq);
      }
      this.host.threadShows(view, post);
    }
    for (const seq of touched) this.redraw(view, seq);
    if (pinned) this.scrollToBottom();
  }

  private insert(view: ChannelView, post: Message): void {
    const index = view.timeline.insert(post);
    if (index < 0) return;
    const node = this.renderer.render(view, post, "channel");
    // Before the next post's node.
    const next = view.timeline.at(index + 1);
    const before = next === undefined ? null : (view.nodes.get(next.seq) ?? null);
    const divider = view.divider;
    if (before && divider && before.previousElementSibling === divider) {
      // Older than the first unread post shown: above the "New messages" line, which moves up over it if it is unread too (an older page).
      view.list.insertBefore(node, divider);
      if (post.seq > Number(divider.dataset["after"])) node.before(divider);
    } else {
      view.list.insertBefore(node, before);
    }
    view.nodes.set(post.seq, node);
  }

  /** Draws post `seq` again, in the list and in the open thread. */
  redraw(view: ChannelView, seq: number): void {
    const post = view.post(seq);
    if (!post) return;
    if (post.deleted) {
      // Nothing is left to edit, confirm or react to.
      if (view.ui.editing?.seq === seq) view.ui.editing = undefined;
      if (view.ui.confirming?.seq === seq) view.ui.confirming = undefined;
      if (view.ui.picking?.seq === seq) view.ui.picking = undefined;
    }
    const old = view.nodes.get(seq);
    if (old) {
      const focused = document.activeElement;
      const node = this.renderer.render(view, post, "channel");
      old.replaceWith(node);
      view.nodes.set(seq, node);
      // An input moved into the new node (the inline editor) keeps the focus.
      if (focused instanceof HTMLElement && focused !== document.activeElement && node.contains(focused)) focused.focus({ preventScroll: true });
    }
    this.host.threadShows(view, post);
  }

  private redrawQuotes(view: ChannelView, root: number): void {
    for (const li of view.list.querySelectorAll<HTMLElement>(`li.message[data-reply-to="${root}"]`)) {
      const seq = Number(li.dataset["seq"]);
      if (seq !== root) this.redraw(view, seq);
    }
  }

  // -- history ------------------------------------------------------------------

  /** Loads the newest page of `view`'s history; resolves with the highest `seq` in it (0 for none). */
  async loadNewest(client: ChatClient, view: ChannelView): Promise<number> {
    view.pages = client.historyPages(view.id, { limit: PAGE_SIZE });
    view.reachedStart = false;
    const first = await view.pages.next();
    if (first.done) {
      this.reachStart(view);
      return 0;
    }
    let lastSeq = 0;
    for (const m of first.value.messages) lastSeq = Math.max(lastSeq, m.seq);
    this.insertPage(view, first.value, false, lastSeq);
    if (!first.value.has_more) this.reachStart(view);
    return lastSeq;
  }

  /** The channel is live: offer its older pages, and load one if the top is in sight. */
  offerOlder(view: ChannelView): void {
    if (view.reachedStart) return;
    view.edge.replaceChildren(this.olderButton());
    if (this.host.active() === view && this.scroller.scrollTop < TOP_SLACK) void this.loadOlder();
  }

  /** The page before the oldest one shown, in the open channel. */
  async loadOlder(): Promise<void> {
    const view = this.host.active();
    if (!view || !view.pages || view.loadingOlder || view.reachedStart || view.opening) return;
    view.loadingOlder = true;
    view.edge.dataset["state"] = "loading";
    view.edge.textContent = "Loading older messages…";
    // Reply counts read now include the replies the page has seen.
    const basis = view.timeline.newest?.seq ?? 0;
    try {
      const next = await view.pages.next();
      if (next.done) this.reachStart(view);
      else {
        this.insertPage(view, next.value, true, basis);
        if (!next.value.has_more) this.reachStart(view);
      }
    } catch (err) {
      // The generator is finished after a failure: start again before the oldest message shown.
      const oldest = view.timeline.toArray().reduce<Message | undefined>(
        (min, m) => (min === undefined || BigInt(m.message_id) < BigInt(min.message_id) ? m : min),
        undefined,
      );
      const client = this.host.client();
      if (client) view.pages = client.historyPages(view.id, oldest ? { limit: PAGE_SIZE, from: oldest.message_id } : { limit: PAGE_SIZE });
      view.edge.dataset["state"] = "error";
      view.edge.textContent = `Could not load older messages: ${describe(err)}`;
      view.loadingOlder = false;
      return;
    }
    view.loadingOlder = false;
    if (!view.reachedStart) {
      view.edge.dataset["state"] = "idle";
      // Still at the top (a short page): keep going.
      this.offerOlder(view);
    }
  }

  private olderButton(): HTMLButtonElement {
    const button = h("button", { class: "load-older", text: "Load older messages", attrs: { type: "button" } });
    button.addEventListener("click", () => void this.loadOlder());
    return button;
  }

  private reachStart(view: ChannelView): void {
    view.reachedStart = true;
    view.edge.dataset["state"] = "start";
    view.edge.textContent = `This is the beginning of # ${view.id}.`;
  }
}
