import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ChatError } from "./errors.js";
import type {
  DeleteFrame,
  EditFrame,
  ErrorFrame,
  MessageFrame,
  PresenceFrame,
  ReactFrame,
  ReconnectFrame,
  ReloadRequiredFrame,
  SendAckFrame,
  SendFrame,
  ServerFrame,
  ReadPositionFrame,
  TypingUsersFrame,
} from "./generated/protocol.js";
import {
  HttpApi,
  httpBase,
  wsBase,
  type Channel,
  type ChannelMember,
  type CreateChannelOptions,
  type DownloadUrl,
  type HistoryPage,
  type HistoryQuery,
  type Media,
  type Message,
  type OpenApiDocument,
  type PublicChannelsPage,
  type PublicChannelsQuery,
  type RouteInfo,
  type UnreadCounts,
  type UploadBody,
  type UserPresence,
} from "./http.js";
import { randomKey } from "./keys.js";
import { Link, type LinkClosed, type LinkHost, type TransportHooks, type WebSocketConstructor } from "./link.js";
import { Subscription, type PresenceEvent, type ReadEvent, type ReloadRequiredEvent, type TypingEvent } from "./subscription.js";
import { TokenManager, type GetToken } from "./token.js";

/**
 * - `disconnected`: not connected and not trying: before `connect()`, or
 *   after a failure that retrying cannot fix (a refused token, say);
 *   `connect()` starts again.
 * - `connecting`: opening a connection, or waiting to retry.
 * - `connected`: every connection the client needs is open.
 * - `closed`: `close()` was called; final.
 */
export type ConnectionState = "disconnected" | "connecting" | "connected" | "closed";

/**
 * The gateway stored the message, or the change: `message_id` and `seq`
 * are those of the event (an edit, delete or reaction has a number of its own).
 */
export type SendAck = Omit<SendAckFrame, "type" | "request_id">;

export interface ClientOptions {
  /**
   * Gateway URL(s): `wss://chat.example.com` (a `/v1/ws` path is optional).
   * With several, the client moves to the next when one cannot be reached.
   */
  url: string | string[];
  /** A JWT. Give `getToken` as well (or instead) to have it refreshed. */
  token?: string;
  /**
   * Returns a fresh JWT. Called when there is no token, shortly before the
   * current one expires (from its `exp`), on every reconnect and when the
   * gateway refuses a token.
   */
  getToken?: GetToken;
  /** The `WebSocket` class; defaults to the platform's. Node 20 has none: pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** `fetch`; defaults to the platform's. */
  fetch?: typeof fetch;
  /** Reconnect backoff, with full jitter (defaults: 250 ms doubling up to 15 s). */
  backoff?: Partial<BackoffOptions>;
  /** Ping every this many ms (default 10 000; the gateway expires sessions silent for 30 s). */
  pingIntervalMs?: number;
  /** A connection with no frame this long after a ping is dead (default 5 000). */
  pongTimeoutMs?: number;
  /** A connection not open after this long is given up (default 10 000). */
  connectTimeoutMs?: number;
  /** A keepalive timer this late by the wall clock means the host slept (default 5 000). */
  sleepThresholdMs?: number;
  /** After a sleep this long the gateway has expired the session: reconnect at once (default 30 000). */
  sessionTtlMs?: number;
  /** Wait this long for a send's (or change's) ack before sending it again with the same key (default 10 000). */
  sendAckTimeoutMs?: number;
  /** Give up on a send or change after this long (default 60 000; 0 never gives up). */
  sendTimeoutMs?: number;
  /**
   * Sends and changes in flight per channel (default 1, which keeps a
   * channel's sends and changes in order even across retries).
   */
  sendWindow?: number;
  /** Refresh a token this long before it expires, at most a quarter of its lifetime (default 30 000). */
  tokenRefreshMarginMs?: number;
  /** Refuse frames larger than this before sending (the gateway's `limits.max_frame_bytes`, default 16 384). */
  maxFrameBytes?: number;
  /** HTTP request timeout (default 10 000). */
  httpTimeoutMs?: number;
  /** Retries of an HTTP request that failed with a retryable error (default 2). */
  httpRetries?: number;
  /**
   * What to do with `reload_required`: `"event"` (default) only emits it;
   * `"fill"` loads the range from history, delivers it as `message` events
   * in order (holding live messages meanwhile), then emits it.
   */
  reload?: "event" | "fill";
  /** Hooks into the transport, for tests and debugging. */
  hooks?: TransportHooks;
  /** The wall clock, in ms since the Unix epoch (for tests). */
  now?: () => number;
  /** A random number in [0, 1) (for tests). */
  random?: () => number;
}

export interface SubscribeOptions {
  /** Resume after this sequence number (one stored from an earlier session, say). */
  lastSeq?: number;
}

export interface SendOptions {
  attachments?: string[];
  /** One key per logical message; generated when absent and reused on every retry. */
  idempotencyKey?: string;
  /** A W3C `traceparent` the send continues. */
  traceparent?: string;
  /**
   * Reply to the message with this `seq`: the message joins its thread, or
   * the thread it is in (threads are flat).
   */
  replyTo?: number;
}

export interface ChangeOptions {
  /** One key per logical change; generated when absent and reused on every retry. */
  idempotencyKey?: string;
}

export interface ReconnectingInfo {
  url: string;
  attempt: number;
  delayMs: number;
  reason: string;
}

export interface ClientEvents {
  state: [state: ConnectionState, previous: ConnectionState];
  message: [message: Message, subscription: Subscription];
  presence: [event: PresenceEvent, subscription: Subscription];
  typing: [event: TypingEvent, subscription: Subscription];
  read: [event: ReadEvent, subscription: Subscription];
  reload_required: [event: ReloadRequiredEvent, subscription: Subscription];
  /** A connection was lost or refused and will be opened again after `delayMs`. */
  reconnecting: [info: ReconnectingInfo];
  /** A connection to `url` opened. */
  open: [info: { url: string }];
  /** The gateway moved channels: a `redirect` or `reconnect` frame. */
  moved: [info: { channels: string[]; from: string; to: string; reason: string }];
  /** The keepalive timer noticed the host slept. */
  wake: [info: { url: string; sleptMs: number }];
  /** A new token from `getToken`. */
  token: [token: string];
  error: [error: Error];
}

