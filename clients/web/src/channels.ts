// The sidebar's channels: the configured ones, those opened by ID (kept per
// user in localStorage) and the user's own from `GET /v1/channels`, each
// with its visibility, the user's role and its unread badge; reloaded
// periodically, since nothing tells the page when an owner adds or removes
// the user. Leaving the open channel.

import { ChatError, type ChatClient, type Channel, type ChannelRole } from "../../js/src/index.js";
import type { PageConfig } from "./config.js";
import { channelLabel, sidebarChannels } from "./directory.js";
import { byId, describe, h } from "./dom.js";
import { badgeText } from "./unread.js";

/**
 * How often the page reloads the user's channels and the open channel's
 * members: nothing announces that an owner added or removed the user.
 */
const DIRECTORY_REFRESH_MS = 5_000;

/** Why `user` could not open `channel`, and what to do about it. */
export function explainOpen(channel: string, user: string, err: unknown): string {
  const code = err instanceof ChatError ? err.code : "";
  if (code === "not_member" || code === "forbidden") {
    return `You (${user}) are not a member of ${channel}. If it is public, join it from the public channels; if it is private, ask one of its owners to add you.`;
  }
  if (code === "unknown_channel" || code === "not_found") {
    return `There is no channel ${channel}. Create it under "New channel", and it is yours.`;
  }
  return `Could not open ${channel}: ${describe(err)}`;
}

export interface ChannelsHost {
  client(): ChatClient | undefined;
  user(): string;
  /** The open channel. */
  activeId(): string | undefined;
  /** The channels the page lists, in order. */
  listed(): string[];
  /** Lists `id`: its view and its entry here. */
  add(id: string): void;
  open(id: string): void;
  /** Takes `id` off the page, saying `note`. */
  drop(id: string, note: string): void;
  /** The user left `id`, which stays listed (it is configured): stop receiving it. */
  left(id: string): Promise<void>;
  /** The user's membership of `id` changed (joined, left, or removed). */
  membershipChanged(id: string): void;
  /** Reloads the open channel's members. */
  refreshMembers(): Promise<void>;
  setStatus(text: string): void;
}

export class ChannelList {
  /** The user's channels as the gateway last listed them, with the user's role. */
  private readonly joined = new Map<string, Channel>();
  private loading: Promise<void> | undefined;
  /** Counts the page's own joins, creates and leaves, so a listing made before one is not taken for news. */
  private changes = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  private readonly el = {
    channels: byId<HTMLUListElement>("channels"),
    note: byId<HTMLElement>("channels-note"),
    refresh: byId<HTMLButtonElement>("refresh-channels"),
    info: byId<HTMLElement>("channel-info"),
    leave: byId<HTMLButtonElement>("leave-channel"),
    openForm: byId<HTMLFormElement>("open-channel"),
    channelId: byId<HTMLInputElement>("channel-id"),
  };

