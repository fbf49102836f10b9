import { createHmac } from "node:crypto";
import { WebSocket } from "ws";

import { ChatClient, type ClientOptions, type Message, type Subscription } from "../../src/index.js";
import type { Mesh } from "./mesh.js";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A client of `user` on the mesh, with `ws` as its WebSocket and dev tokens from `getToken`. */
export function client(mesh: Mesh, user: string, options: Partial<ClientOptions> = {}): ChatClient {
  const getToken = options.getToken ?? (() => mesh.devToken(user));
  return new ChatClient({
    url: mesh.gatewayUrls,
    WebSocket,
    getToken,
    ...options,
  });
}

/** Every message `sub` delivers, in delivery order. */
export function collect(sub: Subscription): Message[] {
  const got: Message[] = [];
  sub.on("message", (m) => got.push(m));
  return got;
}

/** Throws unless `messages` have strictly increasing `seq`s (in order, at most once). */
export function assertInOrderOnce(messages: Message[], what: string): void {
  for (let i = 1; i < messages.length; i++) {
    const a = messages[i - 1];
    const b = messages[i];
    if (!a || !b || b.seq <= a.seq) {
      throw new Error(`${what}: message ${i} has seq ${b?.seq} after ${a?.seq}`);
    }
  }
  const ids = new Set(messages.map((m) => m.message_id));
  if (ids.size !== messages.length) throw new Error(`${what}: ${messages.length - ids.size} duplicate message IDs`);
}

/** An HS256 JWT over `claims`, signed with `secret`. */
export function signJwt(claims: Record<string, unknown>, secret: string): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = createHmac("sha256", secret).update(head).digest("base64url");
  return `${head}.${sig}`;
}

/** Sends `bodies` one after another; resolves with the acks. */
export async function sendAll(c: ChatClient, channel: string, bodies: string[]): Promise<{ seq: number; duplicate: boolean }[]> {
  const acks = [];
  for (const body of bodies) acks.push(await c.send(channel, body));
  return acks;
}
