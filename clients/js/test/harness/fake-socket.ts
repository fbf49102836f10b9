// An in-memory WebSocket for unit tests: the test opens each connection the
// client makes, reads the frames it sent and answers them.
import type { ClientFrame, ServerFrame } from "../../src/index.js";
import { waitFor } from "./util.js";

export class FakeSocket {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** Every frame the client wrote, parsed. */
  readonly sent: (ClientFrame & { request_id?: string })[] = [];
  closedWith: { code: number | undefined; reason: string | undefined } | undefined;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as ClientFrame);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** The server accepts the connection. */
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** The server writes `frame`. */
  receive(frame: ServerFrame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The connection drops under the client. */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The frames the client sent of `type`, pings left out. */
  framesOf<T extends ClientFrame["type"]>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.sent.filter((f): f is Extract<ClientFrame, { type: T }> => f.type === type);
  }
}

/** A `WebSocket` class whose instances land in `sockets`, newest last. */
export function fakeSockets(): { WebSocket: new (url: string) => FakeSocket; sockets: FakeSocket[]; next: (count: number) => Promise<FakeSocket> } {
  const sockets: FakeSocket[] = [];
  class Recorded extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  /** Waits for the `count`th connection and opens it. */
  const next = async (count: number): Promise<FakeSocket> => {
    await waitFor(`connection ${count}`, () => sockets.length >= count, 2_000, 5);
    const socket = sockets[count - 1];
    if (!socket) throw new Error("no socket");
    socket.open();
    return socket;
  };
  return { WebSocket: Recorded, sockets, next };
}
