// The demo chat page: sign in with a development token, list, create, join
// and leave channels and manage their members, chat with resumable
// subscriptions, presence, image attachments and history paging, on the
// chatmesh SDK.

import {
  ChatClient,
  ChatError,
  fetchDevToken,
  type Channel,
  type ChannelRole,
  type ConnectionState,
  type HistoryPage,
  type Media,
  type Message,
  type PresenceEvent,
  type Subscription,
} from "../../js/src/index.js";
import { BrowsePanel } from "./browse.js";
import { loadConfig, type PageConfig } from "./config.js";
import { channelLabel, sidebarChannels } from "./directory.js";
import { byId, describe, h, hueOf, timeOf } from "./dom.js";
import { MembersPanel } from "./members.js";
import { proxiedFetch } from "./proxy.js";
import { Timeline } from "./timeline.js";

/** Messages per history page. */
const PAGE_SIZE = 50;
/** Presence events kept per channel. */
const ACTIVITY_KEPT = 30;
/** How close to the bottom (px) still counts as following the conversation. */
const PINNED_SLACK = 48;
/**
 * How often the page reloads the user's channels and the open channel's
 * members: nothing announces that an owner added or removed the user.
 */
const DIRECTORY_REFRESH_MS = 5_000;
/** Types the media service accepts that the page shows inline. */
const INLINE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

function randomKey(): string {
  return crypto.randomUUID();
}

// ---------------------------------------------------------------------------
// A channel on screen

interface PendingSend {
  key: string;
  body: string;
  file: File | undefined;
  attachments: string[] | undefined;
  messageId: string | undefined;
  node: HTMLLIElement;
}

interface ActivityItem {
  at: number;
  user: string;
  event: string;
}

class ChannelView {
  readonly timeline = new Timeline<Message>();
  readonly root: HTMLDivElement;
  readonly edge: HTMLDivElement;
  readonly list: HTMLOListElement;
  readonly pendingList: HTMLOListElement;
  readonly notice: HTMLDivElement;
  readonly pending = new Map<string, PendingSend>();
  readonly online = new Set<string>();
  readonly activity: ActivityItem[] = [];
  /** The latest presence event of each user, with when it arrived (performance.now()). */
  readonly lastEvent = new Map<string, { event: string; receivedAt: number }>();
  sub: Subscription | undefined;
  pages: AsyncGenerator<HistoryPage> | undefined;
  opening: Promise<void> | undefined;
  loadingOlder = false;
  reachedStart = false;
  unread = 0;
  scrollTop: number | undefined;
  observer: IntersectionObserver | undefined;

  constructor(readonly id: string) {
    this.edge = h("div", { class: "history-edge", data: { state: "idle" } });
    this.list = h("ol", { class: "message-list", attrs: { "aria-label": `messages of ${id}` } });
    this.pendingList = h("ol", { class: "pending-list", attrs: { "aria-label": "messages being sent" } });
    this.notice = h("div", { class: "channel-notice", attrs: { role: "status" } });
    this.root = h("div", { class: "timeline", data: { channel: id } }, this.edge, this.list, this.pendingList, this.notice);
  }
}

// ---------------------------------------------------------------------------
// The page

class ChatPage {
  private client: ChatClient | undefined;
  private user = "";
  private readonly views = new Map<string, ChannelView>();
  private active: ChannelView | undefined;
  private readonly media = new Map<string, Promise<{ media: Media; url: string | undefined }>>();
  private readonly pageFetch = proxiedFetch(location.origin);
  private everConnected = false;
  private reconnects = 0;
  /** The user's channels as the gateway last listed them, with the user's role. */
  private readonly joined = new Map<string, Channel>();
  private loadingChannels: Promise<void> | undefined;
  /** Counts the page's own joins, creates and leaves, so a listing made before one is not taken for news. */
  private directoryChanges = 0;
  private directoryTimer: ReturnType<typeof setInterval> | undefined;
  private readonly membersPanel: MembersPanel;
  private readonly browse: BrowsePanel;

