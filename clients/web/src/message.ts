// One message as the page draws it, in its current state: its text (its
// mentions emphasized) and "(edited)", or a tombstone once deleted; what it
// replies to; its reactions; its thread's reply count; who has read it,
// under the user's latest; and what the user can do with it: reply, react,
// and for their own messages edit in place and delete.

import { ChatError, type ChatClient, type Message } from "../../js/src/index.js";
import { describe, h, hueOf, timeOf } from "./dom.js";
import { mentionParts, mentionsOf } from "./mentions.js";
import { seenText } from "./receipts.js";
import type { ChannelView, Editing, Place } from "./view.js";

/** The emoji the picker offers. */
export const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"] as const;

/** Characters of a message quoted above a reply. */
const QUOTE_CHARS = 80;

export interface MessageHost {
  client(): ChatClient | undefined;
  user(): string;
  /** Whether the user owns `channel`: an owner may delete anyone's message. */
  isOwner(channel: string): boolean;
  /** Draws post `seq` of `view` again wherever it is shown. */
  redraw(view: ChannelView, seq: number): void;
  /** The user chose to answer post `seq`, from `place`. */
  reply(view: ChannelView, seq: number, place: Place): void;
  /** Shows the thread that starts at post `root`. */
  openThread(view: ChannelView, root: number): void;
  attachment(id: string): HTMLElement;
  setStatus(text: string): void;
}

/** `text` on one line, cut to `max` characters. */
export function snippet(text: string, max = QUOTE_CHARS): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= max ? line : `${line.slice(0, max - 1).trimEnd()}…`;
}

/** "1 reply", "2 replies". */
export function repliesLabel(n: number): string {
  return n === 1 ? "1 reply" : `${n} replies`;
}

/** Why a change to a message was refused, for the user. */
export function explainChange(err: unknown, what: "edit" | "delete" | "react"): string {
  const code = err instanceof ChatError ? err.code : "";
  if (code === "not_found") return "That message was deleted.";
  if (code === "forbidden") return what === "edit" ? "Only its author can edit a message." : "Only its author or a channel owner can delete a message.";
  if (code === "blocked") return "The channel's moderation refused that text.";
  if (code === "not_member") return "You are no longer a member of this channel.";
  return `Could not ${what}: ${describe(err)}`;
}

export class MessageRenderer {
  constructor(private readonly host: MessageHost) {}

  /** The node of `post` for `place`. */
  render(view: ChannelView, post: Message, place: Place): HTMLLIElement {
    const user = this.host.user();
    const deleted = post.deleted === true;
    const saved = this.savedEdit(view, post);
    const edited = !deleted && ((post.edit_count ?? 0) > 0 || saved !== undefined);
    const replies = view.replies.count(post.seq);
    const data: Record<string, string> = { seq: String(post.seq), messageId: post.message_id, sender: post.sender_id };
    if (edited) data["edited"] = "true";
    if (deleted) data["deleted"] = "true";
    if (post.reply_to !== undefined) data["replyTo"] = String(post.reply_to);
    if (replies > 0) data["replies"] = String(replies);
    const classes = ["message"];
    if (post.sender_id === user) classes.push("mine");
    if (deleted) classes.push("deleted");
    if (post.sender_id !== user && mentionsOf(post).includes(user)) {
      classes.push("mentions-me");
      data["mentionsMe"] = "true";
    }
    const item = h("li", { class: classes.join(" "), data });
    item.style.setProperty("--hue", String(hueOf(post.sender_id)));

    const meta = h(
      "div",
      { class: "meta" },
      h("span", { class: "sender", text: post.sender_id }),
      h("time", { class: "time", text: timeOf(post.created_at_ms), attrs: { datetime: new Date(post.created_at_ms).toISOString() } }),
    );
    if (edited) {
      const at = post.edited_at_ms;
      meta.append(h("span", { class: "edited", text: saved ? "(edited, saving…)" : "(edited)", title: at !== undefined && !saved ? `edited at ${timeOf(at)}` : "edited" }));
    }
    if (!deleted) meta.append(this.actions(view, post, place));
    meta.append(h("span", { class: "seq", text: `#${post.seq}` }));
    item.append(meta);

    if (post.reply_to !== undefined && place === "channel") item.append(this.quote(view, post.reply_to));
    const editing = view.ui.editing;
    if (deleted) item.append(h("div", { class: "body tombstone", text: "message deleted" }));
    else if (editing?.seq === post.seq && editing.place === place) item.append(this.editor(view, editing));
    else item.append(this.body(saved?.body ?? post.body));
    if (!deleted) for (const id of post.attachments ?? []) item.append(this.host.attachment(id));
    if (!deleted && (post.reactions?.length ?? 0) > 0) item.append(this.reactions(view, post));
    const picking = view.ui.picking;
    if (!deleted && picking?.seq === post.seq && picking.place === place) item.append(this.picker(view, post));
    const confirming = view.ui.confirming;
    if (!deleted && confirming?.seq === post.seq && confirming.place === place) item.append(this.confirmation(view, post));
    if (replies > 0 && place === "channel") item.append(this.threadLink(view, post, replies));
    const receipt = view.receipt;
    if (place === "channel" && receipt?.seq === post.seq) {
      item.append(h("div", { class: "seen-by", text: seenText(receipt.users), data: { users: receipt.users.join(",") } }));
    }
    return item;
  }

