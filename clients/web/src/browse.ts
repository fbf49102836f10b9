// Creating channels and finding public ones: the sidebar's "New channel"
// form and its list of public channels, each with Join (or Open, for a
// channel the user is in).

import { ChatError, type ChatClient, type Channel, type ChannelVisibility, type CreateChannelOptions } from "../../js/src/index.js";
import { byId, describe, h } from "./dom.js";
import { channelLabel, findPublic } from "./directory.js";

/** Public channels listed at a time. */
const PUBLIC_SHOWN = 20;

export interface BrowseHost {
  client(): ChatClient | undefined;
  isMember(channel: string): boolean;
  /** The user created or joined `channel`: list it and open it. */
  entered(channel: Channel): void;
}

function explainCreate(err: unknown, id: string): string {
  const code = err instanceof ChatError ? err.code : "";
  if (code === "already_exists") return `There is already a channel ${id}. If it is public, find it below and join it; if it is private, ask one of its owners to add you.`;
  if (code === "invalid_channel") return `${id} is not a valid channel ID: use letters, digits and . _ : - (at most 64 characters).`;
  return `Could not create ${id}: ${describe(err)}`;
}

function explainJoin(err: unknown, id: string): string {
  const code = err instanceof ChatError ? err.code : "";
  if (code === "private_channel") return `${id} is private now: ask one of its owners to add you.`;
  if (code === "unknown_channel") return `${id} no longer exists.`;
  return `Could not join ${id}: ${describe(err)}`;
}

export class BrowsePanel {
  /** Where "More" continues the listing. */
  private cursor: string | undefined;
  private prefix = "";
  /** Counts listings, so a late answer to an older one is dropped. */
  private listings = 0;

  private readonly el = {
    form: byId<HTMLFormElement>("new-channel"),
    id: byId<HTMLInputElement>("new-channel-id"),
    name: byId<HTMLInputElement>("new-channel-name"),
    create: byId<HTMLButtonElement>("create-channel"),
    createError: byId<HTMLElement>("new-channel-error"),
    find: byId<HTMLFormElement>("find-public"),
    prefix: byId<HTMLInputElement>("public-prefix"),
    refresh: byId<HTMLButtonElement>("refresh-public"),
    list: byId<HTMLUListElement>("public-channels"),
    more: byId<HTMLButtonElement>("more-public"),
    error: byId<HTMLElement>("public-error"),
  };

  constructor(private readonly host: BrowseHost) {
    this.el.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.create();
    });
    this.el.find.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.load();
    });
    this.el.refresh.addEventListener("click", () => void this.load());
    this.el.more.addEventListener("click", () => void this.load(true));
  }

  /** Lists the public channels whose ID starts with what the search box holds; `more` continues the list. */
  async load(more = false): Promise<void> {
    const client = this.host.client();
    if (!client) return;
    if (!more) {
      this.prefix = this.el.prefix.value.trim();
      this.cursor = undefined;
    }
    const listing = ++this.listings;
    this.el.error.textContent = "";
    try {
      const found = await findPublic((q) => client.publicChannels(q), this.prefix, PUBLIC_SHOWN, more ? this.cursor : undefined);
      if (listing !== this.listings || this.host.client() !== client) return;
      if (!more) this.el.list.replaceChildren();
      for (const channel of found.channels) this.el.list.append(this.item(channel));
      this.cursor = found.cursor;
      this.el.more.hidden = found.cursor === undefined;
      if (!more && found.channels.length === 0) {
        const text = this.prefix === "" ? "No public channels yet: create one above." : `No public channel's ID starts with ${this.prefix}.`;
        this.el.list.append(h("li", { class: "empty", text }));
      }
    } catch (err) {
      if (listing === this.listings) this.el.error.textContent = `Could not list the public channels: ${describe(err)}`;
    }
  }

  /** Shows `channel`'s entry as one the user is in (or not). */
  update(channelId: string): void {
    const item = this.el.list.querySelector<HTMLLIElement>(`li[data-channel="${CSS.escape(channelId)}"]`);
    const button = item?.querySelector("button");
    if (!item || !button) return;
    const member = this.host.isMember(channelId);
    item.dataset["member"] = String(member);
    button.textContent = member ? "Open" : "Join";
  }

  /** Fills in the create form with `id`, for a channel that does not exist. */
  offerCreate(id: string): void {
    this.el.id.value = id;
    this.el.createError.textContent = "";
    this.el.name.focus();
  }

  clear(): void {
    this.listings += 1;
    this.cursor = undefined;
    this.el.list.replaceChildren();
    this.el.more.hidden = true;
    this.el.error.textContent = "";
    this.el.createError.textContent = "";
    this.el.form.reset();
    this.el.prefix.value = "";
  }

  private item(channel: Channel): HTMLLIElement {
    const id = channel.channel_id;
    const button = h("button", { class: "small", attrs: { type: "button" } });
    const item = h("li", { data: { channel: id } }, h("span", { class: "id", text: channelLabel(id, channel), title: `created by ${channel.created_by}` }), button);
    button.addEventListener("click", () => void this.join(channel, button));
    const member = this.host.isMember(id) || channel.role !== null;
    button.textContent = member ? "Open" : "Join";
    item.dataset["member"] = String(member);
    return item;
  }

  private async join(channel: Channel, button: HTMLButtonElement): Promise<void> {
    const client = this.host.client();
    const id = channel.channel_id;
    if (!client) return;
    if (this.host.isMember(id) || channel.role !== null) {
      this.host.entered(channel);
      return;
    }
    button.disabled = true;
    this.el.error.textContent = "";
    try {
      await client.joinChannel(id);
      this.host.entered({ ...channel, role: channel.role ?? "member" });
    } catch (err) {
      this.el.error.textContent = explainJoin(err, id);
    } finally {
      button.disabled = false;
    }
    this.update(id);
  }

  private async create(): Promise<void> {
    const client = this.host.client();
    const id = this.el.id.value.trim();
    if (!client || id === "") return;
    const picked = this.el.form.querySelector<HTMLInputElement>('input[name="visibility"]:checked')?.value;
    const visibility: ChannelVisibility = picked === "public" ? "public" : "private";
    const options: CreateChannelOptions = { channelId: id, visibility };
    const name = this.el.name.value.trim();
    if (name !== "") options.name = name;
    this.el.create.disabled = true;
    this.el.createError.textContent = "";
    try {
      const channel = await client.createChannel(options);
      this.el.form.reset();
      this.host.entered(channel);
      if (visibility === "public") void this.load();
    } catch (err) {
      this.el.createError.textContent = explainCreate(err, id);
    } finally {
      this.el.create.disabled = false;
    }
  }
}
