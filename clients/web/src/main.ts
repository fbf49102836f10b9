// The demo chat page: sign in with a development token, list, create, join
// and leave channels and manage their members, chat with resumable
// subscriptions, presence and typing, image attachments, history paging,
// edits, deletes, reactions and threads, unread badges, read receipts and
// mentions, on the chatmesh SDK.

import { ChatClient, ChatError, fetchDevToken, type ConnectionState, type Message, type Subscription } from "../../js/src/index.js";
import { Attachments } from "./attachments.js";
import { BrowsePanel } from "./browse.js";
import { ChannelList, explainOpen } from "./channels.js";
import { Composer } from "./composer.js";
import { ConnectionIndicator } from "./connection.js";
import { loadConfig, type PageConfig } from "./config.js";
import { byId, describe, h, hueOf } from "./dom.js";
import { Feed } from "./feed.js";
import { MembersPanel } from "./members.js";
import { MessageRenderer } from "./message.js";
import { PresencePanel } from "./presence.js";
import { proxiedFetch } from "./proxy.js";
import { ReadTracker } from "./reading.js";
import { Receipts } from "./receipts.js";
import { ThreadPanel } from "./thread.js";
import { titleWith } from "./unread.js";
import { ChannelView, type Place } from "./view.js";

class ChatPage {
  private client: ChatClient | undefined;
  private user = "";
  private readonly views = new Map<string, ChannelView>();
  private active: ChannelView | undefined;
  private readonly pageFetch = proxiedFetch(location.origin);
  private readonly connection = new ConnectionIndicator();
  private readonly channels: ChannelList;
  private readonly membersPanel: MembersPanel;
  private readonly browse: BrowsePanel;
  private readonly presence: PresencePanel;
  private readonly attachments: Attachments;
  private readonly feed: Feed;
  private readonly composer: Composer;
  private readonly thread: ThreadPanel;
  private readonly reads: ReadTracker;
  private readonly receipts: Receipts;

  private readonly el = {
    signIn: byId<HTMLElement>("sign-in"),
    signInForm: byId<HTMLFormElement>("sign-in-form"),
    userId: byId<HTMLInputElement>("user-id"),
    signInButton: byId<HTMLButtonElement>("sign-in-button"),
    signInError: byId<HTMLElement>("sign-in-error"),
    app: byId<HTMLElement>("app"),
    me: byId<HTMLElement>("me"),
    signOut: byId<HTMLButtonElement>("sign-out"),
    title: byId<HTMLElement>("channel-title"),
    subState: byId<HTMLElement>("sub-state"),
    messages: byId<HTMLElement>("messages"),
    composer: byId<HTMLFormElement>("composer"),
    status: byId<HTMLElement>("status"),
  };

