import type { ClientFrame, ServerFrame } from "./generated/protocol.js";

/** The part of the WHATWG `WebSocket` the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A `WebSocket` class: the platform's, or for Node 20 the `ws` package's. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => unknown;

/** What the transport hooks are told about the connection a frame travels on. */
export interface LinkInfo {
  /** The gateway's WebSocket base URL. */
  readonly url: string;
  /** Cuts the connection as if the network dropped it; the client reconnects. */
  drop(reason?: string): void;
}

/**
 * Hooks into the transport, for tests and debugging. `outgoing` sees each
 * client frame before it is written and `incoming` each server frame before
 * the client handles it; either drops the frame by returning `false`.
 */
export interface TransportHooks {
  outgoing?(frame: ClientFrame, link: LinkInfo): boolean | void;
  incoming?(frame: ServerFrame, link: LinkInfo): boolean | void;
}

export type LinkState = "idle" | "connecting" | "open" | "waiting" | "stopped";

/** The JSON subprotocol (the default form of frames). */
export const JSON_SUBPROTOCOL = "chatmesh.v1.json";

/** What a link needs from the client that owns it. */
export interface LinkHost {
  readonly webSocket: WebSocketConstructor;
  readonly hooks: TransportHooks | undefined;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly sleepThresholdMs: number;
  readonly sessionTtlMs: number;
  now(): number;
  nextRequestId(): string;
  /** A token for a new connection of `link`. */
  tokenFor(link: Link): Promise<string>;
  onLinkState(link: Link): void;
  onLinkOpen(link: Link): void;
  onLinkFrame(link: Link, frame: ServerFrame): void;
  /** The connection ended; `opened` says whether it had been established. */
  onLinkClosed(link: Link, info: LinkClosed): void;
  onWake(link: Link, sleptMs: number): void;
}

export interface LinkClosed {
  code: number;
  reason: string;
  /** False when the socket never opened (refused, unreachable, timed out). */
  opened: boolean;
  /** Closed by the client itself: a dead connection or a sleep it noticed. */
  local: boolean;
}

type ReplyHandler = (frame: ServerFrame) => void;

const noop = (): void => {};

/**
 * Silences a socket the client is done with. The handlers become no-ops
 * rather than null: some implementations (Node's `ws`) throw on an error
 * event nobody listens to, which closing a socket still connecting raises.
 */
function detach(ws: WebSocketLike): void {
  ws.onopen = noop;
  ws.onmessage = noop;
  ws.onclose = noop;
  ws.onerror = noop;
}

/**
 * One WebSocket to one gateway node: it opens the socket, keeps it alive with
 * pings, notices when it died (missed pongs, a host that slept) and matches
 * replies to requests. The client decides when to open it again.
 */
export class Link implements LinkInfo {
  state: LinkState = "idle";
  /** Failed connection attempts in a row. */
  attempt = 0;
  /** The node said it is shutting down. */
  draining = false;
  retryTimer: ReturnType<typeof setTimeout> | undefined;

  private ws: WebSocketLike | undefined;
  private opened = false;
  private generation = 0;
  private replies = new Map<string, ReplyHandler>();
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private tickTimer: ReturnType<typeof setInterval> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private outstandingPing: { id: string; sentAt: number } | undefined;
  private lastReceived = 0;
  private lastTick = 0;
  private tickMs = 1000;
  /** When the current connection opened. */
  openedAt = 0;
  /** Between a lost connection and the client's decision when to retry. */
  recovering = false;
  /** Whether a connection of this link ever opened. */
  everOpened = false;

  constructor(
    readonly url: string,
    private readonly host: LinkHost,
  ) {}

  get isOpen(): boolean {
    return this.state === "open";
  }

  private setState(state: LinkState): void {
    if (this.state === state) return;
    this.state = state;
    this.host.onLinkState(this);
  }

