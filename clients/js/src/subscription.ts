import { Emitter } from "./emitter.js";
import type { ChatError } from "./errors.js";
import type { PresenceFrame, ReadPositionFrame, ReloadRequiredFrame, TypingUsersFrame } from "./generated/protocol.js";
import type { HistoryPage, HistoryQuery, Message } from "./http.js";

export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

/** A member came online in the channel or went offline there. */
export type PresenceEvent = Omit<PresenceFrame, "type">;

/**
 * Who is typing in the channel now: the whole set, sorted, each time it
 * changes. It includes this client's own user while they type.
 */
export type TypingEvent = Omit<TypingUsersFrame, "type">;

/**
 * A member's read position in the channel moved (a read receipt): they
 * have read it up to `seq`. Includes this client's own user.
 */
export type ReadEvent = Omit<ReadPositionFrame, "type" | "request_id">;

/** The gateway could not replay `from_seq`..`to_seq`; reload them from history. */
export interface ReloadRequiredEvent {
  channel_id: string;
  from_seq: number;
  to_seq: number;
  /**
   * Pages the history API for the range and returns the stored messages
   * in it, in sequence order. With `reload: "fill"` the client has already
   * done so and delivered them as `message` events; then `filled` is set.
   */
  fill: () => Promise<Message[]>;
  /** With `reload: "fill"`: how many messages were delivered from history. */
  filled?: number;
  /** With `reload: "fill"`: why the range could not be loaded. */
  error?: unknown;
}

export interface SubscriptionEvents {
  state: [state: SubscriptionState, previous: SubscriptionState];
  message: [message: Message];
  presence: [event: PresenceEvent];
  typing: [event: TypingEvent];
  read: [event: ReadEvent];
  reload_required: [event: ReloadRequiredEvent];
  error: [error: ChatError];
}

/** What a subscription needs from its client. */
export interface SubscriptionHost {
  unsubscribe(subscription: Subscription): Promise<void>;
  online(channel: string): Promise<string[]>;
  history(channel: string, query?: HistoryQuery): Promise<HistoryPage>;
  range(channel: string, fromSeq: number, toSeq: number, after?: string): Promise<Message[]>;
}

/**
 * One channel the client receives. It stays subscribed across reconnects:
 * after every new connection it subscribes again with `lastSeq`, and the
 * gateway replays what was missed.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  private current: SubscriptionState = "unsubscribed";
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  /** @internal The WebSocket base URL of the connection the channel is on. */
  linkUrl: string | undefined;
  /** @internal The request ID of the subscribe under way. */
  requestId: string | undefined;
  /** @internal Retries of a subscribe that failed with a retryable error. */
  attempt = 0;
  /** @internal Redirects in a row. */
  redirects = 0;
  /** @internal A pending retry. */
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** @internal While the client loads a `reload_required` range: live messages wait here. */
  held: ({ message: Message } | { reload: ReloadRequiredFrame })[] | undefined;
  /** @internal Removed by unsubscribe or a refusal; never subscribed again. */
  removed = false;

  /** The highest sequence number delivered (or the channel's at first subscribe). */
  lastSeq: number | undefined;
  /** The ID of the message with `lastSeq`, when it was delivered. */
  lastMessageId: string | undefined;

  constructor(
    readonly channel: string,
    private readonly host: SubscriptionHost,
    lastSeq?: number,
  ) {
    super();
    this.lastSeq = lastSeq;
  }

  get state(): SubscriptionState {
    return this.current;
  }

  /** @internal */
  setState(next: SubscriptionState): void {
    const previous = this.current;
    if (previous === next) return;
    this.current = next;
    if (next === "subscribed") {
      for (const w of this.waiters.splice(0)) w.resolve();
    }
    this.emit("state", next, previous);
  }

  /** @internal */
  fail(error: ChatError): void {
    this.removed = true;
    for (const w of this.waiters.splice(0)) w.reject(error);
    this.setState("unsubscribed");
    if (this.listenerCount("error") > 0) this.emit("error", error);
  }

  /** @internal The client closed: nothing is coming. */
  close(error: ChatError): void {
    for (const w of this.waiters.splice(0)) w.reject(error);
    this.setState("unsubscribed");
  }

  /** @internal */
  deliver(message: Message): void {
    this.emit("message", message);
  }

  /** @internal */
  deliverPresence(event: PresenceEvent): void {
    this.emit("presence", event);
  }

  /** @internal */
  deliverTyping(event: TypingEvent): void {
    this.emit("typing", event);
  }

  /** @internal */
  deliverRead(event: ReadEvent): void {
    this.emit("read", event);
  }

  /** @internal */
  deliverReload(event: ReloadRequiredEvent): void {
    this.emit("reload_required", event);
  }

  /** Resolves once the gateway confirmed the subscription; rejects if it refused it. */
  ready(): Promise<void> {
    if (this.current === "subscribed") return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops receiving the channel. */
  unsubscribe(): Promise<void> {
    return this.host.unsubscribe(this);
  }

  /** The channel's members with a live session subscribed to it. */
  online(): Promise<string[]> {
    return this.host.online(this.channel);
  }

  /** A page of the channel's history. */
  history(query?: HistoryQuery): Promise<HistoryPage> {
    return this.host.history(this.channel, query);
  }

  /** The stored messages with `fromSeq <= seq <= toSeq`, in order. */
  range(fromSeq: number, toSeq: number): Promise<Message[]> {
    const after = this.lastSeq !== undefined && this.lastSeq === fromSeq - 1 ? this.lastMessageId : undefined;
    return this.host.range(this.channel, fromSeq, toSeq, after);
  }
}