  constructor(private readonly config: PageConfig) {
    const client = () => this.client;
    const user = () => this.user;
    const active = () => this.active;
    const setStatus = (text: string) => this.setStatus(text);
    this.channels = new ChannelList(config, {
      client,
      user,
      activeId: () => this.active?.id,
      listed: () => [...this.views.keys()],
      add: (id) => void this.addChannel(id),
      open: (id) => void this.open(id),
      drop: (id, note) => this.dropChannel(id, note),
      left: (id) => this.left(id),
      membershipChanged: (id) => {
        this.browse.update(id);
        // Once the listing or join that told is done: a channel it opened subscribes as it opens.
        queueMicrotask(() => this.watch(id));
      },
      refreshMembers: () => this.membersPanel.refresh(),
      setStatus,
    });
    this.membersPanel = new MembersPanel({ client, user, roleChanged: (channel, role) => this.channels.roleChanged(channel, role) });
    this.browse = new BrowsePanel({ client, isMember: (channel) => this.channels.has(channel), entered: (channel) => this.channels.entered(channel) });
    this.presence = new PresencePanel({
      user,
      active,
      arrived: (u) => {
        if (!this.membersPanel.has(u)) void this.membersPanel.refresh();
      },
    });
    this.attachments = new Attachments({ client, isPinned: () => this.feed.isPinned(), scrollToBottom: () => this.feed.scrollToBottom(), setStatus });
    const renderer = new MessageRenderer({
      client,
      user,
      isOwner: (channel) => this.channels.owns(channel),
      redraw: (view, seq) => this.feed.redraw(view, seq),
      reply: (view, seq, place) => this.reply(view, seq, place),
      openThread: (view, root) => void this.thread.show(view, root),
      attachment: (id) => this.attachments.render(id),
      setStatus,
    });
    this.feed = new Feed(this.el.messages, renderer, {
      client,
      active,
      posted: (view, post) => this.posted(view, post),
      threadShows: (view, post) => this.thread.shows(view, post),
      changed: (view, change, post) => {
        this.reads.changed(view, change);
        if (post.sender_id === this.user) this.receipts.update(view);
      },
    });
    this.composer = new Composer({
      client,
      user,
      active,
      isPinned: () => this.feed.isPinned(),
      scrollToBottom: () => this.feed.scrollToBottom(),
      sending: (view) => view.notEmpty(),
    });
    this.thread = new ThreadPanel(renderer, {
      client,
      loaded: (view, replies) => this.feed.takeThread(view, replies),
      send: (view, body, root) => this.composer.send(view, body, root),
      typing: this.composer.typing,
      shown: (open) => this.el.app.classList.toggle("thread-open", open),
    });
    this.reads = new ReadTracker({
      client,
      user,
      active,
      badge: (id, unread, mentions) => this.channels.showUnread(id, unread, mentions),
      total: (unread) => {
        document.title = titleWith(unread, this.client ? `${this.user} · chatmesh` : "chatmesh");
      },
      scroller: () => this.el.messages,
    });
    this.receipts = new Receipts({ client, user, redraw: (view, seq) => this.feed.redraw(view, seq) });
    document.addEventListener("visibilitychange", () => this.reads.visibility());
    this.el.signInForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.signIn(this.el.userId.value.trim());
    });
    this.el.signOut.addEventListener("click", () => this.signOut());
    this.el.messages.addEventListener("scroll", () => {
      if (this.el.messages.scrollTop < 40) void this.feed.loadOlder();
    });
    window.addEventListener("pagehide", () => this.client?.close());
    if (config.user !== undefined) this.el.userId.value = config.user;
    if (config.gateways.length === 0) {
      this.el.signInError.textContent = "No gateway configured: add ?gateway=ws://host:port to the address, or start the page server with --gateway.";
    }
    this.setConnection("disconnected");
    document.body.dataset["ready"] = "true";
  }

  // -- signing in -----------------------------------------------------------

  private async signIn(user: string): Promise<void> {
    if (user === "" || this.client) return;
    this.el.signInError.textContent = "";
    this.el.signInButton.disabled = true;
    const getToken = async () => (await fetchDevToken(location.origin, user, { fetch: this.pageFetch })).token;
    let token: string;
    try {
      token = await getToken();
    } catch (err) {
      this.el.signInError.textContent = `Could not sign in: ${describe(err)}`;
      this.el.signInButton.disabled = false;
      return;
    }
    this.user = user;
    const client = new ChatClient({ url: this.config.gateways, token, getToken, fetch: this.pageFetch, reload: "fill" });
    this.client = client;
    this.connection.follow(client);
    client.on("state", (state) => {
      this.setConnection(state);
      // Signed in or connected again: the counts may have moved meanwhile.
      if (state === "connected") void this.reads.refresh();
    });
    client.on("error", (err) => this.setStatus(`Connection: ${describe(err)}`, "connection"));

    this.el.me.textContent = user;
    this.el.me.style.setProperty("--hue", String(hueOf(user)));
    this.el.signIn.hidden = true;
    this.el.app.hidden = false;
    this.el.signOut.hidden = false;
    this.el.signInButton.disabled = false;
    document.title = `${user} · chatmesh`;

    client.connect().catch((err: unknown) => this.setStatus(`Could not connect: ${describe(err)}`));
    // The configured and saved channels first; the user's channels from the
    // gateway join them, and the first is opened if none was.
    this.channels.start();
    const first = this.channels.saved()[0];
    if (first !== undefined) void this.open(first);
    else this.showChannel(undefined);
    void this.browse.load();
    this.composer.focus();
  }

  private signOut(): void {
    this.client?.close();
    this.client = undefined;
    this.thread.close();
    this.composer.typing.clear();
    this.channels.stop();
    this.membersPanel.clear();
    this.browse.clear();
    this.reads.clear();
    for (const view of this.views.values()) view.observer?.disconnect();
    this.views.clear();
    this.attachments.clear();
    this.active = undefined;
    this.composer.showReply(undefined);
    this.el.messages.replaceChildren();
    this.presence.clear();
    this.el.app.hidden = true;
    this.el.signIn.hidden = false;
    this.el.signOut.hidden = true;
    this.el.me.textContent = "";
    this.el.subState.textContent = "";
    delete this.el.subState.dataset["state"];
    this.connection.follow(undefined);
    this.setStatus("");
    this.setConnection("disconnected");
    document.title = "chatmesh";
  }

  // -- connection state -----------------------------------------------------

  private setConnection(state: ConnectionState): void {
    this.connection.show(state);
    // A connection problem reported earlier is over.
    if (state === "connected" && this.el.status.dataset["kind"] === "connection") this.setStatus("");
    for (const view of this.views.values()) this.composer.refresh(view);
  }

  private setStatus(text: string, kind = "page"): void {
    this.el.status.textContent = text;
    this.el.status.dataset["kind"] = kind;
    this.el.status.hidden = text === "";
  }

  // -- channels ---------------------------------------------------------------

  private addChannel(id: string): ChannelView {
    let view = this.views.get(id);
    if (view) return view;
    view = new ChannelView(id, this.user);
    this.views.set(id, view);
    this.channels.addItem(id);
    this.reads.display(id);
    const current = view;
    view.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting) && this.active === current) void this.feed.loadOlder();
      },
      { root: this.el.messages, rootMargin: "200px 0px 0px 0px" },
    );
    view.observer.observe(view.edge);
    return view;
  }

  /** Takes `id` off the list and unsubscribes; another channel opens if it was the open one. */
  private dropChannel(id: string, note: string): void {
    const view = this.views.get(id);
    if (!view) return;
    view.observer?.disconnect();
    const sub = view.sub;
    view.sub = undefined;
    void sub?.unsubscribe();
    this.views.delete(id);
    this.reads.forget(id);
    if (this.thread.open?.view === view) this.thread.close();
    this.composer.left(view);
    this.channels.removeItem(id);
    this.channels.showNote(note);
    if (this.active !== view) return;
    this.active = undefined;
    const next = this.views.keys().next();
    if (!next.done) void this.open(next.value);
    else this.showChannel(undefined);
  }

  /** The user left `id`, a configured channel that stays listed. */
  private async left(id: string): Promise<void> {
    const view = this.views.get(id);
    if (!view) return;
    const sub = view.sub;
    view.sub = undefined;
    await sub?.unsubscribe();
    this.reads.forget(id);
    this.presence.typing(view, undefined);
    view.showNotice(`You left # ${id}.`);
    this.showSubState(view);
    void this.membersPanel.refresh();
  }

  /**
   * Subscribes to channel `id` of the user's without loading its history,
   * so its badge counts what arrives: its history loads when it opens.
   */
  private watch(id: string): void {
    const client = this.client;
    const view = this.views.get(id);
    if (!client || !view || !this.channels.has(id) || view.sub || view.opening) return;
    const sub = client.subscribe(id);
    view.sub = sub;
    this.wire(view, sub);
  }

  /** Shows `id` and, the first time, loads its newest history page and subscribes. */
  private async open(id: string): Promise<void> {
    const view = this.addChannel(id);
    this.showChannel(view);
    if (view.loaded && view.sub && view.sub.state !== "unsubscribed") return;
    if (view.opening) return view.opening;
    view.opening = this.subscribe(view).finally(() => {
      view.opening = undefined;
    });
    return view.opening;
  }

  private async subscribe(view: ChannelView): Promise<void> {
    const client = this.client;
    if (!client) return;
    view.showNotice("Loading…");
    try {
      // The newest page first, then subscribe after its last message: the
      // gateway replays whatever storage did not have yet (changes
      // included), then goes live. A watched channel is subscribed already:
      // the page joins what came live since.
      const lastSeq = await this.feed.loadNewest(client, view);
      if (this.client !== client) return;
      let sub = view.sub;
      if (!sub) {
        sub = client.subscribe(view.id, { lastSeq: Math.max(lastSeq, view.timeline.newest?.seq ?? 0) });
        view.sub = sub;
        this.wire(view, sub);
      }
      this.loaded(view);
      this.showSubState(view);
      await sub.ready();
      view.showNotice("");
      if (view.timeline.length === 0 && view.pending.size === 0) view.showNotice("No messages yet. Say hello!");
      this.feed.offerOlder(view);
    } catch (err) {
      if (this.client !== client) return;
      view.sub = undefined;
      this.explainRefusal(view, err);
    }
    this.showSubState(view);
  }

  /**
   * Says why `view` could not be opened and offers the way in: for a
   * channel the user is not in, Join when it is public (or whom to ask when
   * it is private); for one that does not exist, creating it.
   */
  private explainRefusal(view: ChannelView, err: unknown): void {
    const retry = () => void this.open(view.id);
    view.showNotice(explainOpen(view.id, this.user, err), retry);
    const code = err instanceof ChatError ? err.code : "";
    const client = this.client;
    if (code === "unknown_channel") {
      view.addNoticeAction("Create it", () => this.browse.offerCreate(view.id));
      return;
    }
    if (code !== "not_member" || !client) return;
    client.channel(view.id).then(
      (channel) => {
        if (this.client !== client || view.sub) return;
        if (channel.visibility !== "public") return;
        view.showNotice(`You (${this.user}) are not a member of ${view.id}. It is public: join it to read and write.`, retry);
        view.addNoticeAction("Join", () => {
          client.joinChannel(view.id).then(
            () => this.channels.entered({ ...channel, role: "member" }),
            (e: unknown) => view.showNotice(`Could not join ${view.id}: ${describe(e)}`, retry),
          );
        });
      },
      (e: unknown) => {
        if (this.client !== client || view.sub) return;
        if (e instanceof ChatError && e.code === "not_member") {
          view.showNotice(`${view.id} is private and you (${this.user}) are not a member: ask one of its owners to add you by your user ID, ${this.user}.`, retry);
        }
      },
    );
  }

  /** `view`'s newest history page is in: what came before it applies, the user reads it, receipts load. */
  private loaded(view: ChannelView): void {
    view.loaded = true;
    this.feed.replayEarly(view);
    this.reads.update(view);
    void this.receipts.load(view);
  }

  private wire(view: ChannelView, sub: Subscription): void {
    sub.on("message", (m) => this.feed.receive(view, m));
    sub.on("read", (e) => {
      this.reads.read(view, e);
      this.receipts.read(view, e);
    });
    sub.on("presence", (p) => this.presence.event(view, p));
    sub.on("typing", (e) => this.presence.typing(view, e));
    let resumed = false;
    sub.on("state", (state) => {
      this.showSubState(view);
      if (state === "subscribed") {
        void this.presence.refresh(view);
        // Receipts are not replayed: read the positions again after a gap.
        if (resumed && view.loaded) void this.receipts.load(view);
        else if (!resumed && !view.loaded) this.reads.watched(view.id);
        resumed = true;
      }
      // Who was typing is unknown until the gateway says it again.
      else this.presence.typing(view, undefined);
    });
    sub.on("error", (err) => {
      if (view.sub === sub) view.sub = undefined;
      this.explainRefusal(view, err);
      this.showSubState(view);
    });
    sub.on("reload_required", (e) => {
      if (e.error !== undefined) view.showNotice(`Messages ${e.from_seq}–${e.to_seq} could not be loaded: ${describe(e.error)}`);
    });
  }

  /** A post arrived on the subscription. */
  private posted(view: ChannelView, post: Message): void {
    view.notEmpty();
    this.composer.arrived(view, post);
    this.reads.posted(view, post);
    this.receipts.update(view);
  }

  /** The user chose to answer post `seq`: in the thread when it is open there, else from the composer. */
  private reply(view: ChannelView, seq: number, place: Place): void {
    if (place === "thread") {
      this.thread.focus();
      return;
    }
    this.composer.setReply(view, seq);
  }

  private showChannel(view: ChannelView | undefined): void {
    const previous = this.active;
    if (previous && previous !== view) {
      previous.scrollTop = this.el.messages.scrollTop;
      this.composer.left(previous);
      if (this.thread.open?.view === previous) this.thread.close();
    }
    this.active = view;
    this.channels.markActive(view?.id);
    this.composer.showReply(view);
    if (!view) {
      this.el.title.textContent = "No channel";
      this.el.messages.replaceChildren(h("p", { class: "empty", text: "Pick a channel on the left, create one, or join a public one." }));
      this.el.composer.hidden = true;
      this.channels.showNone();
      void this.membersPanel.show(undefined);
      this.presence.render(undefined);
      this.reads.shown(previous, undefined);
      return;
    }
    this.el.composer.hidden = false;
    this.el.title.textContent = `# ${view.id}`;
    this.channels.showInfo(view.id);
    void this.membersPanel.show(view.id);
    this.el.messages.replaceChildren(view.root);
    this.showSubState(view);
    this.presence.render(view);
    if (view.scrollTop !== undefined) this.el.messages.scrollTop = view.scrollTop;
    else this.feed.scrollToBottom();
    this.reads.shown(previous, view);
  }

  private showSubState(view: ChannelView): void {
    if (view !== this.active) return;
    const state = view.sub?.state ?? "unsubscribed";
    const labels = { subscribed: "live", subscribing: "catching up…", unsubscribed: "not subscribed" } as const;
    this.el.subState.textContent = labels[state];
    this.el.subState.dataset["state"] = state;
  }
}

async function main(): Promise<void> {
  const config = await loadConfig(location.search, (input, init) => fetch(input, init));
  new ChatPage(config);
}

void main();