  /** Opens a connection (unless one is open or opening). */
  async open(): Promise<void> {
    if (this.state === "connecting" || this.state === "open" || this.state === "stopped") return;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.setState("connecting");
    const generation = ++this.generation;
    let token: string;
    try {
      token = await this.host.tokenFor(this);
    } catch (err) {
      if (generation !== this.generation || (this.state as LinkState) !== "connecting") return;
      this.recovering = true;
      this.setState("idle");
      this.host.onLinkClosed(this, { code: 0, reason: `no token: ${String(err)}`, opened: false, local: true });
      return;
    }
    if (generation !== this.generation || (this.state as LinkState) !== "connecting") return;
    const address = `${this.url}/v1/ws?token=${encodeURIComponent(token)}`;
    let ws: WebSocketLike;
    try {
      ws = new this.host.webSocket(address, [JSON_SUBPROTOCOL]) as WebSocketLike;
    } catch (err) {
      this.recovering = true;
      this.setState("idle");
      this.host.onLinkClosed(this, { code: 0, reason: `cannot connect: ${String(err)}`, opened: false, local: true });
      return;
    }
    this.ws = ws;
    this.opened = false;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && !this.opened) this.abandon(ws, 0, "connect timeout");
    }, this.host.connectTimeoutMs);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      this.opened = true;
      this.everOpened = true;
      this.openedAt = this.host.now();
      this.lastReceived = this.host.now();
      this.startKeepalive();
      this.setState("open");
      this.host.onLinkOpen(this);
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.onData(event.data);
    };
    ws.onerror = () => {
      // A close event follows with the details there are.
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.finish(event.code, event.reason, false);
    };
  }

  private onData(data: unknown): void {
    let text: string;
    if (typeof data === "string") text = data;
    else if (data instanceof ArrayBuffer) text = new TextDecoder().decode(data);
    else if (ArrayBuffer.isView(data)) text = new TextDecoder().decode(data);
    else return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
    if (this.host.hooks?.incoming?.(frame, this) === false) return;
    this.lastReceived = this.host.now();
    const requestId = "request_id" in frame ? frame.request_id : undefined;
    if (requestId !== undefined) {
      const handler = this.replies.get(requestId);
      if (handler) {
        this.replies.delete(requestId);
        handler(frame);
        return;
      }
    }
    this.host.onLinkFrame(this, frame);
  }

  /** Writes `frame`; false when the link is not open or a hook dropped it. */
  send(frame: ClientFrame): boolean {
    const ws = this.ws;
    if (!ws || this.state !== "open") return false;
    if (this.host.hooks?.outgoing?.(frame, this) === false) return true;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Sends `frame` with a new request ID and calls `onReply` with the answer to it. */
  request(frame: ClientFrame & { request_id?: string }, onReply: ReplyHandler, requestId = this.host.nextRequestId()): string {
    frame.request_id = requestId;
    this.replies.set(requestId, onReply);
    if (!this.send(frame)) this.replies.delete(requestId);
    return requestId;
  }

  /** Stops waiting for the reply to `requestId`. */
  forget(requestId: string): void {
    this.replies.delete(requestId);
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    this.tickMs = Math.max(50, Math.min(1000, Math.floor(this.host.pongTimeoutMs / 2)));
    this.lastTick = this.host.now();
    this.pingTimer = setInterval(() => this.ping(), this.host.pingIntervalMs);
    this.tickTimer = setInterval(() => this.tick(), this.tickMs);
  }

  private stopKeepalive(): void {
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    this.pingTimer = undefined;
    this.tickTimer = undefined;
    this.outstandingPing = undefined;
  }

  /** Sends a ping now; any frame received before `pongTimeoutMs` proves the connection alive. */
  ping(): void {
    if (this.state !== "open") return;
    if (this.outstandingPing !== undefined) return;
    const sentAt = this.host.now();
    const id = this.host.nextRequestId();
    this.outstandingPing = { id, sentAt };
    this.request({ type: "ping", client_time_ms: sentAt }, () => {
      if (this.outstandingPing?.id === id) this.outstandingPing = undefined;
      // A connection that answers pings is healthy: the next failure starts
      // its backoff from the beginning.
      this.attempt = 0;
    }, id);
  }

  private tick(): void {
    const now = this.host.now();
    const elapsed = now - this.lastTick;
    this.lastTick = now;
    if (elapsed > this.tickMs + this.host.sleepThresholdMs) {
      // The timer ran late by the wall clock: the host slept (a laptop lid, a
      // frozen background tab). The socket may be long dead.
      this.host.onWake(this, elapsed);
      if (elapsed >= this.host.sessionTtlMs) {
        // The gateway has expired the session by now: start over at once.
        this.drop(`slept ${Math.round(elapsed / 1000)}s`);
        return;
      }
      this.outstandingPing = undefined;
      this.ping();
      return;
    }
    const ping = this.outstandingPing;
    if (ping && now - ping.sentAt > this.host.pongTimeoutMs && this.lastReceived <= ping.sentAt) {
      this.drop(`no pong within ${this.host.pongTimeoutMs}ms`);
    }
  }

  /** Gives up on the current connection as if it had dropped; the client reconnects. */
  drop(reason = "dropped"): void {
    const ws = this.ws;
    if (!ws) return;
    this.abandon(ws, 4000, reason);
  }

  private abandon(ws: WebSocketLike, code: number, reason: string): void {
    // The close handshake may never finish on a dead connection: detach the
    // socket and carry on at once.
    detach(ws);
    try {
      ws.close(4000, reason.slice(0, 120));
    } catch {
      // Already closed.
    }
    this.finish(code, reason, true);
  }

  private finish(code: number, reason: string, local: boolean): void {
    clearTimeout(this.connectTimer);
    this.stopKeepalive();
    const opened = this.opened;
    this.ws = undefined;
    this.opened = false;
    this.replies.clear();
    if (this.state === "stopped") return;
    this.recovering = true;
    // The client hears why before it hears the state, so a failure retrying
    // cannot fix goes straight to `disconnected`.
    this.state = "idle";
    this.host.onLinkClosed(this, { code, reason, opened, local });
    if (this.state === "idle") this.host.onLinkState(this);
  }

  /** Waits `delayMs`, then opens again. */
  retryIn(delayMs: number): void {
    this.recovering = false;
    if (this.state === "stopped" || this.state === "connecting" || this.state === "open") return;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.setState("waiting");
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === "waiting") {
        this.state = "idle";
        void this.open();
      }
    }, delayMs);
  }

  /** Opens now if waiting to retry. */
  retryNow(): void {
    if (this.state === "waiting") {
      if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.state = "idle";
      void this.open();
    }
  }

  /** Closes for good. */
  stop(code = 1000, reason = "client closed"): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearTimeout(this.connectTimer);
    this.stopKeepalive();
    this.generation++;
    const ws = this.ws;
    this.ws = undefined;
    this.replies.clear();
    this.setState("stopped");
    if (ws) {
      detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        // Already closed.
      }
    }
  }

  /** Runs the keepalive check now (a page became visible again, say). */
  check(): void {
    if (this.state === "open") this.tick();
  }
}