  private readonly el = {
    signIn: byId<HTMLElement>("sign-in"),
    signInForm: byId<HTMLFormElement>("sign-in-form"),
    userId: byId<HTMLInputElement>("user-id"),
    signInButton: byId<HTMLButtonElement>("sign-in-button"),
    signInError: byId<HTMLElement>("sign-in-error"),
    app: byId<HTMLElement>("app"),
    me: byId<HTMLElement>("me"),
    signOut: byId<HTMLButtonElement>("sign-out"),
    conn: byId<HTMLElement>("conn"),
    connLabel: byId<HTMLElement>("conn-label"),
    connDetail: byId<HTMLElement>("conn-detail"),
    banner: byId<HTMLElement>("offline-banner"),
    channels: byId<HTMLUListElement>("channels"),
    channelsNote: byId<HTMLElement>("channels-note"),
    refreshChannels: byId<HTMLButtonElement>("refresh-channels"),
    channelInfo: byId<HTMLElement>("channel-info"),
    leave: byId<HTMLButtonElement>("leave-channel"),
    openForm: byId<HTMLFormElement>("open-channel"),
    channelId: byId<HTMLInputElement>("channel-id"),
    online: byId<HTMLUListElement>("online"),
    onlineCount: byId<HTMLElement>("online-count"),
    activity: byId<HTMLOListElement>("activity"),
    title: byId<HTMLElement>("channel-title"),
    subState: byId<HTMLElement>("sub-state"),
    messages: byId<HTMLElement>("messages"),
    composer: byId<HTMLFormElement>("composer"),
    body: byId<HTMLInputElement>("body"),
    file: byId<HTMLInputElement>("file"),
    send: byId<HTMLButtonElement>("send"),
    status: byId<HTMLElement>("status"),
  };

