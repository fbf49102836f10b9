import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
import { ChatError } from "./errors.js";
import type { ChannelUnread, MessageFrame } from "./generated/protocol.js";
import { randomKey } from "./keys.js";
import type { TokenManager } from "./token.js";

/** A stored or delivered message: the `message` frame without its `type`. */
export type Message = Omit<MessageFrame, "type">;

/**
 * The answer to a change over HTTP (`PATCH`/`DELETE` of a message, `PUT`/
 * `DELETE` of a reaction): the change as a channel event.
 */
export interface ChangeReceipt {
  /** The edit, delete or reaction event, with its own `message_id` and `seq`. */
  event: Message;
  /** An edit whose text moderation masked. */
  masked: boolean;
  /** A retry with a key already used: `event` is the original. */
  duplicate: boolean;
}

/** Options of the HTTP change helpers. */
export interface HttpChangeOptions {
  /** One key per logical change (sent as `Idempotency-Key`); generated when absent, reused on every retry. */
  idempotencyKey?: string;
}

/** A page of `GET /v1/channels/<id>/messages`, oldest first. */
/** A member's read position in a channel: a read receipt. */
export interface ReadPosition {
  user_id: string;
  seq: number;
  updated_at_ms: number;
}

/** A user's unread counts per channel and in total. */
export interface UnreadCounts {
  channels: ChannelUnread[];
  /** Unread posts in every channel listed. */
  total: number;
  /** Unread posts that mention the user. */
  mentions: number;
}

/** Which page of mentions to read. */
export interface MentionsQuery {
  /** Only this channel's mentions. */
  channel?: string;
  /** Messages before this message ID. */
  before?: string;
  limit?: number;
}

export interface HistoryPage {
  messages: Message[];
  /** Whether another page exists in the direction asked for. */
  has_more: boolean;
}

export interface HistoryQuery {
  /** Page backwards from this message ID (exclusive). */
  before?: string;
  /** Page forwards from this message ID (exclusive). */
  after?: string;
  /** Page size; the server caps it (100 by default). */
  limit?: number;
}

/** One user in `GET /v1/presence`. */
export interface UserPresence {
  user_id: string;
  online: boolean;
  /** The user's last heartbeat, `null` if never seen. */
  last_seen_ms: number | null;
}

/** `GET /v1/route/<channel>`: the node that owns a channel. */
export interface RouteInfo {
  channel_id: string;
  node: string;
  /** The node's public WebSocket base URL. */
  url: string | null;
}

/** Media metadata (docs/media.md). */
export interface Media {
  media_id: string;
  channel_id: string;
  uploader_id: string;
  filename: string;
  content_type: string;
  size: number;
  state: "pending" | "ready";
  created_at_ms: number;
}

/** The answer to creating an upload: where to PUT the bytes. */
export interface UploadTarget {
  media_id: string;
  upload_url: string;
  upload_method: "PUT";
  upload_headers: Record<string, string>;
  expires_at_ms: number;
}

export interface DownloadUrl {
  download_url: string;
  expires_at_ms: number;
}

/** Who may find and join a channel: anyone (`public`), or only those an owner adds (`private`). */
export type ChannelVisibility = "public" | "private";

/** A member's role: owners add and remove members. */
export type ChannelRole = "owner" | "member";

/** A channel as the gateway's channel API describes it. */
export interface Channel {
  channel_id: string;
  name: string;
  visibility: ChannelVisibility;
  /** The user who created it (not necessarily an owner any more). */
  created_by: string;
  created_at_ms: number;
  /** The caller's role in the channel, `null` when the caller is not a member. */
  role: ChannelRole | null;
}

/** One member of a channel, in `GET /v1/channels/<id>/members`. */
export interface ChannelMember {
  user_id: string;
  role: ChannelRole;
  joined_at_ms: number;
}

/** A page of `GET /v1/public-channels`, by channel ID. */
export interface PublicChannelsPage {
  channels: Channel[];
  /** The cursor of the next page (`after`), `null` after the last one. */
  next_after: string | null;
}

export interface PublicChannelsQuery {
  /** List the channels whose ID sorts after this one (exclusive). */
  after?: string;
  /** Page size, 1 to 100 (the server's default is 50). */
  limit?: number;
}