  constructor(
    private readonly config: PageConfig,
    private readonly host: ChannelsHost,
  ) {
    this.el.refresh.addEventListener("click", () => void this.refresh());
    this.el.leave.addEventListener("click", () => void this.leave());
    this.el.openForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const id = this.el.channelId.value.trim();
      if (id === "") return;
      this.el.channelId.value = "";
      this.remember(id);
      this.host.open(id);
    });
  }

  /** Whether the user is a member of `id`, as far as the page knows. */
  has(id: string): boolean {
    return this.joined.has(id);
  }

  /** Whether the user owns `id`. */
  owns(id: string): boolean {
    return this.joined.get(id)?.role === "owner";
  }

  /** Signed in: list the channels and keep them current. */
  start(): void {
    for (const id of this.saved()) this.host.add(id);
    void this.load();
    this.timer = setInterval(() => void this.refresh(), DIRECTORY_REFRESH_MS);
  }

  /** Signed out. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.joined.clear();
    this.showNote("");
    this.el.channels.replaceChildren();
  }

  /** The channels the page lists whether or not the user is in them: the config's, then those opened by ID. */
  saved(): string[] {
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
    return `chatmesh.channels.${this.host.user()}`;
  }

  private forget(id: string): void {
    const list = this.saved().filter((c) => !this.config.channels.includes(c) && c !== id);
    try {
      localStorage.setItem(this.storageKey(), JSON.stringify(list));
    } catch {
      // Storage is off: nothing was kept.
    }
  }

  private remember(id: string): void {
    const list = this.saved().filter((c) => !this.config.channels.includes(c));
    if (list.includes(id)) return;
    try {
      localStorage.setItem(this.storageKey(), JSON.stringify([...list, id]));
    } catch {
      // Storage is off: the channel stays listed until the page is reloaded.
    }
  }

  // -- the sidebar's entries --------------------------------------------------

  /** An entry for `id`; a click opens it. */
  addItem(id: string): void {
    const label = h("span", { class: "label" }, h("span", { class: "id", text: `# ${id}` }), h("span", { class: "meta-line" }));
    const button = h("button", { class: "channel-button", attrs: { type: "button" } }, label, h("span", { class: "unread", attrs: { hidden: "" } }));
    const item = h("li", { data: { channel: id } }, button);
    button.addEventListener("click", () => this.host.open(id));
    this.el.channels.append(item);
    this.showInfo(id);
  }

  removeItem(id: string): void {
    this.item(id)?.remove();
  }

  markActive(id: string | undefined): void {
    for (const li of this.el.channels.children) {
      if (li instanceof HTMLElement) li.classList.toggle("active", li.dataset["channel"] === id);
    }
  }

  /** Channel `id`'s badge: `unread` posts, highlighted when some of them (`mentions`) mention the user. */
  showUnread(id: string, unread: number, mentions: number): void {
    const item = this.item(id);
    const badge = item?.querySelector<HTMLElement>(".unread");
    if (!item || !badge) return;
    const shown = badgeText(unread, mentions);
    item.dataset["unread"] = String(unread);
    item.dataset["mentions"] = String(mentions);
    item.classList.toggle("has-unread", unread > 0);
    badge.classList.toggle("mention", mentions > 0);
    badge.textContent = shown.text;
    badge.title = shown.title;
    badge.setAttribute("aria-label", shown.title);
    badge.hidden = unread === 0;
  }

  private item(id: string): HTMLLIElement | null {
    return this.el.channels.querySelector<HTMLLIElement>(`li[data-channel="${CSS.escape(id)}"]`);
  }

  /** Shows what the page knows of `id` (name, visibility, the user's role) in the list and, when open, the header. */
  showInfo(id: string): void {
    const info = this.joined.get(id);
    const item = this.item(id);
    if (item) {
      item.dataset["role"] = info?.role ?? "";
      item.dataset["visibility"] = info?.visibility ?? "";
      const meta = item.querySelector(".meta-line");
      if (meta) meta.textContent = info ? [info.name !== "" && info.name !== id ? info.name : "", info.visibility].filter((t) => t !== "").join(" · ") : "";
      item.title = info ? channelLabel(id, info) : id;
    }
    if (this.host.activeId() !== id) return;
    const parts: string[] = [];
    if (info) parts.push(info.visibility);
    if (info?.role === "owner") parts.push("you are an owner");
    else if (info?.role === "member") parts.push("you are a member");
    this.el.info.textContent = parts.join(" · ");
    this.el.leave.hidden = info === undefined;
  }

  /** No channel is open. */
  showNone(): void {
    this.el.info.textContent = "";
    this.el.leave.hidden = true;
  }

  showNote(text: string): void {
    this.el.note.textContent = text;
    this.el.note.hidden = text === "";
  }

  // -- the user's channels ------------------------------------------------------

  /**
   * Lists the user's channels (`GET /v1/channels`) beside the configured
   * ones. A channel the gateway listed before and lists no more (an owner
   * removed the user) leaves the list unless the page was told to show it.
   */
  load(): Promise<void> {
    if (this.loading) return this.loading;
    this.loading = this.list().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async list(): Promise<void> {
    const client = this.host.client();
    if (!client) return;
    const changes = this.changes;
    let listed: Channel[];
    try {
      listed = await client.channels();
    } catch (err) {
      if (this.host.client() === client) this.showNote(`Could not load your channels: ${describe(err)}`);
      return;
    }
    // The user joined, created or left a channel meanwhile: the next listing has it.
    if (this.host.client() !== client || this.changes !== changes) return;
    if (this.el.note.textContent?.startsWith("Could not load your channels")) this.showNote("");
    const before = new Set(this.joined.keys());
    this.joined.clear();
    for (const c of listed) this.joined.set(c.channel_id, c);
    const kept = new Set(this.saved());
    for (const id of before) {
      if (this.joined.has(id)) continue;
      this.host.membershipChanged(id);
      if (kept.has(id)) this.showInfo(id);
      else this.host.drop(id, `You are no longer a member of # ${id}.`);
    }
    for (const id of sidebarChannels(this.config.channels, this.saved(), listed)) {
      this.host.add(id);
      this.showInfo(id);
      if (!before.has(id) && this.joined.has(id)) this.host.membershipChanged(id);
    }
    if (this.host.activeId() === undefined) {
      const first = this.host.listed()[0];
      if (first !== undefined) this.host.open(first);
    }
  }

  /** The periodic reload: the user's channels and the open channel's members. */
  async refresh(): Promise<void> {
    await this.load();
    const id = this.host.activeId();
    if (id !== undefined && this.joined.has(id)) await this.host.refreshMembers();
  }

  /** The user created or joined `channel` (from the page): list it and open it. */
  entered(channel: Channel): void {
    const id = channel.channel_id;
    this.changes += 1;
    this.joined.set(id, channel);
    this.showNote("");
    this.host.add(id);
    this.showInfo(id);
    this.host.membershipChanged(id);
    this.host.open(id);
  }

  /** The members list said the user's role in `channel`. */
  roleChanged(channel: string, role: ChannelRole | null): void {
    const info = this.joined.get(channel);
    if (info && role !== null && info.role !== role) {
      this.joined.set(channel, { ...info, role });
      this.showInfo(channel);
    }
  }

  /** Leaves the open channel. */
  private async leave(): Promise<void> {
    const id = this.host.activeId();
    const client = this.host.client();
    if (id === undefined || !client) return;
    this.el.leave.disabled = true;
    this.changes += 1;
    try {
      await client.leaveChannel(id);
    } catch (err) {
      this.host.setStatus(`Could not leave # ${id}: ${describe(err)}`);
      return;
    } finally {
      this.el.leave.disabled = false;
    }
    this.changes += 1;
    this.joined.delete(id);
    this.forget(id);
    this.host.membershipChanged(id);
    if (!this.config.channels.includes(id)) {
      this.host.drop(id, `You left # ${id}.`);
      return;
    }
    // A configured channel stays listed.
    await this.host.left(id);
    this.showInfo(id);
  }
}