/** A frame the gateway answers with an `ack`: a send, or a change to an earlier message. */
type AckedFrame = SendFrame | EditFrame | DeleteFrame | ReactFrame;

/** A send or change waiting for its ack. */
interface PendingSend {
  channel: string;
  /** What to transmit, with its idempotency key; each attempt adds a request ID of its own. */
  frame: AckedFrame;
  key: string;
  state: "queued" | "inflight" | "waiting" | "done";
  linkUrl: string | undefined;
  attempts: number;
  retries: number;
  requestIds: string[];
  ackTimer: ReturnType<typeof setTimeout> | undefined;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  resolve: (ack: SendAck) => void;
  reject: (error: unknown) => void;
}

/** Close codes after which retrying cannot help: the client itself broke a rule. */
const TERMINAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010]);

const SEND_BACKOFF: BackoffOptions = { initialDelayMs: 100, maxDelayMs: 5_000, factor: 2 };

/**
 * How often `typing` repeats a start while the user types: well inside the
 * 5 s a typer stays shown, and above the gateway's 1 s per channel limit.
 */
const TYPING_REPEAT_MS = 3_000;

const encoder = new TextEncoder();

/** The error a request's unexpected reply stands for. */
function replyError(reply: ServerFrame): ChatError {
  if (reply.type === "error") return new ChatError(reply.code, reply.message, { retryable: reply.retryable });
  return new ChatError("protocol", `unexpected ${reply.type} reply`, { retryable: false });
}

/**
 * A chatmesh client: one WebSocket per gateway node it needs (a channel
 * lives on the node that owns it), reconnecting with backoff, resubscribing
 * with the last sequence number seen, and retrying sends with the same
 * idempotency key until they are acknowledged.
 */
export class ChatClient extends Emitter<ClientEvents> {
  private readonly urls: string[];
  private readonly known = new Set<string>();
  private primary = 0;
  private readonly links = new Map<string, Link>();
  private readonly subs = new Map<string, Subscription>();
  private readonly queues = new Map<string, PendingSend[]>();
  /** When `typing` last sent a start, per channel, until a stop. */
  private readonly typingSince = new Map<string, number>();
  private readonly tokens: TokenManager;
  private readonly api: HttpApi;
  private readonly backoff: BackoffOptions;
  private readonly host: LinkHost;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly opts: ClientOptions;
  private current: ConnectionState = "disconnected";
  private started = false;
  private requestCounter = 0;
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private removeGlobalListeners: (() => void) | undefined;
  private terminalError: Error | undefined;
  private lastWakeAt = Number.NEGATIVE_INFINITY;
  /** Connections refused for their token, in a row. */
  private authFailures = 0;