  /** A message's text, its `@user` mentions emphasized (the user's own more). */
  private body(text: string): HTMLElement {
    const me = this.host.user();
    const body = h("div", { class: "body" });
    for (const part of mentionParts(text)) {
      if (part.user === undefined) body.append(part.text);
      else body.append(h("strong", { class: part.user === me ? "mention me" : "mention", text: part.text, data: { user: part.user } }));
    }
    return body;
  }

  /** The edit the user saved, while its event is on its way. */
  private savedEdit(view: ChannelView, post: Message): { body: string } | undefined {
    const saved = view.ui.saved.get(post.seq);
    if (!saved) return undefined;
    if (post.deleted || (post.version ?? 0) >= saved.seq) {
      view.ui.saved.delete(post.seq);
      return undefined;
    }
    return saved;
  }

  private button(cls: string, text: string, run: () => void, props: { title?: string; attrs?: Record<string, string> } = {}): HTMLButtonElement {
    const b = h("button", { class: cls, text, attrs: { type: "button", ...props.attrs } });
    if (props.title !== undefined) b.title = props.title;
    b.addEventListener("click", (e) => {
      e.stopPropagation();
      run();
    });
    return b;
  }

  private actions(view: ChannelView, post: Message, place: Place): HTMLElement {
    const mine = post.sender_id === this.host.user();
    const picking = view.ui.picking?.seq === post.seq && view.ui.picking.place === place;
    const bar = h(
      "span",
      { class: "message-actions" },
      this.button("action reply-action", "Reply", () => this.host.reply(view, post.seq, place), { title: "Reply in the thread" }),
      this.button("action react-action", "React", () => this.togglePicker(view, post.seq, place), {
        title: "Add a reaction",
        attrs: { "aria-expanded": String(picking) },
      }),
    );
    if (mine) bar.append(this.button("action edit-action", "Edit", () => this.startEdit(view, post, place)));
    if (mine || this.host.isOwner(view.id)) {
      const deleting = view.ui.deleting.has(post.seq);
      const del = this.button("action delete-action", deleting ? "Deleting…" : "Delete", () => this.askDelete(view, post.seq, place));
      del.disabled = deleting;
      bar.append(del);
    }
    return bar;
  }

