// The thread panel: a thread's first message and its replies (the SDK's
// `thread`, paged back to the first reply), kept current as replies and
// changes arrive, with a box to reply in it.

import type { ChatClient, Message } from "../../js/src/index.js";
import { byId, describe, h } from "./dom.js";
import { repliesLabel, type MessageRenderer } from "./message.js";
import { Timeline } from "./timeline.js";
import type { TypingSender } from "./typing.js";
import type { ChannelView } from "./view.js";

/** Replies per page of a thread. */
const THREAD_PAGE = 100;
/** Pages read when a thread opens; older replies beyond them are left out. */
const THREAD_PAGES = 20;

export interface ThreadHost {
  client(): ChatClient | undefined;
  /** Replies loaded for the thread: the channel's state takes them. */
  loaded(view: ChannelView, replies: Message[]): void;
  /** The user sends `body` as a reply to post `root`. */
  send(view: ChannelView, body: string, root: number): void;
  readonly typing: TypingSender;
  /** The panel opened or closed. */
  shown(open: boolean): void;
}

export class ThreadPanel {
  private view: ChannelView | undefined;
  private root: number | undefined;
  private replies = new Timeline<Message>();
  private readonly nodes = new Map<number, HTMLLIElement>();
  /** Counts opens, so replies loaded for a thread no longer shown are dropped. */
  private loads = 0;

  private readonly el = {
    panel: byId<HTMLElement>("thread"),
    scroll: byId<HTMLElement>("thread-scroll"),
    count: byId<HTMLElement>("thread-count"),
    close: byId<HTMLButtonElement>("thread-close"),
    root: byId<HTMLOListElement>("thread-root"),
    note: byId<HTMLElement>("thread-note"),
    list: byId<HTMLOListElement>("thread-replies"),
    form: byId<HTMLFormElement>("thread-composer"),
    body: byId<HTMLInputElement>("thread-body"),
  };

  constructor(
    private readonly renderer: MessageRenderer,
    private readonly host: ThreadHost,
  ) {
    this.el.close.addEventListener("click", () => this.close());
    this.el.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = this.el.body.value.trim();
      const view = this.view;
      if (!view || this.root === undefined || body === "") return;
      this.el.body.value = "";
      this.host.typing.stop(view.id);
      this.host.send(view, body, this.root);
    });
    this.el.body.addEventListener("input", () => {
      if (this.view) this.host.typing.draft(this.view.id, this.el.body.value.trim() !== "");
    });
    this.el.panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && e.target === this.el.body) this.close();
    });
  }

  /** The channel and first message of the thread shown. */
  get open(): { view: ChannelView; root: number } | undefined {
    return this.view && this.root !== undefined ? { view: this.view, root: this.root } : undefined;
  }

  /** Shows the thread of post `root` of `view` and loads its replies. */
  async show(view: ChannelView, root: number): Promise<void> {
    if (this.view === view && this.root === root) {
      this.el.body.focus();
      return;
    }
    const load = ++this.loads;
    this.view = view;
    this.root = root;
    this.replies = new Timeline<Message>();
    this.nodes.clear();
    this.el.list.replaceChildren();
    this.el.body.value = "";
    this.el.panel.dataset["root"] = String(root);
    this.el.panel.dataset["state"] = "loading";
    this.el.panel.hidden = false;
    this.host.shown(true);
    this.drawRoot();
    this.setNote("Loading replies…");
    // The replies the page holds already, until the thread's own pages come.
    for (const post of view.state.posts) if (post.reply_to === root) this.shows(view, post);
    this.el.body.focus();
    const client = this.host.client();
    if (!client) return;
    try {
      let before: string | undefined;
      for (let n = 0; n < THREAD_PAGES; n++) {
        const page = await client.thread(view.id, root, before === undefined ? { limit: THREAD_PAGE } : { limit: THREAD_PAGE, before });
        if (load !== this.loads) return;
        this.host.loaded(view, page.messages);
        const first = page.messages[0];
        if (!page.has_more || !first) break;
        before = first.message_id;
      }
    } catch (err) {
      if (load !== this.loads) return;
      this.setNote(`Could not load the replies: ${describe(err)}`);
      this.el.panel.dataset["state"] = "error";
      return;
    }
    this.el.panel.dataset["state"] = "loaded";
    this.setNote(this.replies.length === 0 ? "No replies yet." : "");
  }

  close(): void {
    if (!this.view) return;
    this.loads += 1;
    this.host.typing.stop(this.view.id);
    this.view = undefined;
    this.root = undefined;
    this.nodes.clear();
    this.el.root.replaceChildren();
    this.el.list.replaceChildren();
    this.el.panel.hidden = true;
    delete this.el.panel.dataset["root"];
    this.host.shown(false);
  }

  /** Puts the caret in the reply box. */
  focus(): void {
    this.el.body.focus();
  }

  /** Post `post` of `view` is new or changed: the thread shows it if it is its first message or a reply in it. */
  shows(view: ChannelView, post: Message): void {
    if (view !== this.view || this.root === undefined) return;
    if (post.seq === this.root) {
      this.drawRoot();
      return;
    }
    if (post.reply_to !== this.root) return;
    const focused = document.activeElement;
    const node = this.renderer.render(view, post, "thread");
    const old = this.nodes.get(post.seq);
    if (old) {
      old.replaceWith(node);
    } else {
      const index = this.replies.insert(post);
      if (index < 0) return;
      this.el.list.insertBefore(node, this.el.list.children[index] ?? null);
      this.setNote("");
      if (index === this.replies.length - 1) this.el.scroll.scrollTop = this.el.scroll.scrollHeight;
    }
    this.nodes.set(post.seq, node);
    if (focused instanceof HTMLElement && focused !== document.activeElement && node.contains(focused)) focused.focus({ preventScroll: true });
    this.drawCount();
  }

  private drawRoot(): void {
    const view = this.view;
    const root = this.root;
    if (!view || root === undefined) return;
    const post = view.post(root);
    const focused = document.activeElement;
    if (post) {
      const node = this.renderer.render(view, post, "thread");
      this.el.root.replaceChildren(node);
      if (focused instanceof HTMLElement && focused !== document.activeElement && node.contains(focused)) focused.focus({ preventScroll: true });
    } else {
      this.el.root.replaceChildren(h("li", { class: "placeholder", text: `An earlier message (#${root}): scroll up in the channel to load it.` }));
    }
    this.drawCount();
  }

  private drawCount(): void {
    const view = this.view;
    if (!view || this.root === undefined) return;
    const n = Math.max(view.replies.count(this.root), this.replies.length);
    this.el.count.textContent = repliesLabel(n);
    this.el.count.dataset["count"] = String(n);
  }

  private setNote(text: string): void {
    this.el.note.textContent = text;
    this.el.note.hidden = text === "";
  }
}
