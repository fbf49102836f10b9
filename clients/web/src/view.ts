// What the page holds for one channel: its messages in their current
// state, what it is sending, who is online and typing, who has read what,
// and where the user is in editing, deleting or reacting to a message.

import { MessageState, type HistoryPage, type Message, type Subscription } from "../../js/src/index.js";
import { h } from "./dom.js";
import { ReplyCounts } from "./replies.js";
import { Timeline } from "./timeline.js";

/** Where a message is drawn: the channel's list, or the open thread. */
export type Place = "channel" | "thread";

export interface PendingSend {
  key: string;
  body: string;
  file: File | undefined;
  attachments: string[] | undefined;
  /** The message answered, when it is a reply. */
  replyTo: number | undefined;
  messageId: string | undefined;
  node: HTMLLIElement;
}

export interface ActivityItem {
  at: number;
  user: string;
  event: string;
}

/** A message being edited in place. */
export interface Editing {
  seq: number;
  place: Place;
  /** Kept across redraws, so the draft, focus and caret stay. */
  input: HTMLInputElement;
  saving: boolean;
  error: string;
}

/** An edit the gateway took whose event has not arrived yet: shown meanwhile. */
export interface SavedEdit {
  body: string;
  /** The edit event's `seq`. */
  seq: number;
}

/** What the user has under way with the channel's messages. */
export interface Interaction {
  editing: Editing | undefined;
  saved: Map<number, SavedEdit>;
  /** The message whose delete waits for the user's confirmation. */
  confirming: { seq: number; place: Place } | undefined;
  /** Deletes sent and not answered yet. */
  deleting: Set<number>;
  /** The message whose emoji picker is open. */
  picking: { seq: number; place: Place } | undefined;
  /** Reactions sent and not answered yet, as `${seq} ${emoji}`. */
  reacting: Set<string>;
}

export class ChannelView {
  /** The channel's posts in order, each once: what the list shows. */
  readonly timeline = new Timeline<Message>();
  /** Every post the page holds (the list's, and an open thread's), in its current state. */
  readonly state: MessageState;
  readonly replies = new ReplyCounts();
  /** The list's node of each post, by `seq`. */
  readonly nodes = new Map<number, HTMLLIElement>();
  readonly ui: Interaction = {
    editing: undefined,
    saved: new Map(),
    confirming: undefined,
    deleting: new Set(),
    picking: undefined,
    reacting: new Set(),
  };
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
  /** Who else is typing, sorted. */
  typing: string[] = [];
  /** The message the composer's next send answers. */
  replyTo: number | undefined;
  sub: Subscription | undefined;
  pages: AsyncGenerator<HistoryPage> | undefined;
  opening: Promise<void> | undefined;
  loadingOlder = false;
  reachedStart = false;
  /** Whether its newest page of history is in: a channel only watched for its badge holds what arrived live. */
  loaded = false;
  /** Changes that came before the history holding their posts: applied again once it is in. */
  readonly early: Message[] = [];
  /** Whether the user is reading it now: open, loaded, and the page visible. */
  reading = false;
  /** The "New messages" line above the first post the user had not read. */
  divider: HTMLLIElement | undefined;
  /** Members' read positions, by user: the receipts. */
  readonly positions = new Map<string, number>();
  /** Who has read the user's latest post, shown under it. */
  receipt: { seq: number; users: string[] } | undefined;
  scrollTop: number | undefined;
  observer: IntersectionObserver | undefined;

  constructor(
    readonly id: string,
    user: string,
  ) {
    this.state = new MessageState({ userId: user });
    this.edge = h("div", { class: "history-edge", data: { state: "idle" } });
    this.list = h("ol", { class: "message-list", attrs: { "aria-label": `messages of ${id}` } });
    this.pendingList = h("ol", { class: "pending-list", attrs: { "aria-label": "messages being sent" } });
    this.notice = h("div", { class: "channel-notice", attrs: { role: "status" } });
    this.root = h("div", { class: "timeline", data: { channel: id } }, this.edge, this.list, this.pendingList, this.notice);
  }

  /** Says `text` under the messages (nothing for ""), with "Try again" running `retry`. */
  showNotice(text: string, retry?: () => void): void {
    this.notice.replaceChildren();
    this.notice.hidden = text === "";
    if (text === "") return;
    this.notice.append(h("span", { text }));
    if (retry) this.addNoticeAction("Try again", retry);
  }

  /** A button after the notice. */
  addNoticeAction(label: string, run: () => void): void {
    const button = h("button", { text: label, attrs: { type: "button" } });
    button.addEventListener("click", run);
    this.notice.append(" ", button);
  }

  /** Takes away a "No messages yet" notice: something is there now. */
  notEmpty(): void {
    if (this.notice.textContent?.startsWith("No messages yet")) this.showNotice("");
  }

  /** The post `seq` in its current state, if the page holds it. */
  post(seq: number): Message | undefined {
    return this.state.get(seq);
  }
}
