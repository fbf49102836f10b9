// Writing: the composer (text, an image, the message it answers), typing
// frames while the user types, and sends under way. A message typed while
// offline stays on screen as waiting and goes out (once, with its
// idempotency key) when the connection is back.

import type { ChatClient, Message } from "../../js/src/index.js";
import { byId, describe, h, hueOf } from "./dom.js";
import { snippet } from "./message.js";
import { TypingSender } from "./typing.js";
import type { ChannelView, PendingSend } from "./view.js";

export interface ComposerHost {
  client(): ChatClient | undefined;
  user(): string;
  active(): ChannelView | undefined;
  isPinned(): boolean;
  scrollToBottom(): void;
  /** Something is on its way: a "No messages yet" notice is over. */
  sending(view: ChannelView): void;
}

type PendingState = "uploading" | "sending" | "stored" | "failed";

export class Composer {
  readonly typing: TypingSender;

  private readonly el = {
    form: byId<HTMLFormElement>("composer"),
    body: byId<HTMLInputElement>("body"),
    file: byId<HTMLInputElement>("file"),
    reply: byId<HTMLElement>("reply-target"),
    replyText: byId<HTMLElement>("reply-target-text"),
    replyCancel: byId<HTMLButtonElement>("reply-cancel"),
  };

  constructor(private readonly host: ComposerHost) {
    this.typing = new TypingSender((channel, stop) => this.host.client()?.typing(channel, stop));
    this.el.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.el.file.addEventListener("change", () => {
      const file = this.el.file.files?.[0];
      this.el.file.value = "";
      if (file) this.attach(file);
    });
    this.el.body.addEventListener("input", () => {
      const view = this.host.active();
      if (view) this.typing.draft(view.id, this.el.body.value.trim() !== "");
    });
    this.el.body.addEventListener("keydown", (e) => {
      const view = this.host.active();
      if (e.key === "Escape" && view?.replyTo !== undefined) this.setReply(view, undefined);
    });
    this.el.replyCancel.addEventListener("click", () => {
      const view = this.host.active();
      if (view) this.setReply(view, undefined);
    });
  }

  focus(): void {
    this.el.body.focus();
  }

  /** The next message sent in `view` answers post `seq` (none for `undefined`). */
  setReply(view: ChannelView, seq: number | undefined): void {
    view.replyTo = seq;
    if (view === this.host.active()) {
      this.showReply(view);
      this.el.body.focus();
    }
  }

  /** Shows what the open channel's next message answers. */
  showReply(view: ChannelView | undefined): void {
    const seq = view?.replyTo;
    const post = seq === undefined ? undefined : view?.post(seq);
    this.el.reply.hidden = seq === undefined;
    if (seq === undefined) {
      delete this.el.reply.dataset["seq"];
      return;
    }
    this.el.reply.dataset["seq"] = String(seq);
    this.el.replyText.replaceChildren("Replying to ");
    if (post) {
      const who = h("span", { class: "sender", text: post.sender_id });
      who.style.setProperty("--hue", String(hueOf(post.sender_id)));
      this.el.replyText.append(who, ": ", h("span", { class: "quote-text", text: post.deleted ? "message deleted" : snippet(post.body, 60) }));
    } else {
      this.el.replyText.append(`message #${seq}`);
    }
  }

  /** Leaving `view` for another channel: its typing stops. */
  left(view: ChannelView): void {
    this.typing.stop(view.id);
  }

  /** Sends `body` in `view`, as a reply to `replyTo` if given. */
  send(view: ChannelView, body: string, replyTo: number | undefined): void {
    this.start(view, { key: crypto.randomUUID(), body, file: undefined, attachments: undefined, replyTo });
  }

  /** A post arrived: a send it answers is done. */
  arrived(view: ChannelView, post: Message): void {
    for (const p of view.pending.values()) {
      if (p.messageId === post.message_id) this.drop(view, p);
    }
  }

  /** Shows every send of `view` again (the connection came or went). */
  refresh(view: ChannelView): void {
    for (const p of view.pending.values()) this.renderPending(view, p);
  }