  /** What a reply answers: its thread's first message, quoted; a click opens the thread. */
  private quote(view: ChannelView, rootSeq: number): HTMLElement {
    const root = view.post(rootSeq);
    const quote = this.button("reply-quote", "", () => this.host.openThread(view, rootSeq), { title: "Open the thread" });
    quote.dataset["root"] = String(rootSeq);
    quote.append(h("span", { class: "quote-mark", text: "↪", attrs: { "aria-hidden": "true" } }));
    if (!root) {
      quote.append(h("span", { class: "quote-text", text: `reply to an earlier message (#${rootSeq})` }));
      return quote;
    }
    const who = h("span", { class: "quote-sender", text: root.sender_id });
    who.style.setProperty("--hue", String(hueOf(root.sender_id)));
    const text = root.deleted ? "message deleted" : snippet(root.body) || "(attachment)";
    quote.append(who, h("span", { class: root.deleted ? "quote-text tombstone" : "quote-text", text }));
    return quote;
  }

  private threadLink(view: ChannelView, post: Message, replies: number): HTMLElement {
    return h("div", { class: "thread-link" }, this.button("replies", repliesLabel(replies), () => this.host.openThread(view, post.seq), { title: "Open the thread" }));
  }

  private reactions(view: ChannelView, post: Message): HTMLElement {
    const row = h("div", { class: "reactions" });
    for (const r of post.reactions ?? []) {
      const busy = view.ui.reacting.has(`${post.seq} ${r.emoji}`);
      const chip = this.button(r.me ? "reaction reacted" : "reaction", "", () => void this.toggleReaction(view, post.seq, r.emoji), {
        title: r.me ? `You reacted with ${r.emoji}: click to take it back` : `React with ${r.emoji}`,
        attrs: { "aria-pressed": String(r.me) },
      });
      chip.dataset["emoji"] = r.emoji;
      chip.dataset["count"] = String(r.count);
      if (busy) chip.setAttribute("aria-busy", "true");
      chip.append(h("span", { class: "emoji", text: r.emoji }), h("span", { class: "count", text: String(r.count) }));
      row.append(chip);
    }
    return row;
  }

