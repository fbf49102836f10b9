// The members panel of the open channel: who is in it and with what role;
// an owner adds members by user ID and removes them.

import { ChatError, type ChatClient, type ChannelMember, type ChannelRole } from "../../js/src/index.js";
import { byId, describe, h, hueOf } from "./dom.js";

export interface MembersHost {
  client(): ChatClient | undefined;
  /** The signed-in user. */
  user(): string;
  /** What the members list says the user's role in `channel` is. */
  roleChanged(channel: string, role: ChannelRole | null): void;
}

/** Why an add or remove was refused, for the panel. */
function explainChange(err: unknown, userId: string): string {
  const code = err instanceof ChatError ? err.code : "";
  if (code === "not_owner") return "Only an owner of this channel can add or remove members.";
  if (code === "invalid_user") return `${userId} is not a valid user ID.`;
  if (code === "not_member") return "You are no longer a member of this channel.";
  return `Could not change the members: ${describe(err)}`;
}

export class MembersPanel {
  private channel: string | undefined;
  private members: ChannelMember[] = [];
  /** Counts loads, so an answer for a channel no longer shown is dropped. */
  private loads = 0;

  private readonly el = {
    list: byId<HTMLUListElement>("members"),
    count: byId<HTMLElement>("member-count"),
    form: byId<HTMLFormElement>("add-member"),
    userId: byId<HTMLInputElement>("member-id"),
    note: byId<HTMLElement>("members-error"),
  };

  constructor(private readonly host: MembersHost) {
    this.el.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.add(this.el.userId.value.trim());
    });
  }

  /** The user's role in the shown channel, `null` if not a member (or not known yet). */
  get role(): ChannelRole | null {
    return this.members.find((m) => m.user_id === this.host.user())?.role ?? null;
  }

  /** Shows the members of `channel` (nothing for `undefined`) and loads them. */
  async show(channel: string | undefined): Promise<void> {
    if (channel !== this.channel) {
      this.channel = channel;
      this.members = [];
      this.setNote("");
      this.el.userId.value = "";
      this.render();
    }
    if (channel !== undefined) await this.refresh();
  }

  /** Loads the shown channel's members again. */
  async refresh(): Promise<void> {
    const client = this.host.client();
    const channel = this.channel;
    if (!client || channel === undefined) return;
    const load = ++this.loads;
    let members: ChannelMember[];
    try {
      members = await client.members(channel);
    } catch (err) {
      if (load !== this.loads || channel !== this.channel) return;
      const code = err instanceof ChatError ? err.code : "";
      // The channel's notice says why (not a member, no such channel).
      if (code !== "not_member" && code !== "unknown_channel") this.setNote(`Could not load the members: ${describe(err)}`);
      members = [];
    }
    if (load !== this.loads || channel !== this.channel) return;
    this.members = members;
    this.render();
    this.host.roleChanged(channel, this.role);
  }

  /** Whether `userId` is listed as a member of the shown channel. */
  has(userId: string): boolean {
    return this.members.some((m) => m.user_id === userId);
  }

  clear(): void {
    void this.show(undefined);
  }

  private async add(userId: string): Promise<void> {
    const client = this.host.client();
    const channel = this.channel;
    if (!client || channel === undefined || userId === "") return;
    this.setNote("");
    try {
      const added = await client.addMember(channel, userId);
      if (channel !== this.channel) return;
      this.el.userId.value = "";
      if (!added) this.setNote(`${userId} is already a member.`);
    } catch (err) {
      if (channel === this.channel) this.setNote(explainChange(err, userId));
    }
    await this.refresh();
  }

  private async remove(userId: string): Promise<void> {
    const client = this.host.client();
    const channel = this.channel;
    if (!client || channel === undefined) return;
    this.setNote("");
    try {
      await client.removeMember(channel, userId);
    } catch (err) {
      if (channel === this.channel) this.setNote(explainChange(err, userId));
    }
    await this.refresh();
  }

  private setNote(text: string): void {
    this.el.note.textContent = text;
  }

  private render(): void {
    const me = this.host.user();
    const owner = this.role === "owner";
    this.el.count.textContent = this.members.length > 0 ? String(this.members.length) : "";
    this.el.list.replaceChildren(
      ...this.members.map((m) => {
        const li = h(
          "li",
          { data: { user: m.user_id, role: m.role } },
          h("span", { class: "user", text: m.user_id === me ? `${m.user_id} (you)` : m.user_id, title: `joined ${new Date(m.joined_at_ms).toLocaleString()}` }),
          h("span", { class: "role", text: m.role }),
        );
        li.style.setProperty("--hue", String(hueOf(m.user_id)));
        if (owner && m.user_id !== me) {
          const button = h("button", { class: "small remove-member", text: "Remove", attrs: { type: "button", "aria-label": `remove ${m.user_id}` } });
          button.addEventListener("click", () => void this.remove(m.user_id));
          li.append(button);
        }
        return li;
      }),
    );
    this.el.form.hidden = !owner;
  }
}