export interface CreateChannelOptions {
  /** The new channel's ID. */
  channelId: string;
  /** A display name; the server defaults it. */
  name?: string;
  /** `private` (the default) or `public`. */
  visibility?: ChannelVisibility;
}

/** `GET /v1/openapi.json`: the OpenAPI 3.1 document of the gateway's whole HTTP API. */
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description?: string };
  /** By path template (`/v1/channels/{channel}`), then by lower-case method. */
  paths: Record<string, Record<string, unknown>>;
  components?: Record<string, unknown>;
}

/** Bytes to upload. */
export type UploadBody = Blob | ArrayBuffer | ArrayBufferView;

/** `ws://host:port[/v1/ws][?...]` or `http(s)://...` as `http(s)://host:port[/prefix]`. */
export function httpBase(url: string): string {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  u.search = "";
  u.hash = "";
  u.pathname = u.pathname.replace(/\/v1\/ws\/?$/, "").replace(/\/+$/, "");
  return u.toString().replace(/\/+$/, "");
}

/** `http(s)://...` or `ws(s)://...` as the WebSocket base `ws(s)://host:port[/prefix]`. */
export function wsBase(url: string): string {
  const u = new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  u.search = "";
  u.hash = "";
  u.pathname = u.pathname.replace(/\/v1\/ws\/?$/, "").replace(/\/+$/, "");
  return u.toString().replace(/\/+$/, "");
}

export interface HttpOptions {
  fetch: typeof fetch;
  /** HTTP base URLs to try, preferred first. */
  bases: () => string[];
  tokens: TokenManager;
  timeoutMs: number;
  /** How many times a request that failed with a retryable error is tried again. */
  retries: number;
}

interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Whether repeating the request is harmless; only then is it retried. */
  idempotent?: boolean;
  /** Send no token (the route endpoint needs none). */
  anonymous?: boolean;
  /** Only this base URL, not the others. */
  base?: string;
  expect?: number[];
  /** Retries of a retryable failure; the client's `httpRetries` by default. */
  retries?: number;
}

/** How far message-ID order may lag sequence order, in ms of Snowflake time. */
const ID_SKEW_MS = 5_000;

/**
 * The Snowflake ID `ms` milliseconds before `id` (41 bits of milliseconds
 * above 22 bits of worker and sequence), as a cursor; "0" if before the epoch.
 */