  private submit(): void {
    const view = this.host.active();
    const body = this.el.body.value.trim();
    if (!view || body === "") return;
    this.el.body.value = "";
    this.typing.stop(view.id);
    const replyTo = view.replyTo;
    this.setReply(view, undefined);
    this.send(view, body, replyTo);
  }

  private attach(file: File): void {
    const view = this.host.active();
    if (!view) return;
    const caption = this.el.body.value.trim();
    this.el.body.value = "";
    this.typing.stop(view.id);
    const replyTo = view.replyTo;
    this.setReply(view, undefined);
    this.start(view, { key: crypto.randomUUID(), body: caption === "" ? file.name : caption, file, attachments: undefined, replyTo });
  }

  private start(view: ChannelView, what: Omit<PendingSend, "messageId" | "node">): void {
    const node = h("li", { class: "pending", data: { key: what.key, state: "sending" } });
    const p: PendingSend = { ...what, messageId: undefined, node };
    view.pending.set(p.key, p);
    view.pendingList.append(node);
    this.host.sending(view);
    this.renderPending(view, p);
    if (view === this.host.active()) this.host.scrollToBottom();
    void this.run(view, p);
  }

  private async run(view: ChannelView, p: PendingSend): Promise<void> {
    const client = this.host.client();
    if (!client) return;
    try {
      if (p.file && p.attachments === undefined) {
        this.show(view, p, "uploading");
        const media = await client.uploadMedia(view.id, p.file, { filename: p.file.name, contentType: p.file.type || "application/octet-stream" });
        p.attachments = [media.media_id];
      }
      this.show(view, p, "sending");
      const options: { idempotencyKey: string; attachments?: string[]; replyTo?: number } = { idempotencyKey: p.key };
      if (p.attachments) options.attachments = p.attachments;
      if (p.replyTo !== undefined) options.replyTo = p.replyTo;
      const ack = await client.send(view.id, p.body, options);
      p.messageId = ack.message_id;
      if (view.timeline.has(ack.message_id)) this.drop(view, p);
      else this.show(view, p, "stored");
    } catch (err) {
      if (this.host.client() !== client) return;
      this.show(view, p, "failed", describe(err));
    }
  }

  private show(view: ChannelView, p: PendingSend, state: PendingState, error?: string): void {
    p.node.dataset["state"] = state;
    this.renderPending(view, p, error);
  }

  private renderPending(view: ChannelView, p: PendingSend, error?: string): void {
    const state = p.node.dataset["state"] ?? "sending";
    const offline = this.host.client()?.state !== "connected";
    const labels: Record<string, string> = {
      uploading: `uploading ${p.file?.name ?? ""}…`,
      sending: offline ? "waiting for the connection…" : "sending…",
      stored: "sent",
      failed: `not sent: ${error ?? p.node.dataset["error"] ?? "failed"}`,
    };
    if (error !== undefined) p.node.dataset["error"] = error;
    const children: (Node | string)[] = [
      h("div", { class: "meta" }, h("span", { class: "sender", text: this.host.user() }), h("span", { class: "pending-state", text: labels[state] ?? state })),
    ];
    if (p.replyTo !== undefined) {
      const root = view.post(p.replyTo);
      const text = root ? `${root.sender_id}: ${root.deleted ? "message deleted" : snippet(root.body)}` : `message #${p.replyTo}`;
      children.push(h("div", { class: "reply-quote", text: `↪ ${text}` }));
    }
    children.push(h("div", { class: "body", text: p.body }));
    if (state === "failed") {
      const retry = h("button", { text: "Retry", attrs: { type: "button" } });
      retry.addEventListener("click", () => void this.run(view, p));
      const discard = h("button", { text: "Discard", attrs: { type: "button" } });
      discard.addEventListener("click", () => this.drop(view, p));
      children.push(h("div", { class: "actions" }, retry, " ", discard));
    }
    const pinned = view === this.host.active() && this.host.isPinned();
    p.node.replaceChildren(...children);
    if (pinned) this.host.scrollToBottom();
  }

  private drop(view: ChannelView, p: PendingSend): void {
    view.pending.delete(p.key);
    p.node.remove();
  }
}