  private picker(view: ChannelView, post: Message): HTMLElement {
    const mine = new Set((post.reactions ?? []).filter((r) => r.me).map((r) => r.emoji));
    const picker = h("div", { class: "emoji-picker", attrs: { role: "group", "aria-label": "reactions" } });
    for (const emoji of QUICK_EMOJI) {
      const b = this.button(mine.has(emoji) ? "pick reacted" : "pick", emoji, () => void this.toggleReaction(view, post.seq, emoji), {
        title: mine.has(emoji) ? `Take back ${emoji}` : `React with ${emoji}`,
        attrs: { "aria-pressed": String(mine.has(emoji)) },
      });
      b.dataset["emoji"] = emoji;
      picker.append(b);
    }
    picker.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      view.ui.picking = undefined;
      this.host.redraw(view, post.seq);
    });
    return picker;
  }

  private confirmation(view: ChannelView, post: Message): HTMLElement {
    return h(
      "div",
      { class: "confirm-delete", attrs: { role: "alertdialog", "aria-label": "delete this message" } },
      h("span", { text: "Delete this message for everyone?" }),
      " ",
      this.button("danger confirm-delete-yes", "Delete", () => void this.confirmDelete(view, post.seq)),
      " ",
      this.button("confirm-delete-no", "Cancel", () => {
        view.ui.confirming = undefined;
        this.host.redraw(view, post.seq);
      }),
    );
  }

  private editor(view: ChannelView, editing: Editing): HTMLElement {
    const save = h("button", { class: "edit-save", text: editing.saving ? "Saving…" : "Save", attrs: { type: "submit" } });
    save.disabled = editing.saving;
    editing.input.disabled = editing.saving;
    const cancel = this.button("edit-cancel", "Cancel", () => this.cancelEdit(view));
    const form = h("form", { class: "edit-form" }, editing.input, h("div", { class: "edit-buttons" }, save, cancel, h("span", { class: "hint", text: "Enter to save · Esc to cancel" })));
    if (editing.error !== "") form.append(h("p", { class: "error edit-error", text: editing.error, attrs: { role: "alert" } }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.saveEdit(view);
    });
    return form;
  }

  // -- what the user does ---------------------------------------------------

  startEdit(view: ChannelView, post: Message, place: Place): void {
    const previous = view.ui.editing;
    const input = h("input", { class: "edit-input", attrs: { "aria-label": "edit message", maxlength: "4000", autocomplete: "off" } });
    input.value = view.ui.saved.get(post.seq)?.body ?? post.body;
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.cancelEdit(view);
      }
    });
    view.ui.editing = { seq: post.seq, place, input, saving: false, error: "" };
    view.ui.picking = undefined;
    view.ui.confirming = undefined;
    if (previous) this.host.redraw(view, previous.seq);
    this.host.redraw(view, post.seq);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  cancelEdit(view: ChannelView): void {
    const editing = view.ui.editing;
    if (!editing) return;
    view.ui.editing = undefined;
    this.host.redraw(view, editing.seq);
  }

  async saveEdit(view: ChannelView): Promise<void> {
    const editing = view.ui.editing;
    const client = this.host.client();
    if (!editing || editing.saving || !client) return;
    const post = view.post(editing.seq);
    const body = editing.input.value.trim();
    if (!post || post.deleted || body === (view.ui.saved.get(editing.seq)?.body ?? post.body)) {
      this.cancelEdit(view);
      return;
    }
    if (body === "") {
      editing.error = "A message cannot be empty: delete it instead.";
      this.host.redraw(view, editing.seq);
      return;
    }
    editing.saving = true;
    editing.error = "";
    this.host.redraw(view, editing.seq);
    try {
      const ack = await client.edit(view.id, editing.seq, body);
      // A masked edit's text is not what was typed: its event brings it.
      if (!ack.masked) view.ui.saved.set(editing.seq, { body, seq: ack.seq });
      if (view.ui.editing === editing) view.ui.editing = undefined;
    } catch (err) {
      if (view.ui.editing !== editing) return;
      editing.saving = false;
      editing.error = explainChange(err, "edit");
    }
    this.host.redraw(view, editing.seq);
    if (view.ui.editing === editing) editing.input.focus();
  }

  private askDelete(view: ChannelView, seq: number, place: Place): void {
    const previous = view.ui.confirming;
    view.ui.confirming = { seq, place };
    view.ui.picking = undefined;
    if (previous && previous.seq !== seq) this.host.redraw(view, previous.seq);
    this.host.redraw(view, seq);
  }

  private async confirmDelete(view: ChannelView, seq: number): Promise<void> {
    const client = this.host.client();
    view.ui.confirming = undefined;
    if (!client || view.ui.deleting.has(seq)) return;
    if (view.ui.editing?.seq === seq) view.ui.editing = undefined;
    view.ui.deleting.add(seq);
    this.host.redraw(view, seq);
    try {
      await client.delete(view.id, seq);
    } catch (err) {
      this.host.setStatus(explainChange(err, "delete"));
    } finally {
      view.ui.deleting.delete(seq);
      this.host.redraw(view, seq);
    }
  }

  private togglePicker(view: ChannelView, seq: number, place: Place): void {
    const open = view.ui.picking?.seq === seq && view.ui.picking.place === place;
    const previous = view.ui.picking;
    view.ui.picking = open ? undefined : { seq, place };
    if (previous && previous.seq !== seq) this.host.redraw(view, previous.seq);
    this.host.redraw(view, seq);
  }

  /** Adds the user's `emoji` to post `seq`, or takes it back if it is there. */
  async toggleReaction(view: ChannelView, seq: number, emoji: string): Promise<void> {
    const client = this.host.client();
    const post = view.post(seq);
    const key = `${seq} ${emoji}`;
    if (!client || !post || post.deleted || view.ui.reacting.has(key)) return;
    const mine = post.reactions?.some((r) => r.emoji === emoji && r.me) === true;
    view.ui.reacting.add(key);
    view.ui.picking = undefined;
    this.host.redraw(view, seq);
    try {
      if (mine) await client.unreact(view.id, seq, emoji);
      else await client.react(view.id, seq, emoji);
    } catch (err) {
      this.host.setStatus(explainChange(err, "react"));
    } finally {
      view.ui.reacting.delete(key);
      this.host.redraw(view, seq);
    }
  }
}