function earlierId(id: string, ms: number): string {
  try {
    const earlier = BigInt(id) - (BigInt(ms) << 22n);
    return earlier > 0n ? earlier.toString() : "0";
  } catch {
    return id;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `/v1/channels/<id>`. */
function channelPath(channelId: string): string {
  return `/v1/channels/${encodeURIComponent(channelId)}`;
}

/** `/v1/channels/<id>/messages/<seq>`. */
function messagePath(channelId: string, seq: number): string {
  return `${channelPath(channelId)}/messages/${seq}`;
}

function byteLength(body: UploadBody): number {
  if (typeof Blob !== "undefined" && body instanceof Blob) return body.size;
  if (body instanceof ArrayBuffer) return body.byteLength;
  return (body as ArrayBufferView).byteLength;
}

/** The gateway's HTTP API: history, presence, routes, media and channels. */
export class HttpApi {
  constructor(private readonly options: HttpOptions) {}

  /** Makes one API call, trying other gateways on network errors and retrying retryable failures. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const idempotent = options.idempotent ?? method === "GET";
    let refreshed = false;
    let lastError: unknown;
    const retries = options.retries ?? this.options.retries;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await sleep(backoffDelay(attempt, DEFAULT_BACKOFF) + 50);
      const token = options.anonymous ? undefined : await this.options.tokens.get();
      let response: Response | undefined;
      const bases = options.base !== undefined ? [options.base] : this.options.bases();
      for (const base of bases) {
        try {
          response = await this.fetchOnce(method, base, path, options, token);
          break;
        } catch (err) {
          // Never reached that gateway (or no answer in time): try the next one.
          lastError = new ChatError("network", `${method} ${path}: ${String(err)}`, { cause: err });
        }
      }
      if (response === undefined) continue;
      if ((options.expect ?? [200, 201]).includes(response.status)) return (await response.json()) as T;
      const error = await HttpApi.errorOf(response, `${method} ${path}`);
      lastError = error;
      if (response.status === 401 && !refreshed && this.options.tokens.canRefresh) {
        // Expired or refused: once with a fresh token.
        refreshed = true;
        await this.options.tokens.refresh("rejected");
        attempt--;
        continue;
      }
      if (!error.retryable || !idempotent) throw error;
    }
    throw lastError instanceof Error ? lastError : new ChatError("network", `${method} ${path} failed`);
  }

  private async fetchOnce(
    method: string,
    base: string,
    path: string,
    options: RequestOptions,
    token: string | undefined,
  ): Promise<Response> {
    const url = new URL(base + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (token !== undefined) headers["authorization"] = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    try {
      const init: RequestInit = { method, headers, signal: controller.signal };
      if (body !== undefined) init.body = body;
      return await this.options.fetch(url.toString(), init);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The `ChatError` of an HTTP error answer. */
  static async errorOf(response: Response, what: string): Promise<ChatError> {
    let code = `http_${response.status}`;
    let message = `${what}: HTTP ${response.status}`;
    let retryable: boolean | undefined;
    try {
      const parsed = (await response.json()) as { error?: { code?: string; message?: string; retryable?: boolean } };
      if (parsed.error?.code) code = parsed.error.code;
      if (parsed.error?.message) message = parsed.error.message;
      if (typeof parsed.error?.retryable === "boolean") retryable = parsed.error.retryable;
    } catch {
      // Not a JSON error body (a proxy's answer, say).
      retryable = response.status >= 500 || response.status === 429;
    }
    const opts: { retryable?: boolean; status: number } = { status: response.status };
    if (retryable !== undefined) opts.retryable = retryable;
    return new ChatError(code, message, opts);
  }

  /** One page of a channel's history, oldest first. Without a cursor, the newest page. */
  history(channel: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    return this.request<HistoryPage>("GET", `/v1/channels/${encodeURIComponent(channel)}/messages`, {
      query: { before: query.before, after: query.after, limit: query.limit },
    });
  }

  /** One page of the replies in the thread of message `seq`, oldest first; cursors as in `history`. */
  thread(channel: string, seq: number, query: HistoryQuery = {}): Promise<HistoryPage> {
    const path = `/v1/channels/${encodeURIComponent(channel)}/messages/${seq}/thread`;
    return this.request<HistoryPage>("GET", path, {
      query: { before: query.before, after: query.after, limit: query.limit },
    });
  }

  /**
   * Pages through a channel's history. `backward` (the default) starts at
   * the newest page, or before `from`, and walks back; `forward` starts
   * after `from` (a message ID) and walks forward.
   */
  async *pages(
    channel: string,
    options: { direction?: "backward" | "forward"; from?: string; limit?: number } = {},
  ): AsyncGenerator<HistoryPage> {
    const forward = options.direction === "forward";
    let cursor = options.from;
    for (;;) {
      const query: HistoryQuery = {};
      if (options.limit !== undefined) query.limit = options.limit;
      if (cursor !== undefined) {
        if (forward) query.after = cursor;
        else query.before = cursor;
      }
      const page = await this.history(channel, query);
      yield page;
      if (!page.has_more || page.messages.length === 0) return;
      const edge = forward ? page.messages[page.messages.length - 1] : page.messages[0];
      if (!edge) return;
      cursor = edge.message_id;
    }
  }

  /**
   * The stored messages of `channel` with `fromSeq <= seq <= toSeq`, in
   * sequence order: what a `reload_required` frame asks to reload. With
   * `after` (the ID of the last message before the range) it pages forward
   * from a little before it; otherwise backward from the newest message.
   *
   * History is ordered by message ID, and concurrent sends can take IDs and
   * sequence numbers in different orders. So paging starts
   * `ID_SKEW_MS` before the cursor and goes one page past the range, and the
   * result is filtered and sorted by `seq`.
   */
  async range(
    channel: string,
    fromSeq: number,
    toSeq: number,
    options: { after?: string; limit?: number } = {},
  ): Promise<Message[]> {
    const found = new Map<number, Message>();
    const limit = options.limit ?? 100;
    const take = (page: HistoryPage) => {
      for (const m of page.messages) if (m.seq >= fromSeq && m.seq <= toSeq) found.set(m.seq, m);
    };
    let beyond = 0;
    if (options.after !== undefined) {
      const from = earlierId(options.after, ID_SKEW_MS);
      for await (const page of this.pages(channel, { direction: "forward", from, limit })) {
        take(page);
        if (page.messages.every((m) => m.seq > toSeq) && ++beyond > 1) break;
      }
    } else {
      for await (const page of this.pages(channel, { direction: "backward", limit })) {
        take(page);
        if (page.messages.every((m) => m.seq < fromSeq) && ++beyond > 1) break;
      }
    }
    return [...found.values()].sort((a, b) => a.seq - b.seq);
  }

  // -- message changes --------------------------------------------------------
  // Each sends an idempotency key (the caller's, or a fresh one), so a
  // request whose answer was lost is safely made again.

  /** Replaces the text of message `seq`, the caller's own (`forbidden` otherwise); its reactions are cleared. */
  editMessage(channel: string, seq: number, body: string, options: HttpChangeOptions = {}): Promise<ChangeReceipt> {
    const key = options.idempotencyKey ?? randomKey();
    return this.request<ChangeReceipt>("PATCH", messagePath(channel, seq), {
      body: { body, idempotency_key: key },
      idempotent: true,
    });
  }

  /** Deletes message `seq` (the caller's own, or any as an owner); it stays as a tombstone. */
  deleteMessage(channel: string, seq: number, options: HttpChangeOptions = {}): Promise<ChangeReceipt> {
    return this.changeRequest("DELETE", messagePath(channel, seq), options);
  }

  /** Adds the caller's `emoji` reaction to message `seq`. */
  addReaction(channel: string, seq: number, emoji: string, options: HttpChangeOptions = {}): Promise<ChangeReceipt> {
    return this.changeRequest("PUT", `${messagePath(channel, seq)}/reactions/${encodeURIComponent(emoji)}`, options);
  }

  /** Takes the caller's `emoji` reaction on message `seq` back. */
  removeReaction(channel: string, seq: number, emoji: string, options: HttpChangeOptions = {}): Promise<ChangeReceipt> {
    return this.changeRequest("DELETE", `${messagePath(channel, seq)}/reactions/${encodeURIComponent(emoji)}`, options);
  }

  private changeRequest(method: string, path: string, options: HttpChangeOptions): Promise<ChangeReceipt> {
    return this.request<ChangeReceipt>(method, path, {
      headers: { "idempotency-key": options.idempotencyKey ?? randomKey() },
      idempotent: true,
    });
  }

  /** The members of `channel` with a live session subscribed to it. */
  async online(channel: string): Promise<string[]> {
    const r = await this.request<{ channel_id: string; user_ids: string[] }>(
      "GET",
      `/v1/channels/${encodeURIComponent(channel)}/online`,
    );
    return r.user_ids;
  }

  /**
   * Moves the caller's read position in `channel` forward to `seq` (never
   * back); resolves with the position held now.
   */
  async markRead(channel: string, seq: number): Promise<number> {
    const r = await this.request<{ channel_id: string; seq: number }>(
      "PUT",
      `/v1/channels/${encodeURIComponent(channel)}/read`,
      { body: { seq } },
    );
    return r.seq;
  }

  /** Every member's read position in `channel` (read receipts), by user. */
  async readPositions(channel: string): Promise<ReadPosition[]> {
    const r = await this.request<{ channel_id: string; positions: ReadPosition[] }>(
      "GET",
      `/v1/channels/${encodeURIComponent(channel)}/reads`,
    );
    return r.positions;
  }

  /**
   * The caller's unread posts and unread mentions in `channels` (every
   * channel of theirs when omitted), and the sums.
   */
  unread(channels?: string[]): Promise<UnreadCounts> {
    const query = channels && channels.length > 0 ? { channel_ids: channels.join(",") } : {};
    return this.request<UnreadCounts>("GET", "/v1/unread", { query });
  }

  /** The messages that mention the caller, newest first; `channel` narrows it to one channel. */
  mentions(query: MentionsQuery = {}): Promise<HistoryPage> {
    return this.request<HistoryPage>("GET", "/v1/mentions", {
      query: { channel_id: query.channel, before: query.before, limit: query.limit },
    });
  }

  /** Online status and last-seen time of 1 to 100 users. */
  async presence(userIds: string[]): Promise<UserPresence[]> {
    const r = await this.request<{ users: UserPresence[] }>("GET", "/v1/presence", {
      query: { user_ids: userIds.join(",") },
    });
    return r.users;
  }

  /** Which node owns `channel`, asked of `base` (or any gateway). */
  route(channel: string, base?: string): Promise<RouteInfo> {
    const options: RequestOptions = { anonymous: true };
    if (base !== undefined) {
      options.base = base;
      options.retries = 0;
    }
    return this.request<RouteInfo>("GET", `/v1/route/${encodeURIComponent(channel)}`, options);
  }

  /** Step 1 of an upload: a pending media and the signed URL to PUT its bytes to. */
  createUpload(channel: string, file: { filename: string; content_type: string; size: number }): Promise<UploadTarget> {
    return this.request<UploadTarget>("POST", `/v1/channels/${encodeURIComponent(channel)}/media`, {
      body: file,
      idempotent: false,
      expect: [201, 200],
    });
  }

  /** Step 2: PUT the bytes to the signed URL, with exactly the headers it was signed with. */
  async putUpload(target: UploadTarget, body: UploadBody): Promise<void> {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(target.upload_headers ?? {})) {
      // fetch sets Content-Length from the body itself; browsers refuse it.
      if (k.toLowerCase() !== "content-length") headers[k] = v;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), Math.max(this.options.timeoutMs, 120_000));
    let response: Response;
    try {
      response = await this.options.fetch(target.upload_url, {
        method: target.upload_method ?? "PUT",
        headers,
        body: body as BodyInit,
        signal: controller.signal,
      });
    } catch (err) {
      throw new ChatError("network", `upload of ${target.media_id} failed: ${String(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      throw new ChatError("upload_failed", `the store refused the upload of ${target.media_id}: HTTP ${response.status}`, {
        status: response.status,
        retryable: response.status >= 500,
      });
    }
  }

  /** Step 3: verify the uploaded bytes and make the media attachable. Repeating it is harmless. */
  async completeUpload(mediaId: string): Promise<Media> {
    const r = await this.request<{ media: Media }>("POST", `/v1/media/${encodeURIComponent(mediaId)}/complete`, {
      idempotent: true,
    });
    return r.media;
  }

  /** Create, PUT and complete: the ready media, whose ID goes in a send's `attachments`. */
  async uploadMedia(
    channel: string,
    body: UploadBody,
    file: { filename: string; contentType: string },
  ): Promise<Media> {
    const target = await this.createUpload(channel, {
      filename: file.filename,
      content_type: file.contentType,
      size: byteLength(body),
    });
    await this.putUpload(target, body);
    return this.completeUpload(target.media_id);
  }

  /** Media metadata, for members of its channel. */
  async getMedia(mediaId: string): Promise<Media> {
    const r = await this.request<{ media: Media }>("GET", `/v1/media/${encodeURIComponent(mediaId)}`);
    return r.media;
  }

  /** A short-lived URL to GET a ready media's bytes. */
  downloadUrl(mediaId: string): Promise<DownloadUrl> {
    return this.request<DownloadUrl>("GET", `/v1/media/${encodeURIComponent(mediaId)}/download`);
  }
  // -- channels ---------------------------------------------------------------

  /** The caller's channels, each with the caller's `role`. */
  async channels(): Promise<Channel[]> {
    const r = await this.request<{ channels: Channel[] }>("GET", "/v1/channels");
    return r.channels;
  }

  /** One page of the public channels, by channel ID; pass `next_after` as `after` for the next. */
  publicChannels(query: PublicChannelsQuery = {}): Promise<PublicChannelsPage> {
    return this.request<PublicChannelsPage>("GET", "/v1/public-channels", {
      query: { after: query.after, limit: query.limit },
    });
  }

  /** Every public channel, page by page (`limit` per page), from after `after`. */
  async *publicChannelPages(query: PublicChannelsQuery = {}): AsyncGenerator<PublicChannelsPage> {
    let after = query.after;
    for (;;) {
      const q: PublicChannelsQuery = {};
      if (after !== undefined) q.after = after;
      if (query.limit !== undefined) q.limit = query.limit;
      const page = await this.publicChannels(q);
      yield page;
      if (page.next_after === null || page.channels.length === 0) return;
      after = page.next_after;
    }
  }

  /** A channel: any public one, or a private one the caller is a member of (`not_member` otherwise). */
  async channel(channelId: string): Promise<Channel> {
    const r = await this.request<{ channel: Channel }>("GET", channelPath(channelId));
    return r.channel;
  }

  /**
   * Creates a channel with the caller as its owner (`channel_exists` if the
   * ID is taken). A refused create is not retried; one whose answer never
   * came may be answered `channel_exists` when made again.
   */
  async createChannel(options: CreateChannelOptions): Promise<Channel> {
    const body: { channel_id: string; name?: string; visibility?: ChannelVisibility } = { channel_id: options.channelId };
    if (options.name !== undefined) body.name = options.name;
    if (options.visibility !== undefined) body.visibility = options.visibility;
    const r = await this.request<{ channel: Channel }>("POST", "/v1/channels", { body, idempotent: false, expect: [201, 200] });
    return r.channel;
  }

  /** Joins a public channel (`private_channel` for a private one); false if already a member. */
  async joinChannel(channelId: string): Promise<boolean> {
    const r = await this.request<{ joined: boolean }>("POST", `${channelPath(channelId)}/join`, { idempotent: true });
    return r.joined;
  }

  /**
   * Leaves a channel; false if not a member. When its last owner leaves, the
   * longest-standing member becomes the owner.
   */
  async leaveChannel(channelId: string): Promise<boolean> {
    const r = await this.request<{ left: boolean }>("POST", `${channelPath(channelId)}/leave`, { idempotent: true });
    return r.left;
  }

  /** The members of a channel the caller is a member of. */
  async members(channelId: string): Promise<ChannelMember[]> {
    const r = await this.request<{ members: ChannelMember[] }>("GET", `${channelPath(channelId)}/members`);
    return r.members;
  }

  /** Adds `userId` to the channel (owners only: `not_owner`); false if already a member. */
  async addMember(channelId: string, userId: string): Promise<boolean> {
    const r = await this.request<{ added: boolean }>("POST", `${channelPath(channelId)}/members`, {
      body: { user_id: userId },
      idempotent: true,
    });
    return r.added;
  }

  /** Removes `userId` from the channel (owners only: `not_owner`); an owner removing themselves leaves. */
  async removeMember(channelId: string, userId: string): Promise<boolean> {
    const r = await this.request<{ removed: boolean }>("DELETE", `${channelPath(channelId)}/members/${encodeURIComponent(userId)}`, {
      idempotent: true,
    });
    return r.removed;
  }

  /** The OpenAPI document of the gateway's HTTP API (it needs no token). */
  openApi(): Promise<OpenApiDocument> {
    return this.request<OpenApiDocument>("GET", "/v1/openapi.json", { anonymous: true });
  }
}

/**
 * A development token from `POST /v1/dev/token` (only on gateways with
 * `auth.dev_tokens`). `ttlSecs` defaults to the server's 3600.
 */
export async function fetchDevToken(
  gatewayUrl: string,
  userId: string,
  options: { ttlSecs?: number; fetch?: typeof fetch } = {},
): Promise<{ token: string; expires_in: number }> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const body: { user_id: string; ttl_secs?: number } = { user_id: userId };
  if (options.ttlSecs !== undefined) body.ttl_secs = options.ttlSecs;
  const response = await doFetch(`${httpBase(gatewayUrl)}/v1/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await HttpApi.errorOf(response, "POST /v1/dev/token");
  return (await response.json()) as { token: string; expires_in: number };
}