  constructor(options: ClientOptions) {
    super();
    this.opts = options;
    const urls = (Array.isArray(options.url) ? options.url : [options.url]).map(wsBase);
    if (urls.length === 0) throw new Error("ChatClient: give at least one gateway url");
    this.urls = [...new Set(urls)];
    this.now = options.now ?? (() => Date.now());
    this.random = options.random ?? Math.random;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    const webSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!webSocket) {
      throw new Error("ChatClient: no WebSocket on this platform; pass one as `WebSocket` (in Node 20: `import { WebSocket } from \"ws\"`)");
    }
    const doFetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (!doFetch) throw new Error("ChatClient: no fetch on this platform; pass one as `fetch`");
    this.tokens = new TokenManager({
      token: options.token,
      getToken: options.getToken,
      refreshMarginMs: options.tokenRefreshMarginMs ?? 30_000,
      now: this.now,
      onRefreshed: (token) => this.emit("token", token),
      onError: (err) => this.emit("error", err instanceof Error ? err : new Error(String(err))),
    });
    if (options.token === undefined && options.getToken === undefined) {
      throw new Error("ChatClient: pass `token` or `getToken`");
    }
    this.api = new HttpApi({
      fetch: doFetch,
      bases: () => this.httpBases(),
      tokens: this.tokens,
      timeoutMs: options.httpTimeoutMs ?? 10_000,
      retries: options.httpRetries ?? 2,
    });
    const self = this;
    this.host = {
      webSocket,
      hooks: options.hooks,
      pingIntervalMs: options.pingIntervalMs ?? 10_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      sleepThresholdMs: options.sleepThresholdMs ?? 5_000,
      sessionTtlMs: options.sessionTtlMs ?? 30_000,
      now: () => self.now(),
      nextRequestId: () => self.nextRequestId(),
      tokenFor: (link) => self.tokenFor(link),
      onLinkState: () => self.updateState(),
      onLinkOpen: (link) => self.onLinkOpen(link),
      onLinkFrame: (link, frame) => self.onFrame(link, frame),
      onLinkClosed: (link, info) => self.onLinkClosed(link, info),
      onWake: (link, sleptMs) => self.onWake(link, sleptMs),
    };
  }

  // -------------------------------------------------------------------------
  // Public API

  /** The connection state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** The current token. */
  get token(): string | undefined {
    return this.tokens.token;
  }

  /** The user the token names (`sub`). */
  get userId(): string | undefined {
    return this.tokens.subject;
  }

  /** The gateway URL new connections go to first. */
  get primaryUrl(): string {
    return this.urls[this.primary] ?? this.urls[0] ?? "";
  }

  /** The open (or opening) connections, by gateway URL. */
  get connections(): { url: string; state: string; channels: string[] }[] {
    return [...this.links.values()].map((l) => ({
      url: l.url,
      state: l.state,
      channels: [...this.subs.values()].filter((s) => s.linkUrl === l.url).map((s) => s.channel),
    }));
  }

  /** The HTTP API (history, presence, media, routes, channels) with this client's token. */
  get http(): HttpApi {
    return this.api;
  }

  /**
   * Starts connecting; resolves once connected. It keeps trying through
   * transient failures, and rejects only on one retrying cannot fix, or
   * when the client is closed.
   */
  connect(): Promise<void> {
    if (this.current === "closed") return Promise.reject(new ChatError("closed", "the client is closed"));
    const ready =
      this.current === "connected" ? Promise.resolve() : new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.started) {
      this.started = true;
      this.terminalError = undefined;
      this.authFailures = 0;
      this.tokens.start();
      this.listenToPlatform();
      this.ensureLink(this.primaryUrl);
      for (const sub of this.subs.values()) this.assign(sub, sub.linkUrl ?? this.primaryUrl);
      this.updateState();
    }
    return ready;
  }

  /** Closes every connection for good; pending sends fail with `closed`. */
  close(): void {
    if (this.current === "closed") return;
    this.started = false;
    this.tokens.stop();
    this.removeGlobalListeners?.();
    for (const link of this.links.values()) link.stop();
    this.links.clear();
    const err = new ChatError("closed", "the client was closed", { retryable: false });
    this.failAllSends(err);
    for (const sub of this.subs.values()) {
      if (sub.retryTimer !== undefined) clearTimeout(sub.retryTimer);
      sub.close(err);
    }
    this.setState("closed");
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /**
   * Subscribes to `channel` (or returns its subscription). It stays
   * subscribed across reconnects until `unsubscribe()`.
   */
  subscribe(channel: string, options: SubscribeOptions = {}): Subscription {
    if (this.current === "closed") throw new ChatError("closed", "the client is closed");
    const existing = this.subs.get(channel);
    if (existing) return existing;
    const sub = new Subscription(
      channel,
      {
        unsubscribe: (s) => this.unsubscribe(s),
        online: (c) => this.online(c),
        history: (c, q) => this.history(c, q),
        range: (c, from, to, after) => this.api.range(c, from, to, after === undefined ? {} : { after }),
      },
      options.lastSeq,
    );
    this.subs.set(channel, sub);
    sub.setState("subscribing");
    if (this.started) this.assign(sub, this.primaryUrl);
    return sub;
  }

  /** The subscription of `channel`, if any. */
  subscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  /** Every subscription. */
  get subscriptions(): Subscription[] {
    return [...this.subs.values()];
  }

  /**
   * Sends a message; resolves with the ack once it is stored. Sends that
   * fail with a retryable error, lose their connection or their ack are
   * sent again with the same idempotency key, so the message is stored
   * once; other errors reject at once.
   */
  send(channel: string, body: string, options: SendOptions = {}): Promise<SendAck> {
    const key = options.idempotencyKey ?? randomKey();
    const frame: SendFrame = { type: "send", channel_id: channel, body, idempotency_key: key };
    const attachments = options.attachments ?? [];
    if (attachments.length > 0) frame.attachments = attachments;
    if (options.traceparent !== undefined) frame.traceparent = options.traceparent;
    if (options.replyTo !== undefined) frame.reply_to = options.replyTo;
    return this.enqueue(frame, key);
  }

  /**
   * Replaces the text of message `seq`, one of the user's own; resolves
   * with the ack of the edit event. The edit clears the message's
   * reactions. Retried like a send; `forbidden` for someone else's message,
   * `not_found` for a deleted one.
   */
  edit(channel: string, seq: number, body: string, options: ChangeOptions = {}): Promise<SendAck> {
    return this.change({ type: "edit", channel_id: channel, seq, body }, options);
  }

  /**
   * Deletes message `seq` (the user's own, or any as an owner of the
   * channel): it stays as a tombstone. Resolves with the ack of the delete
   * event; deleting a deleted message succeeds and changes nothing.
   */
  delete(channel: string, seq: number, options: ChangeOptions = {}): Promise<SendAck> {
    return this.change({ type: "delete", channel_id: channel, seq }, options);
  }

  /** Adds the user's `emoji` reaction to message `seq`; resolves with the ack of the reaction event. */
  react(channel: string, seq: number, emoji: string, options: ChangeOptions = {}): Promise<SendAck> {
    return this.change({ type: "react", channel_id: channel, seq, emoji }, options);
  }

  /** Takes the user's `emoji` reaction on message `seq` back; resolves with the ack of the event. */
  unreact(channel: string, seq: number, emoji: string, options: ChangeOptions = {}): Promise<SendAck> {
    return this.change({ type: "react", channel_id: channel, seq, emoji, remove: true }, options);
  }

  private change(frame: EditFrame | DeleteFrame | ReactFrame, options: ChangeOptions): Promise<SendAck> {
    if (!Number.isSafeInteger(frame.seq) || frame.seq < 1) {
      return Promise.reject(new ChatError("invalid_frame", `seq must be a message's sequence number (from 1), not ${frame.seq}`, { retryable: false }));
    }
    const key = options.idempotencyKey ?? randomKey();
    frame.idempotency_key = key;
    return this.enqueue(frame, key);
  }

  /**
   * Queues `frame` behind the channel's earlier sends and changes; it is
   * sent, and sent again with the same key, until it is answered.
   */
  private enqueue(frame: AckedFrame, key: string): Promise<SendAck> {
    if (this.current === "closed") return Promise.reject(new ChatError("closed", "the client is closed"));
    const size = encoder.encode(JSON.stringify({ ...frame, request_id: "x".repeat(12) })).length;
    const max = this.opts.maxFrameBytes ?? 16_384;
    if (size > max) {
      return Promise.reject(new ChatError("frame_too_large", `the ${frame.type} frame is ${size} bytes; the limit is ${max}`, { retryable: false }));
    }
    const channel = frame.channel_id;
    return new Promise<SendAck>((resolve, reject) => {
      const ps: PendingSend = {
        channel,
        frame,
        key,
        state: "queued",
        linkUrl: undefined,
        attempts: 0,
        retries: 0,
        requestIds: [],
        ackTimer: undefined,
        retryTimer: undefined,
        deadlineTimer: undefined,
        resolve,
        reject,
      };
      const timeout = this.opts.sendTimeoutMs ?? 60_000;
      if (timeout > 0) {
        ps.deadlineTimer = setTimeout(() => {
          this.settle(ps, new ChatError("timeout", `no ack within ${timeout}ms (idempotency key ${key}); sending again with this key is safe`));
        }, timeout);
      }
      let queue = this.queues.get(channel);
      if (!queue) {
        queue = [];
        this.queues.set(channel, queue);
      }
      queue.push(ps);
      this.pump(channel);
    });
  }

  /**
   * The user has read `channel` up to `seq`: moves their read position
   * forward, fire and forget (a refusal arrives as an `error`). Use
   * `markRead` to wait until it is stored.
   */
  ack(channel: string, seq: number): void {
    const sub = this.subs.get(channel);
    const link = (sub?.linkUrl && this.links.get(sub.linkUrl)) || this.links.get(this.primaryUrl);
    link?.send({ type: "ack", channel_id: channel, seq });
  }

  /**
   * Moves the user's read position in `channel` forward to `seq` (never
   * back) and resolves with the position held once stored; unread counts
   * and other members' receipts follow it. Over the channel's connection
   * when open, over HTTP otherwise.
   */
  markRead(channel: string, seq: number): Promise<number> {
    const link = this.openLinkFor(channel);
    if (!link) return this.api.markRead(channel, seq);
    return new Promise((resolve, reject) => {
      link.request({ type: "ack", channel_id: channel, seq }, (reply) => {
        if (reply.type === "read") resolve(reply.seq);
        else reject(replyError(reply));
      });
    });
  }

  /**
   * The user's unread posts and unread mentions in `channels` (every
   * channel of theirs when omitted), and the sums: over the connection when
   * open, over HTTP otherwise.
   */
  unread(channels?: string[]): Promise<UnreadCounts> {
    const link = this.links.get(this.primaryUrl);
    if (!link?.isOpen) return this.api.unread(channels);
    const frame: { type: "unread"; channel_ids?: string[] } = { type: "unread" };
    if (channels && channels.length > 0) frame.channel_ids = channels;
    return new Promise((resolve, reject) => {
      link.request(frame, (reply) => {
        if (reply.type === "unread") resolve({ channels: reply.channels, total: reply.total, mentions: reply.mentions });
        else reject(replyError(reply));
      });
    });
  }

  /** The open connection serving `channel`, or the primary one if open. */
  private openLinkFor(channel: string): Link | undefined {
    const sub = this.subs.get(channel);
    const link = (sub?.linkUrl && this.links.get(sub.linkUrl)) || this.links.get(this.primaryUrl);
    return link?.isOpen ? link : undefined;
  }

  /**
   * Tells the channel's members the user is typing, or with `stop` that
   * they stopped (call it when they send or clear the draft). Call it on
   * every keystroke: a start goes out at most every 3 s per channel, which
   * keeps the user shown (the gateway drops a typer 5 s after the last).
   * Fire and forget, on the channel's connection; nothing is sent for a
   * channel that is not subscribed yet. A refusal arrives as an `error`.
   */
  typing(channel: string, stop = false): void {
    const sub = this.subs.get(channel);
    const link = sub?.state === "subscribed" && sub.linkUrl ? this.links.get(sub.linkUrl) : undefined;
    if (!link?.isOpen) return;
    const now = this.now();
    if (stop) {
      if (!this.typingSince.delete(channel)) return;
      link.send({ type: "typing", channel_id: channel, stop: true });
      return;
    }
    const since = this.typingSince.get(channel);
    if (since !== undefined && now - since < TYPING_REPEAT_MS) return;
    this.typingSince.set(channel, now);
    link.send({ type: "typing", channel_id: channel });
  }

  /** A page of `channel`'s history, oldest first (the newest page without a cursor). */
  history(channel: string, query?: HistoryQuery): Promise<HistoryPage> {
    return this.api.history(channel, query);
  }

  /** A page of the replies in the thread of message `seq`, oldest first, paged as history. */
  thread(channel: string, seq: number, query?: HistoryQuery): Promise<HistoryPage> {
    return this.api.thread(channel, seq, query);
  }

  /** Pages through `channel`'s history (see `HttpApi.pages`). */
  historyPages(channel: string, options?: { direction?: "backward" | "forward"; from?: string; limit?: number }): AsyncGenerator<HistoryPage> {
    return this.api.pages(channel, options);
  }

  /** The stored messages of `channel` with `fromSeq <= seq <= toSeq`, in order. */
  range(channel: string, fromSeq: number, toSeq: number): Promise<Message[]> {
    const sub = this.subs.get(channel);
    const after = sub?.lastSeq !== undefined && sub.lastSeq === fromSeq - 1 ? sub.lastMessageId : undefined;
    return this.api.range(channel, fromSeq, toSeq, after === undefined ? {} : { after });
  }

  /** The members of `channel` online in it. */
  online(channel: string): Promise<string[]> {
    return this.api.online(channel);
  }

  /** Online status and last-seen time of users. */
  presence(userIds: string[]): Promise<UserPresence[]> {
    return this.api.presence(userIds);
  }

  /** Which node owns `channel`. */
  route(channel: string): Promise<RouteInfo> {
    return this.api.route(channel);
  }

  /** Uploads an attachment (create, PUT to the signed URL, complete); its `media_id` goes in `attachments`. */
  uploadMedia(channel: string, body: UploadBody, file: { filename: string; contentType: string }): Promise<Media> {
    return this.api.uploadMedia(channel, body, file);
  }

  getMedia(mediaId: string): Promise<Media> {
    return this.api.getMedia(mediaId);
  }

  mediaDownloadUrl(mediaId: string): Promise<DownloadUrl> {
    return this.api.downloadUrl(mediaId);
  }

  /** The user's channels, each with the user's `role`. */
  channels(): Promise<Channel[]> {
    return this.api.channels();
  }

  /** A page of the public channels, by ID; `next_after` is the next page's `after`. */
  publicChannels(query?: PublicChannelsQuery): Promise<PublicChannelsPage> {
    return this.api.publicChannels(query);
  }

  /** Pages through the public channels (see `HttpApi.publicChannelPages`). */
  publicChannelPages(query?: PublicChannelsQuery): AsyncGenerator<PublicChannelsPage> {
    return this.api.publicChannelPages(query);
  }

  /** A public channel, or a private one the user is a member of. */
  channel(channelId: string): Promise<Channel> {
    return this.api.channel(channelId);
  }

  /** Creates a channel (private unless `visibility: "public"`) with the user as its owner. */
  createChannel(options: CreateChannelOptions): Promise<Channel> {
    return this.api.createChannel(options);
  }

  /** Joins a public channel; false if already a member. */
  joinChannel(channelId: string): Promise<boolean> {
    return this.api.joinChannel(channelId);
  }

  /**
   * Leaves a channel; false if not a member. It does not unsubscribe: call
   * `unsubscribe()` on the channel's subscription as well.
   */
  leaveChannel(channelId: string): Promise<boolean> {
    return this.api.leaveChannel(channelId);
  }

  /** The members of a channel the user is a member of, with their roles. */
  members(channelId: string): Promise<ChannelMember[]> {
    return this.api.members(channelId);
  }

  /** Adds a member (owners only); false if already a member. */
  addMember(channelId: string, userId: string): Promise<boolean> {
    return this.api.addMember(channelId, userId);
  }

  /** Removes a member (owners only); false if not a member. */
  removeMember(channelId: string, userId: string): Promise<boolean> {
    return this.api.removeMember(channelId, userId);
  }

  /** The OpenAPI 3.1 document of the gateway's HTTP API. */
  openApi(): Promise<OpenApiDocument> {
    return this.api.openApi();
  }

  /** Asks `getToken` for a new token now (it is used by the next connection and HTTP call). */
  refreshToken(): Promise<string> {
    return this.tokens.refresh("expiring");
  }

  // -------------------------------------------------------------------------
  // State

  private setState(next: ConnectionState): void {
    const previous = this.current;
    if (previous === next) return;
    this.current = next;
    if (next === "connected") for (const w of this.waiters.splice(0)) w.resolve();
    this.emit("state", next, previous);
  }

  private updateState(): void {
    if (this.current === "closed") return;
    if (!this.started) {
      this.setState("disconnected");
      return;
    }
    const needed = [...this.links.values()].filter((l) => l.state !== "stopped");
    const connected = needed.length > 0 && needed.every((l) => l.isOpen);
    this.setState(connected ? "connected" : "connecting");
  }

  /** A failure retrying cannot fix: stop, and say why. */
  private fail(error: Error): void {
    this.terminalError = error;
    this.started = false;
    this.tokens.stop();
    this.removeGlobalListeners?.();
    for (const link of this.links.values()) link.stop();
    this.links.clear();
    this.failAllSends(error);
    for (const sub of this.subs.values()) {
      if (sub.retryTimer !== undefined) clearTimeout(sub.retryTimer);
      sub.linkUrl = undefined;
      if (!sub.removed) sub.setState("subscribing");
    }
    this.setState("disconnected");
    for (const w of this.waiters.splice(0)) w.reject(error);
    this.emit("error", error);
  }

  /** Why the client stopped, after a failure retrying cannot fix. */
  get lastError(): Error | undefined {
    return this.terminalError;
  }

  private nextRequestId(): string {
    this.requestCounter += 1;
    return this.requestCounter.toString(36);
  }

  private httpBases(): string[] {
    const order = [this.primaryUrl, ...this.urls, ...this.known];
    return [...new Set(order)].map(httpBase);
  }

  private listenToPlatform(): void {
    const g = globalThis as {
      addEventListener?: (type: string, fn: () => void) => void;
      removeEventListener?: (type: string, fn: () => void) => void;
      document?: { visibilityState?: string; addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
    };
    if (typeof g.addEventListener !== "function" || typeof g.document === "undefined") return;
    const online = () => {
      for (const link of this.links.values()) link.retryNow();
    };
    const visible = () => {
      if (g.document?.visibilityState === "visible") for (const link of this.links.values()) link.check();
    };
    g.addEventListener("online", online);
    g.document.addEventListener?.("visibilitychange", visible);
    this.removeGlobalListeners = () => {
      g.removeEventListener?.("online", online);
      g.document?.removeEventListener?.("visibilitychange", visible);
      this.removeGlobalListeners = undefined;
    };
  }

  // -------------------------------------------------------------------------
  // Links

  private ensureLink(url: string): Link {
    let link = this.links.get(url);
    if (!link) {
      link = new Link(url, this.host);
      this.links.set(url, link);
      if (this.started) void link.open();
      this.updateState();
    } else if (link.state === "idle" && !link.recovering && this.started) {
      void link.open();
    }
    return link;
  }

  /** Closes `link` when nothing needs it any more. */
  private maybeRetire(link: Link | undefined): void {
    if (!link || link.url === this.primaryUrl) return;
    const hasChannels = [...this.subs.values()].some((s) => s.linkUrl === link.url);
    const hasSends = [...this.queues.values()].some((q) => q.some((p) => p.state === "inflight" && p.linkUrl === link.url));
    if (hasChannels || hasSends) return;
    link.stop(1000, "no channels left on this node");
    this.links.delete(link.url);
    this.updateState();
  }

  /** The token for a new connection of `link`: a fresh one from `getToken` for every reconnect. */
  private async tokenFor(link: Link): Promise<string> {
    try {
      if ((link.everOpened || link.attempt > 0) && this.tokens.canRefresh) return await this.tokens.refresh("reconnect");
      return await this.tokens.get();
    } catch (err) {
      this.emit("error", err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  /** Every connection notices a sleep; the application hears of it once. */
  private onWake(link: Link, sleptMs: number): void {
    const now = this.now();
    if (now - this.lastWakeAt < this.host.sleepThresholdMs) return;
    this.lastWakeAt = now;
    this.emit("wake", { url: link.url, sleptMs });
  }

  private onLinkOpen(link: Link): void {
    link.draining = false;
    this.authFailures = 0;
    this.emit("open", { url: link.url });
    for (const sub of this.subs.values()) {
      if (sub.linkUrl === link.url && !sub.removed) this.sendSubscribe(sub, link);
    }
    this.pumpAll();
  }

  private onLinkClosed(link: Link, info: LinkClosed): void {
    // Sends whose ack may be lost go again, with the same key, on the next connection.
    for (const queue of this.queues.values()) {
      for (const ps of queue) {
        if (ps.state === "inflight" && ps.linkUrl === link.url) {
          clearTimeout(ps.ackTimer);
          ps.state = "queued";
        }
      }
    }
    for (const sub of this.subs.values()) {
      if (sub.linkUrl === link.url && !sub.removed) {
        sub.requestId = undefined;
        sub.setState("subscribing");
      }
    }
    if (!this.started || this.links.get(link.url) !== link) return;
    if (info.opened && TERMINAL_CLOSE_CODES.has(info.code)) {
      this.fail(new ChatError("protocol", `the gateway closed the connection with ${info.code} (${info.reason || "no reason"})`, { retryable: false }));
      return;
    }
    this.pumpAll();
    void this.recover(link, info);
  }

  /** After a lost or refused connection: check the token, move channels if the node is gone, retry. */
  private async recover(link: Link, info: LinkClosed): Promise<void> {
    const draining = link.draining || info.code === 1001;
    let unreachable = draining;
    if (!info.opened) {
      const verdict = await this.checkToken(link);
      if (verdict.terminal) {
        this.fail(verdict.terminal);
        return;
      }
      if (!this.started || this.links.get(link.url) !== link) return;
      unreachable = unreachable || !verdict.reachable;
    }
    if (unreachable) {
      // Unreachable or leaving: new connections go to another gateway, and
      // channels to whichever node the ring now gives them.
      if (link.url === this.primaryUrl) this.rotatePrimary(link);
      const moving = [...this.subs.values()].filter((s) => s.linkUrl === link.url && !s.removed);
      if (moving.length > 0) await this.relocate(moving, link.url, draining ? "node shutting down" : "node unreachable");
      if (!this.started) return;
      this.maybeRetire(link);
      if (this.links.get(link.url) !== link) return;
    }
    const attempt = link.attempt;
    link.attempt += 1;
    // A node that said it is leaving gets a quick retry, jittered so its
    // clients do not all come back at once; the rest back off.
    const delay = draining && attempt === 0 ? Math.floor(this.random() * this.backoff.initialDelayMs) : backoffDelay(attempt, this.backoff, this.random);
    const reason = info.reason || (info.opened ? `closed with ${info.code}` : "could not connect");
    this.emit("reconnecting", { url: link.url, attempt: link.attempt, delayMs: delay, reason });
    link.retryIn(delay);
  }

  /**
   * After a refused connection: a browser cannot see why an upgrade failed,
   * so ask the gateway over HTTP whether the token is the problem. Returns
   * an error when retrying cannot help.
   */
  private async checkToken(link: Link): Promise<{ terminal?: Error; reachable: boolean }> {
    const token = this.tokens.token;
    if (token === undefined) return { reachable: true };
    if (this.tokens.isExpired()) {
      if (!this.tokens.canRefresh) {
        return { terminal: new ChatError("token_expired", "the token has expired and there is no getToken to renew it", { retryable: false }), reachable: true };
      }
      return { reachable: true };
    }
    let response: Response;
    try {
      const user = this.tokens.subject ?? "_";
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 5_000);
      try {
        response = await (this.opts.fetch ?? globalThis.fetch.bind(globalThis))(
          `${httpBase(link.url)}/v1/presence?user_ids=${encodeURIComponent(user)}`,
          { headers: { authorization: `Bearer ${token}` }, signal: controller.signal },
        );
      } finally {
        clearTimeout(timer);
      }
    } catch {
      return { reachable: false }; // not a token problem: the node is down
    }
    if (response.status !== 401) {
      this.authFailures = 0;
      // A draining node answers 503 shutting_down: treat it as gone.
      return { reachable: response.status !== 503 };
    }
    const error = await HttpApi.errorOf(response, "token check");
    this.authFailures += 1;
    // Without getToken a refused token stays refused; with it, a fresh token
    // that is refused too means retrying will not help.
    if (!this.tokens.canRefresh || this.authFailures >= 2) {
      return { terminal: new ChatError(error.code, error.message, { retryable: false, status: 401 }), reachable: true };
    }
    return { reachable: true };
  }

  /**
   * Makes the next configured URL the primary one, after `from` could not be
   * reached or is draining. The new connection inherits `from`'s failures,
   * so a client whose every gateway is down still backs off.
   */
  private rotatePrimary(from: Link): void {
    const i = this.urls.indexOf(from.url);
    if (i < 0 || this.urls.length < 2) return;
    this.primary = (i + 1) % this.urls.length;
    const url = this.primaryUrl;
    let link = this.links.get(url);
    if (!link) {
      link = new Link(url, this.host);
      link.attempt = from.attempt;
      this.links.set(url, link);
    }
    if (link.state === "idle" && this.started) {
      const delay = backoffDelay(link.attempt, this.backoff, this.random);
      link.attempt += 1;
      this.emit("reconnecting", { url, attempt: link.attempt, delayMs: delay, reason: `${from.url} unavailable` });
      link.retryIn(delay);
    }
    this.updateState();
  }

  /** Looks up the owners of `subs`' channels (on any gateway but `avoid`) and moves them there. */
  private async relocate(subs: Subscription[], avoid: string, reason: string): Promise<void> {
    await Promise.all(
      subs.map(async (sub) => {
        const before = sub.linkUrl;
        const owner = await this.lookupOwner(sub.channel, avoid);
        if (!this.started || sub.removed || sub.linkUrl !== before) return;
        const target = owner ?? (this.primaryUrl !== avoid ? this.primaryUrl : undefined);
        if (target === undefined || target === before) return;
        this.emit("moved", { channels: [sub.channel], from: before ?? "", to: target, reason });
        this.assign(sub, target);
      }),
    );
  }

  /** `GET /v1/route/<channel>` on the gateways other than `avoid`; the owner's WebSocket base URL. */
  private async lookupOwner(channel: string, avoid: string): Promise<string | undefined> {
    const candidates = [...new Set([this.primaryUrl, ...this.urls, ...this.known])].filter((u) => u !== avoid);
    for (const base of candidates) {
      try {
        const route = await this.api.route(channel, httpBase(base));
        if (route.url) {
          const owner = wsBase(route.url);
          this.known.add(owner);
          return owner;
        }
        return undefined;
      } catch {
        // That gateway is down too, or has no nodes yet: ask the next.
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------
  // Subscriptions

  /** Puts `sub` on the connection to `url` and subscribes it there. */
  private assign(sub: Subscription, url: string): void {
    if (sub.retryTimer !== undefined) clearTimeout(sub.retryTimer);
    sub.retryTimer = undefined;
    const previous = sub.linkUrl;
    if (previous !== undefined && previous !== url) {
      const old = this.links.get(previous);
      if (old?.isOpen && sub.state === "subscribed") {
        old.request({ type: "unsubscribe", channel_id: sub.channel }, () => {});
      }
      if (old && sub.requestId !== undefined) old.forget(sub.requestId);
      sub.requestId = undefined;
      sub.setState("subscribing");
    }
    sub.linkUrl = url;
    const link = this.ensureLink(url);
    if (link.isOpen && sub.requestId === undefined) this.sendSubscribe(sub, link);
    if (previous !== undefined && previous !== url) this.maybeRetire(this.links.get(previous));
  }

  private sendSubscribe(sub: Subscription, link: Link): void {
    if (sub.removed || sub.linkUrl !== link.url) return;
    sub.setState("subscribing");
    const frame: { type: "subscribe"; channel_id: string; last_seq?: number } = { type: "subscribe", channel_id: sub.channel };
    if (sub.lastSeq !== undefined) frame.last_seq = sub.lastSeq;
    const id = this.nextRequestId();
    sub.requestId = id;
    link.request(frame, (reply) => this.onSubscribeReply(sub, link, id, reply), id);
  }

  private onSubscribeReply(sub: Subscription, link: Link, id: string, reply: ServerFrame): void {
    if (sub.requestId !== id || sub.linkUrl !== link.url || sub.removed) return;
    sub.requestId = undefined;
    switch (reply.type) {
      case "subscribed":
        sub.attempt = 0;
        sub.redirects = 0;
        if (sub.lastSeq === undefined) sub.lastSeq = reply.seq;
        sub.setState("subscribed");
        return;
      case "redirect": {
        const target = wsBase(reply.url);
        this.known.add(target);
        sub.redirects += 1;
        this.emit("moved", { channels: [sub.channel], from: link.url, to: target, reason: "redirect" });
        if (sub.redirects > 3) {
          // Nodes that disagree about the ring for a moment: back off.
          const delay = backoffDelay(sub.redirects - 3, this.backoff, this.random);
          sub.linkUrl = target;
          sub.retryTimer = setTimeout(() => {
            sub.retryTimer = undefined;
            if (!sub.removed && sub.linkUrl === target) this.assign(sub, target);
          }, delay);
          this.ensureLink(target);
          this.maybeRetire(link);
          return;
        }
        this.assign(sub, target);
        return;
      }
      case "error":
        if (reply.retryable) {
          const delay = backoffDelay(sub.attempt, SEND_BACKOFF, this.random) + 50;
          sub.attempt += 1;
          sub.retryTimer = setTimeout(() => {
            sub.retryTimer = undefined;
            const current = sub.linkUrl ? this.links.get(sub.linkUrl) : undefined;
            if (!sub.removed && current?.isOpen && sub.requestId === undefined) this.sendSubscribe(sub, current);
          }, delay);
          return;
        }
        this.subs.delete(sub.channel);
        sub.linkUrl = undefined;
        {
          const error = new ChatError(reply.code, reply.message, { retryable: false });
          sub.fail(error);
          this.emit("error", error);
        }
        this.maybeRetire(link);
        return;
      default:
        return;
    }
  }

  private async unsubscribe(sub: Subscription): Promise<void> {
    if (sub.removed) return;
    sub.removed = true;
    if (sub.retryTimer !== undefined) clearTimeout(sub.retryTimer);
    this.subs.delete(sub.channel);
    // The gateway tells the others the user stopped typing there.
    this.typingSince.delete(sub.channel);
    const link = sub.linkUrl ? this.links.get(sub.linkUrl) : undefined;
    if (link && sub.requestId !== undefined) link.forget(sub.requestId);
    sub.linkUrl = undefined;
    sub.requestId = undefined;
    sub.setState("unsubscribed");
    if (link?.isOpen) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5_000);
        link.request({ type: "unsubscribe", channel_id: sub.channel }, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.maybeRetire(link);
  }

  // -------------------------------------------------------------------------
  // Frames

  private onFrame(link: Link, frame: ServerFrame): void {
    switch (frame.type) {
      case "message":
        this.onMessage(link, frame);
        return;
      case "presence":
        this.onPresence(link, frame);
        return;
      case "typing":
        this.onTyping(link, frame);
        return;
      case "read":
        this.onRead(link, frame);
        return;
      case "reload_required":
        this.onReload(link, frame);
        return;
      case "reconnect":
        this.onReconnect(link, frame);
        return;
      case "error":
        this.onStrayError(frame);
        return;
      default:
        // Replies whose request was given up (a timed-out send, say).
        return;
    }
  }

  /** The subscription `channel` has on `link`, if it receives there. */
  private receiving(link: Link, channel: string): Subscription | undefined {
    const sub = this.subs.get(channel);
    if (!sub || sub.removed || sub.linkUrl !== link.url) return undefined;
    return sub;
  }

  private onMessage(link: Link, frame: MessageFrame): void {
    const sub = this.receiving(link, frame.channel_id);
    if (!sub) return;
    const { type: _type, ...message } = frame;
    if (sub.held) {
      sub.held.push({ message });
      return;
    }
    this.deliver(sub, message);
  }

  private deliver(sub: Subscription, message: Message): void {
    // In order and at most once: a number at or below the last one was seen.
    if (sub.lastSeq !== undefined && message.seq <= sub.lastSeq) return;
    sub.lastSeq = message.seq;
    sub.lastMessageId = message.message_id;
    sub.deliver(message);
    this.emit("message", message, sub);
  }

  private onPresence(link: Link, frame: PresenceFrame): void {
    const sub = this.receiving(link, frame.channel_id);
    if (!sub) return;
    const { type: _type, ...event } = frame;
    sub.deliverPresence(event);
    this.emit("presence", event, sub);
  }

  private onTyping(link: Link, frame: TypingUsersFrame): void {
    const sub = this.receiving(link, frame.channel_id);
    if (!sub) return;
    const { type: _type, ...event } = frame;
    sub.deliverTyping(event);
    this.emit("typing", event, sub);
  }

  private onRead(link: Link, frame: ReadPositionFrame): void {
    const sub = this.receiving(link, frame.channel_id);
    if (!sub) return;
    const event = { channel_id: frame.channel_id, user_id: frame.user_id, seq: frame.seq };
    sub.deliverRead(event);
    this.emit("read", event, sub);
  }

  private onReload(link: Link, frame: ReloadRequiredFrame): void {
    const sub = this.receiving(link, frame.channel_id);
    if (!sub) return;
    if (this.opts.reload === "fill") {
      if (sub.held) sub.held.push({ reload: frame });
      else void this.fillRanges(sub, frame);
      return;
    }
    const event = this.reloadEvent(sub, frame);
    if (sub.lastSeq === undefined || sub.lastSeq < frame.to_seq) sub.lastSeq = frame.to_seq;
    sub.deliverReload(event);
    this.emit("reload_required", event, sub);
  }

  private reloadEvent(sub: Subscription, frame: ReloadRequiredFrame): ReloadRequiredEvent {
    const from = frame.from_seq;
    const to = frame.to_seq;
    const after = sub.lastSeq !== undefined && sub.lastSeq === from - 1 ? sub.lastMessageId : undefined;
    const fill = () => this.api.range(sub.channel, from, to, after === undefined ? {} : { after });
    return { channel_id: sub.channel, from_seq: from, to_seq: to, fill };
  }

  /**
   * `reload: "fill"`: loads the range from history and delivers it, holding
   * live messages (and further reloads) until it is done, then delivers
   * those in order.
   */
  private async fillRanges(sub: Subscription, first: ReloadRequiredFrame): Promise<void> {
    const held: ({ message: Message } | { reload: ReloadRequiredFrame })[] = [];
    sub.held = held;
    let next: ReloadRequiredFrame | undefined = first;
    while (next) {
      const frame: ReloadRequiredFrame = next;
      next = undefined;
      const event = this.reloadEvent(sub, frame);
      let delivered = 0;
      try {
        for (const m of await event.fill()) {
          const before = sub.lastSeq;
          if (m.seq <= frame.to_seq) this.deliver(sub, m);
          if (sub.lastSeq !== before) delivered += 1;
        }
        event.filled = delivered;
      } catch (err) {
        event.error = err;
      }
      if (sub.lastSeq === undefined || sub.lastSeq < frame.to_seq) sub.lastSeq = frame.to_seq;
      sub.deliverReload(event);
      this.emit("reload_required", event, sub);
      while (held.length > 0) {
        const item = held.shift();
        if (!item) break;
        if ("reload" in item) {
          next = item.reload;
          break;
        }
        this.deliver(sub, item.message);
      }
    }
    sub.held = undefined;
  }

  private onReconnect(link: Link, frame: ReconnectFrame): void {
    const subs = frame.channel_ids.map((c) => this.receiving(link, c)).filter((s): s is Subscription => s !== undefined);
    if (frame.url) {
      const target = wsBase(frame.url);
      this.known.add(target);
      if (subs.length > 0) this.emit("moved", { channels: subs.map((s) => s.channel), from: link.url, to: target, reason: frame.reason });
      for (const sub of subs) this.assign(sub, target);
      return;
    }
    // The node is shutting down: any node will do, and the owner is best.
    link.draining = true;
    if (link.url === this.primaryUrl) this.rotatePrimary(link);
    void this.relocate(subs, link.url, frame.reason).then(() => this.maybeRetire(link));
  }

  private onStrayError(frame: ErrorFrame): void {
    this.emit("error", new ChatError(frame.code, frame.message, { retryable: frame.retryable }));
  }

  // -------------------------------------------------------------------------
  // Sends

  private pumpAll(): void {
    for (const channel of this.queues.keys()) this.pump(channel);
  }

  private pump(channel: string): void {
    const queue = this.queues.get(channel);
    if (!queue || !this.started) return;
    const window = Math.max(1, this.opts.sendWindow ?? 1);
    let active = queue.filter((p) => p.state === "inflight" || p.state === "waiting").length;
    for (const ps of queue) {
      if (active >= window) break;
      if (ps.state !== "queued") continue;
      const link = this.linkForSend(channel);
      if (!link) return;
      this.transmit(ps, link);
      active += 1;
    }
  }

  /** Sends go on the channel's connection, or any open one: every node accepts them. */
  private linkForSend(channel: string): Link | undefined {
    const sub = this.subs.get(channel);
    const order = [sub?.linkUrl, this.primaryUrl, ...this.links.keys()];
    for (const url of order) {
      if (url === undefined) continue;
      const link = this.links.get(url);
      if (link?.isOpen && !link.draining) return link;
    }
    return undefined;
  }

  private transmit(ps: PendingSend, link: Link): void {
    ps.state = "inflight";
    ps.linkUrl = link.url;
    ps.attempts += 1;
    // A copy: the request ID is this attempt's.
    const frame: AckedFrame = { ...ps.frame };
    const id = this.nextRequestId();
    ps.requestIds.push(id);
    link.request(frame, (reply) => this.onSendReply(ps, reply), id);
    clearTimeout(ps.ackTimer);
    const ackTimeout = this.opts.sendAckTimeoutMs ?? 10_000;
    ps.ackTimer = setTimeout(() => {
      if (ps.state !== "inflight" || ps.requestIds[ps.requestIds.length - 1] !== id) return;
      // No answer: the outcome is unknown, so send again with the same key.
      // The first answer to either attempt settles it.
      ps.state = "queued";
      this.pump(ps.channel);
    }, ackTimeout);
  }

  private onSendReply(ps: PendingSend, reply: ServerFrame): void {
    if (ps.state === "done") return;
    if (reply.type === "ack") {
      const { type: _t, request_id: _r, ...ack } = reply;
      this.settle(ps, undefined, ack);
      return;
    }
    if (reply.type !== "error") return;
    if (!reply.retryable) {
      this.settle(ps, new ChatError(reply.code, reply.message, { retryable: false }));
      return;
    }
    // rate_limited, in_progress, unavailable, timed_out...: again later, same key.
    clearTimeout(ps.ackTimer);
    ps.state = "waiting";
    const delay = backoffDelay(ps.retries, SEND_BACKOFF, this.random) + 20;
    ps.retries += 1;
    ps.retryTimer = setTimeout(() => {
      ps.retryTimer = undefined;
      if (ps.state !== "waiting") return;
      ps.state = "queued";
      this.pump(ps.channel);
    }, delay);
  }

  private settle(ps: PendingSend, error: unknown, ack?: SendAck): void {
    if (ps.state === "done") return;
    const wasActive = ps.state === "inflight" || ps.state === "waiting";
    ps.state = "done";
    clearTimeout(ps.ackTimer);
    clearTimeout(ps.retryTimer);
    clearTimeout(ps.deadlineTimer);
    const queue = this.queues.get(ps.channel);
    if (queue) {
      const i = queue.indexOf(ps);
      if (i >= 0) queue.splice(i, 1);
      if (queue.length === 0) this.queues.delete(ps.channel);
    }
    if (ack) ps.resolve(ack);
    else ps.reject(error);
    if (wasActive || ack) this.pump(ps.channel);
    const link = ps.linkUrl ? this.links.get(ps.linkUrl) : undefined;
    this.maybeRetire(link);
  }

  private failAllSends(error: unknown): void {
    for (const queue of [...this.queues.values()]) {
      for (const ps of [...queue]) this.settle(ps, error);
    }
  }
}