  constructor(private readonly config: PageConfig) {
    this.membersPanel = new MembersPanel({
      client: () => this.client,
      user: () => this.user,
      roleChanged: (channel, role) => this.roleChanged(channel, role),
    });
    this.browse = new BrowsePanel({
      client: () => this.client,
      isMember: (channel) => this.joined.has(channel),
      entered: (channel) => this.entered(channel),
    });
    this.el.refreshChannels.addEventListener("click", () => void this.refreshDirectory());
    this.el.leave.addEventListener("click", () => void this.leave());
    this.el.signInForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.signIn(this.el.userId.value.trim());
    });
    this.el.signOut.addEventListener("click", () => this.signOut());
    this.el.openForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const id = this.el.channelId.value.trim();
      if (id === "") return;
      this.el.channelId.value = "";
      this.remember(id);
      void this.open(id);
    });
    this.el.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.el.file.addEventListener("change", () => {
      const file = this.el.file.files?.[0];
      this.el.file.value = "";
      if (file) this.attach(file);
    });
    this.el.messages.addEventListener("scroll", () => {
      if (this.el.messages.scrollTop < 40) void this.loadOlder();
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
    this.everConnected = false;
    this.reconnects = 0;
    client.on("state", (state) => this.setConnection(state));
    client.on("reconnecting", (info) => {
      this.reconnects += 1;
      this.el.conn.dataset["reconnects"] = String(this.reconnects);
      this.el.connDetail.textContent = `retrying ${hostOf(info.url)} in ${(info.delayMs / 1000).toFixed(1)} s (attempt ${info.attempt}): ${info.reason}`;
    });
    client.on("open", () => this.showConnections());
    client.on("moved", (info) => {
      this.el.connDetail.textContent = `${info.channels.join(", ")} moved to ${hostOf(info.to)} (${info.reason})`;
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
    for (const id of this.channelList()) this.addChannel(id);
    const first = this.channelList()[0];
    if (first !== undefined) void this.open(first);
    else this.showChannel(undefined);
    // The user's channels from the gateway join the configured ones; the
    // first is opened if none was.
    void this.loadChannels();
    void this.browse.load();
    this.directoryTimer = setInterval(() => void this.refreshDirectory(), DIRECTORY_REFRESH_MS);
    this.el.body.focus();
  }

  private signOut(): void {
    this.client?.close();
    this.client = undefined;
    clearInterval(this.directoryTimer);
    this.directoryTimer = undefined;
    this.joined.clear();
    this.membersPanel.clear();
    this.browse.clear();
    this.showChannelsNote("");
    for (const view of this.views.values()) view.observer?.disconnect();
    this.views.clear();
    this.media.clear();
    this.active = undefined;
    this.el.channels.replaceChildren();
    this.el.messages.replaceChildren();
    this.el.online.replaceChildren();
    this.el.activity.replaceChildren();
    this.el.app.hidden = true;
    this.el.signIn.hidden = false;
    this.el.signOut.hidden = true;
    this.el.me.textContent = "";
    this.el.subState.textContent = "";
    delete this.el.subState.dataset["state"];
    this.el.conn.dataset["reconnects"] = "0";
    this.setStatus("");
    this.setConnection("disconnected");
    document.title = "chatmesh";
  }

  /** The channels the page lists whether or not the user is in them: the config's, then those opened by ID. */
  private channelList(): string[] {
    let opened: string[] = [];
    try {
      const saved: unknown = JSON.parse(localStorage.getItem(this.storageKey()) ?? "[]");
      if (Array.isArray(saved)) opened = saved.filter((s): s is string => typeof s === "string");
    } catch {
      // Nothing saved, or storage is off.
    }
    return [...new Set([...this.config.channels, ...opened])];
  }

  private storageKey(): string {
    return `chatmesh.channels.${this.user}`;
  }

  private forget(id: string): void {
    const list = this.channelList().filter((c) => !this.config.channels.includes(c) && c !== id);
    try {
      localStorage.setItem(this.storageKey(), JSON.stringify(list));
    } catch {
      // Storage is off: nothing was kept.
    }
  }

  private remember(id: string): void {
    const list = this.channelList().filter((c) => !this.config.channels.includes(c));
    if (list.includes(id)) return;
    try {
      localStorage.setItem(this.storageKey(), JSON.stringify([...list, id]));
    } catch {
      // Storage is off: the channel stays listed until the page is reloaded.
    }
  }

  // -- connection state -----------------------------------------------------

  private setConnection(state: ConnectionState): void {
    const conn = this.el.conn;
    conn.dataset["state"] = state;
    const connected = state === "connected";
    if (connected) this.everConnected = true;
    const labels: Record<ConnectionState, string> = {
      connected: "Connected",
      connecting: this.everConnected ? "Reconnecting…" : "Connecting…",
      disconnected: "Disconnected",
      closed: "Signed out",
    };
    this.el.connLabel.textContent = labels[state];
    if (connected) {
      this.showConnections();
      // A connection problem reported earlier is over.
      if (this.el.status.dataset["kind"] === "connection") this.setStatus("");
    }
    if (state === "disconnected" && this.client?.lastError) this.el.connDetail.textContent = describe(this.client.lastError);
    if (state === "closed" || (state === "disconnected" && !this.client)) this.el.connDetail.textContent = "";
    // The banner appears once a connection that worked is lost.
    const lost = this.client !== undefined && this.everConnected && !connected;
    this.el.banner.hidden = !lost;
    for (const view of this.views.values()) this.showPendingState(view);
  }

  private showConnections(): void {
    const client = this.client;
    if (!client || client.state !== "connected") return;
    const parts = client.connections.map((c) => `${hostOf(c.url)}${c.channels.length > 0 ? ` (${c.channels.join(", ")})` : ""}`);
    this.el.connDetail.textContent = parts.length > 0 ? `via ${parts.join(", ")}` : "";
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
    view = new ChannelView(id);
    this.views.set(id, view);
    const label = h("span", { class: "label" }, h("span", { class: "id", text: `# ${id}` }), h("span", { class: "meta-line" }));
    const button = h("button", { class: "channel-button", attrs: { type: "button" } }, label, h("span", { class: "unread", attrs: { hidden: "" } }));
    const item = h("li", { data: { channel: id } }, button);
    button.addEventListener("click", () => void this.open(id));
    this.el.channels.append(item);
    this.showChannelInfo(id);
    const current = view;
    view.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting) && this.active === current) void this.loadOlder();
      },
      { root: this.el.messages, rootMargin: "200px 0px 0px 0px" },
    );
    view.observer.observe(view.edge);
    return view;
  }

  private channelItem(id: string): HTMLLIElement | null {
    return this.el.channels.querySelector<HTMLLIElement>(`li[data-channel="${CSS.escape(id)}"]`);
  }

  /** Shows what the page knows of `id` (name, visibility, the user's role) in the list and, when open, the header. */
  private showChannelInfo(id: string): void {
    const info = this.joined.get(id);
    const item = this.channelItem(id);
    if (item) {
      item.dataset["role"] = info?.role ?? "";
      item.dataset["visibility"] = info?.visibility ?? "";
      const meta = item.querySelector(".meta-line");
      if (meta) meta.textContent = info ? [info.name !== "" && info.name !== id ? info.name : "", info.visibility].filter((t) => t !== "").join(" · ") : "";
      item.title = info ? channelLabel(id, info) : id;
    }
    if (this.active?.id !== id) return;
    const parts: string[] = [];
    if (info) parts.push(info.visibility);
    if (info?.role === "owner") parts.push("you are an owner");
    else if (info?.role === "member") parts.push("you are a member");
    this.el.channelInfo.textContent = parts.join(" · ");
    this.el.leave.hidden = info === undefined;
  }

  private showChannelsNote(text: string): void {
    this.el.channelsNote.textContent = text;
    this.el.channelsNote.hidden = text === "";
  }

  /**
   * Lists the user's channels (`GET /v1/channels`) beside the configured
   * ones. A channel the gateway listed before and lists no more (an owner
   * removed the user) leaves the list unless the page was told to show it.
   */
  private loadChannels(): Promise<void> {
    if (this.loadingChannels) return this.loadingChannels;
    this.loadingChannels = this.listChannels().finally(() => {
      this.loadingChannels = undefined;
    });
    return this.loadingChannels;
  }

  private async listChannels(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const changes = this.directoryChanges;
    let listed: Channel[];
    try {
      listed = await client.channels();
    } catch (err) {
      if (this.client === client) this.showChannelsNote(`Could not load your channels: ${describe(err)}`);
      return;
    }
    // The user joined, created or left a channel meanwhile: the next listing has it.
    if (this.client !== client || this.directoryChanges !== changes) return;
    if (this.el.channelsNote.textContent?.startsWith("Could not load your channels")) this.showChannelsNote("");
    const before = new Set(this.joined.keys());
    this.joined.clear();
    for (const c of listed) this.joined.set(c.channel_id, c);
    const kept = new Set(this.channelList());
    for (const id of before) {
      if (this.joined.has(id)) continue;
      this.browse.update(id);
      if (kept.has(id)) this.showChannelInfo(id);
      else this.dropChannel(id, `You are no longer a member of # ${id}.`);
    }
    for (const id of sidebarChannels(this.config.channels, this.channelList(), listed)) {
      this.addChannel(id);
      this.showChannelInfo(id);
      if (!before.has(id) && this.joined.has(id)) this.browse.update(id);
    }
    if (!this.active) {
      const first = this.views.keys().next();
      if (!first.done) void this.open(first.value);
    }
  }

  /** The periodic reload: the user's channels and the open channel's members. */
  private async refreshDirectory(): Promise<void> {
    await this.loadChannels();
    const view = this.active;
    if (view && this.joined.has(view.id)) await this.membersPanel.refresh();
  }

  /** The user created or joined `channel` (from the page): list it and open it. */
  private entered(channel: Channel): void {
    const id = channel.channel_id;
    this.directoryChanges += 1;
    this.joined.set(id, channel);
    this.showChannelsNote("");
    this.addChannel(id);
    this.showChannelInfo(id);
    this.browse.update(id);
    void this.open(id);
  }

  /** The members list said the user's role in `channel`. */
  private roleChanged(channel: string, role: ChannelRole | null): void {
    const info = this.joined.get(channel);
    if (info && role !== null && info.role !== role) {
      this.joined.set(channel, { ...info, role });
      this.showChannelInfo(channel);
    }
  }

  /** Leaves the open channel. */
  private async leave(): Promise<void> {
    const view = this.active;
    const client = this.client;
    if (!view || !client) return;
    this.el.leave.disabled = true;
    this.directoryChanges += 1;
    try {
      await client.leaveChannel(view.id);
    } catch (err) {
      this.setStatus(`Could not leave # ${view.id}: ${describe(err)}`);
      return;
    } finally {
      this.el.leave.disabled = false;
    }
    this.directoryChanges += 1;
    this.joined.delete(view.id);
    this.forget(view.id);
    this.browse.update(view.id);
    if (!this.config.channels.includes(view.id)) {
      this.dropChannel(view.id, `You left # ${view.id}.`);
      return;
    }
    // A configured channel stays listed.
    const sub = view.sub;
    view.sub = undefined;
    await sub?.unsubscribe();
    this.showChannelInfo(view.id);
    this.showNotice(view, `You left # ${view.id}.`);
    this.showSubState(view);
    void this.membersPanel.refresh();
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
    this.channelItem(id)?.remove();
    this.showChannelsNote(note);
    if (this.active !== view) return;
    this.active = undefined;
    const next = this.views.keys().next();
    if (!next.done) void this.open(next.value);
    else this.showChannel(undefined);
  }

  /** Shows `id` and, the first time, loads its newest history page and subscribes. */
  private async open(id: string): Promise<void> {
    const view = this.addChannel(id);
    this.showChannel(view);
    if (view.sub && view.sub.state !== "unsubscribed") return;
    if (view.opening) return view.opening;
    view.opening = this.subscribe(view).finally(() => {
      view.opening = undefined;
    });
    return view.opening;
  }

  private async subscribe(view: ChannelView): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.showNotice(view, "Loading…");
    try {
      // The newest page first, then subscribe after its last message: the
      // gateway replays whatever storage did not have yet, then goes live.
      view.pages = client.historyPages(view.id, { limit: PAGE_SIZE });
      view.reachedStart = false;
      const first = await view.pages.next();
      let lastSeq = 0;
      if (!first.done) {
        this.insertPage(view, first.value, false);
        for (const m of first.value.messages) lastSeq = Math.max(lastSeq, m.seq);
        if (!first.value.has_more) this.reachStart(view);
      } else {
        this.reachStart(view);
      }
      if (this.client !== client) return;
      const sub = client.subscribe(view.id, { lastSeq: Math.max(lastSeq, view.timeline.newest?.seq ?? 0) });
      view.sub = sub;
      this.wire(view, sub);
      this.showSubState(view);
      await sub.ready();
      this.showNotice(view, "");
      if (view.timeline.length === 0 && view.pending.size === 0) this.showNotice(view, "No messages yet. Say hello!");
      if (!view.reachedStart) {
        view.edge.replaceChildren(this.olderButton());
        if (this.active === view && this.el.messages.scrollTop < 40) void this.loadOlder();
      }
    } catch (err) {
      if (this.client !== client) return;
      view.sub = undefined;
      this.explainRefusal(view, err);
    }
    this.showSubState(view);
  }

  private explain(channel: string, err: unknown): string {
    const code = err instanceof ChatError ? err.code : "";
    if (code === "not_member" || code === "forbidden") {
      return `You (${this.user}) are not a member of ${channel}. If it is public, join it from the public channels; if it is private, ask one of its owners to add you.`;
    }
    if (code === "unknown_channel" || code === "not_found") {
      return `There is no channel ${channel}. Create it under "New channel", and it is yours.`;
    }
    return `Could not open ${channel}: ${describe(err)}`;
  }

  /**
   * Says why `view` could not be opened and offers the way in: for a
   * channel the user is not in, Join when it is public (or whom to ask when
   * it is private); for one that does not exist, creating it.
   */
  private explainRefusal(view: ChannelView, err: unknown): void {
    const retry = () => void this.open(view.id);
    this.showNotice(view, this.explain(view.id, err), retry);
    const code = err instanceof ChatError ? err.code : "";
    const client = this.client;
    if (code === "unknown_channel") {
      this.addNoticeAction(view, "Create it", () => this.browse.offerCreate(view.id));
      return;
    }
    if (code !== "not_member" || !client) return;
    client.channel(view.id).then(
      (channel) => {
        if (this.client !== client || view.sub) return;
        if (channel.visibility !== "public") return;
        this.showNotice(view, `You (${this.user}) are not a member of ${view.id}. It is public: join it to read and write.`, retry);
        this.addNoticeAction(view, "Join", () => {
          client.joinChannel(view.id).then(
            () => this.entered({ ...channel, role: "member" }),
            (e: unknown) => this.showNotice(view, `Could not join ${view.id}: ${describe(e)}`, retry),
          );
        });
      },
      (e: unknown) => {
        if (this.client !== client || view.sub) return;
        if (e instanceof ChatError && e.code === "not_member") {
          this.showNotice(view, `${view.id} is private and you (${this.user}) are not a member: ask one of its owners to add you by your user ID, ${this.user}.`, retry);
        }
      },
    );
  }

  private addNoticeAction(view: ChannelView, label: string, run: () => void): void {
    const button = h("button", { text: label, attrs: { type: "button" } });
    button.addEventListener("click", run);
    view.notice.append(" ", button);
  }

  private wire(view: ChannelView, sub: Subscription): void {
    sub.on("message", (m) => this.insertMessage(view, m));
    sub.on("presence", (p) => this.presence(view, p));
    sub.on("state", (state) => {
      this.showSubState(view);
      if (state === "subscribed") void this.refreshOnline(view);
    });
    sub.on("error", (err) => {
      if (view.sub === sub) view.sub = undefined;
      this.explainRefusal(view, err);
      this.showSubState(view);
    });
    sub.on("reload_required", (e) => {
      if (e.error !== undefined) this.showNotice(view, `Messages ${e.from_seq}–${e.to_seq} could not be loaded: ${describe(e.error)}`);
    });
  }

  private showChannel(view: ChannelView | undefined): void {
    if (this.active && this.active !== view) this.active.scrollTop = this.el.messages.scrollTop;
    this.active = view;
    for (const li of this.el.channels.children) {
      if (li instanceof HTMLElement) li.classList.toggle("active", li.dataset["channel"] === view?.id);
    }
    if (!view) {
      this.el.title.textContent = "No channel";
      this.el.messages.replaceChildren(h("p", { class: "empty", text: "Pick a channel on the left, create one, or join a public one." }));
      this.el.composer.hidden = true;
      this.el.channelInfo.textContent = "";
      this.el.leave.hidden = true;
      void this.membersPanel.show(undefined);
      this.renderPresence();
      return;
    }
    this.el.composer.hidden = false;
    this.el.title.textContent = `# ${view.id}`;
    this.showChannelInfo(view.id);
    void this.membersPanel.show(view.id);
    this.el.messages.replaceChildren(view.root);
    view.unread = 0;
    this.showUnread(view);
    this.showSubState(view);
    this.renderPresence();
    if (view.scrollTop !== undefined) this.el.messages.scrollTop = view.scrollTop;
    else this.scrollToBottom();
  }

  private showSubState(view: ChannelView): void {
    if (view !== this.active) return;
    const state = view.sub?.state ?? "unsubscribed";
    const labels = { subscribed: "live", subscribing: "catching up…", unsubscribed: "not subscribed" } as const;
    this.el.subState.textContent = labels[state];
    this.el.subState.dataset["state"] = state;
  }

  private showUnread(view: ChannelView): void {
    const item = this.el.channels.querySelector<HTMLElement>(`li[data-channel="${CSS.escape(view.id)}"] .unread`);
    if (!item) return;
    item.textContent = String(view.unread);
    item.hidden = view.unread === 0;
  }

  private showNotice(view: ChannelView, text: string, retry?: () => void): void {
    view.notice.replaceChildren();
    view.notice.hidden = text === "";
    if (text === "") return;
    view.notice.append(h("span", { text }));
    if (retry) {
      const button = h("button", { text: "Try again", attrs: { type: "button" } });
      button.addEventListener("click", retry);
      view.notice.append(" ", button);
    }
  }

  // -- messages -------------------------------------------------------------

  private isPinned(): boolean {
    const m = this.el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < PINNED_SLACK;
  }

  private scrollToBottom(): void {
    this.el.messages.scrollTop = this.el.messages.scrollHeight;
  }

  /** Puts `m` in its place; a message already shown is ignored. */
  private insertMessage(view: ChannelView, m: Message): void {
    const shown = view === this.active;
    const pinned = shown && this.isPinned();
    const index = view.timeline.insert(m);
    if (index < 0) return;
    view.list.insertBefore(this.renderMessage(m), view.list.children[index] ?? null);
    if (view.notice.textContent?.startsWith("No messages yet")) this.showNotice(view, "");
    for (const p of view.pending.values()) {
      if (p.messageId === m.message_id) this.dropPending(view, p);
    }
    if (!shown) {
      view.unread += 1;
      this.showUnread(view);
    } else if (pinned) {
      this.scrollToBottom();
    }
  }

  /** A page of history; older pages keep what is on screen where it is. */
  private insertPage(view: ChannelView, page: HistoryPage, older: boolean): void {
    const shown = view === this.active;
    const box = this.el.messages;
    const height = box.scrollHeight;
    const top = box.scrollTop;
    for (const m of page.messages) {
      const index = view.timeline.insert(m);
      if (index >= 0) view.list.insertBefore(this.renderMessage(m), view.list.children[index] ?? null);
    }
    if (!shown) return;
    if (older) box.scrollTop = top + (box.scrollHeight - height);
    else this.scrollToBottom();
  }

  private async loadOlder(): Promise<void> {
    const view = this.active;
    if (!view || !view.pages || view.loadingOlder || view.reachedStart || view.opening) return;
    view.loadingOlder = true;
    view.edge.dataset["state"] = "loading";
    view.edge.textContent = "Loading older messages…";
    try {
      const next = await view.pages.next();
      if (next.done) this.reachStart(view);
      else {
        this.insertPage(view, next.value, true);
        if (!next.value.has_more) this.reachStart(view);
      }
    } catch (err) {
      // The generator is finished after a failure: start again before the oldest message shown.
      const oldest = view.timeline.toArray().reduce<Message | undefined>(
        (min, m) => (min === undefined || BigInt(m.message_id) < BigInt(min.message_id) ? m : min),
        undefined,
      );
      if (this.client) view.pages = this.client.historyPages(view.id, oldest ? { limit: PAGE_SIZE, from: oldest.message_id } : { limit: PAGE_SIZE });
      view.edge.dataset["state"] = "error";
      view.edge.textContent = `Could not load older messages: ${describe(err)}`;
      view.loadingOlder = false;
      return;
    }
    view.loadingOlder = false;
    if (!view.reachedStart) {
      view.edge.dataset["state"] = "idle";
      view.edge.replaceChildren(this.olderButton());
      // Still at the top (a short page): keep going.
      if (this.active === view && this.el.messages.scrollTop < 40) void this.loadOlder();
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

  private renderMessage(m: Message): HTMLLIElement {
    const mine = m.sender_id === this.user;
    const item = h(
      "li",
      {
        class: mine ? "message mine" : "message",
        data: { seq: String(m.seq), messageId: m.message_id, sender: m.sender_id },
      },
      h(
        "div",
        { class: "meta" },
        h("span", { class: "sender", text: m.sender_id }),
        h("time", { class: "time", text: timeOf(m.created_at_ms), attrs: { datetime: new Date(m.created_at_ms).toISOString() } }),
        h("span", { class: "seq", text: `#${m.seq}` }),
      ),
      h("div", { class: "body", text: m.body }),
    );
    item.style.setProperty("--hue", String(hueOf(m.sender_id)));
    for (const id of m.attachments ?? []) item.append(this.renderAttachment(id));
    return item;
  }

  private mediaOf(id: string, fresh = false): Promise<{ media: Media; url: string | undefined }> {
    const client = this.client;
    if (!client) return Promise.reject(new Error("signed out"));
    let found = fresh ? undefined : this.media.get(id);
    if (!found) {
      found = (async () => {
        const media = await client.getMedia(id);
        const url = INLINE_TYPES.has(media.content_type) ? (await client.mediaDownloadUrl(id)).download_url : undefined;
        return { media, url };
      })();
      found.catch(() => this.media.delete(id));
      this.media.set(id, found);
    }
    return found;
  }

  private renderAttachment(id: string): HTMLElement {
    const figure = h("figure", { class: "attachment", data: { mediaId: id, state: "loading" } }, h("span", { class: "placeholder", text: "Loading attachment…" }));
    let retried = false;
    const show = (fresh: boolean) => {
      this.mediaOf(id, fresh).then(
        ({ media, url }) => {
          if (url === undefined) {
            const link = h("a", { class: "file", text: `${media.filename} (${Math.ceil(media.size / 1024)} KiB)`, attrs: { href: "#" } });
            link.addEventListener("click", (e) => {
              e.preventDefault();
              this.client?.mediaDownloadUrl(id).then(
                (d) => window.open(d.download_url, "_blank", "noopener"),
                (err: unknown) => this.setStatus(`Download failed: ${describe(err)}`),
              );
            });
            figure.replaceChildren(link);
            figure.dataset["state"] = "file";
            return;
          }
          const pinned = this.isPinned();
          const img = h("img", { class: "attachment-image", attrs: { alt: media.filename, src: url, decoding: "async" } });
          img.addEventListener("load", () => {
            figure.dataset["state"] = "loaded";
            if (pinned && figure.isConnected) this.scrollToBottom();
          });
          img.addEventListener("error", () => {
            // Download URLs expire: ask for a new one, once.
            if (!retried) {
              retried = true;
              show(true);
            } else {
              figure.dataset["state"] = "error";
              figure.replaceChildren(h("span", { class: "placeholder", text: `${media.filename} could not be loaded` }));
            }
          });
          figure.replaceChildren(img, h("figcaption", { text: media.filename }));
        },
        (err: unknown) => {
          figure.dataset["state"] = "error";
          figure.replaceChildren(h("span", { class: "placeholder", text: `Attachment unavailable: ${describe(err)}` }));
        },
      );
    };
    show(false);
    return figure;
  }

  // -- sending ----------------------------------------------------------------

  private submit(): void {
    const view = this.active;
    const body = this.el.body.value.trim();
    if (!view || body === "") return;
    this.el.body.value = "";
    this.startSend(view, { key: randomKey(), body, file: undefined, attachments: undefined });
  }

  private attach(file: File): void {
    const view = this.active;
    if (!view) return;
    const caption = this.el.body.value.trim();
    this.el.body.value = "";
    this.startSend(view, { key: randomKey(), body: caption === "" ? file.name : caption, file, attachments: undefined });
  }

  private startSend(view: ChannelView, what: Pick<PendingSend, "key" | "body" | "file" | "attachments">): void {
    const node = h("li", { class: "pending", data: { key: what.key, state: "sending" } });
    const p: PendingSend = { ...what, messageId: undefined, node };
    view.pending.set(p.key, p);
    view.pendingList.append(node);
    if (view.notice.textContent?.startsWith("No messages yet")) this.showNotice(view, "");
    this.scrollToBottom();
    void this.runSend(view, p);
  }

  private async runSend(view: ChannelView, p: PendingSend): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      if (p.file && p.attachments === undefined) {
        this.showPending(view, p, "uploading");
        const media = await client.uploadMedia(view.id, p.file, { filename: p.file.name, contentType: p.file.type || "application/octet-stream" });
        p.attachments = [media.media_id];
      }
      this.showPending(view, p, "sending");
      const options: { idempotencyKey: string; attachments?: string[] } = { idempotencyKey: p.key };
      if (p.attachments) options.attachments = p.attachments;
      const ack = await client.send(view.id, p.body, options);
      p.messageId = ack.message_id;
      if (view.timeline.has(ack.message_id)) this.dropPending(view, p);
      else this.showPending(view, p, "stored");
    } catch (err) {
      if (this.client !== client) return;
      this.showPending(view, p, "failed", describe(err));
    }
  }

  private showPending(view: ChannelView, p: PendingSend, state: "uploading" | "sending" | "stored" | "failed", error?: string): void {
    p.node.dataset["state"] = state;
    this.renderPending(view, p, error);
  }

  private showPendingState(view: ChannelView): void {
    for (const p of view.pending.values()) this.renderPending(view, p);
  }

  private renderPending(view: ChannelView, p: PendingSend, error?: string): void {
    const state = p.node.dataset["state"] ?? "sending";
    const offline = this.client?.state !== "connected";
    const labels: Record<string, string> = {
      uploading: `uploading ${p.file?.name ?? ""}…`,
      sending: offline ? "waiting for the connection…" : "sending…",
      stored: "sent",
      failed: `not sent: ${error ?? p.node.dataset["error"] ?? "failed"}`,
    };
    if (error !== undefined) p.node.dataset["error"] = error;
    const children: (Node | string)[] = [
      h("div", { class: "meta" }, h("span", { class: "sender", text: this.user }), h("span", { class: "pending-state", text: labels[state] ?? state })),
      h("div", { class: "body", text: p.body }),
    ];
    if (state === "failed") {
      const retry = h("button", { text: "Retry", attrs: { type: "button" } });
      retry.addEventListener("click", () => void this.runSend(view, p));
      const discard = h("button", { text: "Discard", attrs: { type: "button" } });
      discard.addEventListener("click", () => this.dropPending(view, p));
      children.push(h("div", { class: "actions" }, retry, " ", discard));
    }
    const pinned = view === this.active && this.isPinned();
    p.node.replaceChildren(...children);
    if (pinned) this.scrollToBottom();
  }

  private dropPending(view: ChannelView, p: PendingSend): void {
    view.pending.delete(p.key);
    p.node.remove();
  }

  // -- presence ---------------------------------------------------------------

  private async refreshOnline(view: ChannelView): Promise<void> {
    if (!view.sub) return;
    const asked = performance.now();
    try {
      const users = await view.sub.online();
      view.online.clear();
      for (const u of users) view.online.add(u);
      // Events that came while the answer was on its way are newer than it.
      for (const [user, e] of view.lastEvent) {
        if (e.receivedAt < asked) continue;
        if (e.event === "join") view.online.add(user);
        else view.online.delete(user);
      }
      // This page's own session is subscribed, so its user is online.
      if (view.sub.state === "subscribed") view.online.add(this.user);
      if (view === this.active) this.renderPresence();
    } catch {
      // Presence is advisory; the events keep the list going.
    }
  }

  private presence(view: ChannelView, p: PresenceEvent): void {
    if (p.event === "join") view.online.add(p.user_id);
    else view.online.delete(p.user_id);
    view.lastEvent.set(p.user_id, { event: p.event, receivedAt: performance.now() });
    view.activity.unshift({ at: p.at_ms, user: p.user_id, event: p.event });
    view.activity.splice(ACTIVITY_KEPT);
    if (view === this.active) {
      this.renderPresence();
      // Someone new (they joined a public channel, or an owner added them).
      if (p.event === "join" && !this.membersPanel.has(p.user_id)) void this.membersPanel.refresh();
    }
  }

  private renderPresence(): void {
    const view = this.active;
    const users = view ? [...view.online].sort() : [];
    this.el.onlineCount.textContent = view ? String(users.length) : "";
    this.el.online.replaceChildren(
      ...users.map((u) => {
        const li = h("li", { data: { user: u } }, h("span", { class: "dot" }), h("span", { text: u === this.user ? `${u} (you)` : u }));
        li.style.setProperty("--hue", String(hueOf(u)));
        return li;
      }),
    );
    this.el.activity.replaceChildren(
      ...(view?.activity ?? []).map((a) =>
        h(
          "li",
          { data: { event: a.event, user: a.user } },
          h("time", { text: timeOf(a.at) }),
          " ",
          h("span", { text: `${a.user} ${a.event === "join" ? "came online" : "went offline"}` }),
        ),
      ),
    );
  }
}

async function main(): Promise<void> {
  const config = await loadConfig(location.search, (input, init) => fetch(input, init));
  new ChatPage(config);
}

void main();
