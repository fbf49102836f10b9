// The SDK against the real mesh: chat, presence, storage, media and two
// gateway nodes in redirect mode, as processes on the real infrastructure
// (see test/harness/mesh.ts). The tests share one mesh and run in order;
// those that kill or stop a gateway start it again before they end.

import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, test } from "node:test";

import { WebSocket } from "ws";

import { ChatClient, ChatError, decodeToken, MessageState, type ClientFrame, type LinkInfo, type Message, type ReloadRequiredEvent } from "../../src/index.js";
import { DEV_SECRET, Mesh } from "../harness/mesh.js";
import { assertInOrderOnce, client, collect, sendAll, signJwt, sleep, waitFor } from "../harness/util.js";

// The gateways' default frame budget (20 frames/s, bursts of 40): sends
// faster than that are refused with rate_limited and retried.
const mesh = new Mesh({ gateways: 2, mode: "redirect", framesPerSecond: 20, leeway: "1s" });
const open: ChatClient[] = [];
let failed = false;

/** A user ID of this run (users are global; runs must not see each other's sessions). */
const user = (name: string) => `${name}-${mesh.run}`;
const range = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

function track<T extends ChatClient>(c: T): T {
  open.push(c);
  return c;
}

async function newChannel(prefix: string, members: string[], owner?: string): Promise<string> {
  const id = owner ? await mesh.channelOwnedBy(owner, prefix) : `${prefix}-${randomUUID().slice(0, 8)}`;
  await mesh.createChannel(id, members);
  return id;
}

/** Every stored message of `channel`, oldest first. */
async function stored(c: ChatClient, channel: string): Promise<Message[]> {
  const all: Message[] = [];
  for await (const page of c.historyPages(channel, { limit: 100 })) all.unshift(...page.messages);
  return all;
}

function channelUrl(c: ChatClient, channel: string): string | undefined {
  return c.connections.find((x) => x.channels.includes(channel))?.url;
}

before(async () => {
  const started = Date.now();
  await mesh.start();
  console.log(`mesh up in ${Date.now() - started}ms: gateways ${mesh.gatewayUrls.join(", ")} (logs in ${mesh.dir})`);
}, { timeout: 240_000 });

after(async () => {
  for (const c of open) c.close();
  await mesh.stop(failed);
  if (failed) console.log(`process logs kept in ${mesh.dir}`);
});

/** Runs `body`, closing the clients it opened; remembers failures to keep the logs. */
function meshTest(name: string, timeoutMs: number, body: () => Promise<void>): void {
  test(name, { timeout: timeoutMs }, async () => {
    const first = open.length;
    try {
      await body();
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      for (const c of open.splice(first)) c.close();
    }
  });
}

meshTest("two clients exchange 200 messages, each delivered once and in order", 120_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("exchange", [alice, bob]);
  const a = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  const states: string[] = [];
  a.on("state", (s) => states.push(s));
  await Promise.all([a.connect(), b.connect()]);
  const sa = a.subscribe(ch);
  const sb = b.subscribe(ch);
  const gotA = collect(sa);
  const gotB = collect(sb);
  await Promise.all([sa.ready(), sb.ready()]);

  const started = Date.now();
  const [acksA, acksB] = await Promise.all([sendAll(a, ch, range(100, "a")), sendAll(b, ch, range(100, "b"))]);
  await waitFor("200 messages at both clients", () => gotA.length >= 200 && gotB.length >= 200, 60_000);
  console.log(`200 messages sent and delivered in ${Date.now() - started}ms`);
  await sleep(300);

  assert.equal(gotA.length, 200);
  assert.equal(gotB.length, 200);
  assertInOrderOnce(gotA, "alice");
  assertInOrderOnce(gotB, "bob");
  assert.deepEqual(gotA.map((m) => [m.seq, m.message_id, m.body]), gotB.map((m) => [m.seq, m.message_id, m.body]));
  assert.deepEqual(gotA.filter((m) => m.sender_id === alice).map((m) => m.body), range(100, "a"));
  assert.deepEqual(gotA.filter((m) => m.sender_id === bob).map((m) => m.body), range(100, "b"));
  const ackSeqs = [...acksA, ...acksB].map((x) => x.seq).sort((x, y) => x - y);
  assert.deepEqual(ackSeqs, gotA.map((m) => m.seq));
  assert.ok([...acksA, ...acksB].every((x) => !x.duplicate));
  assert.deepEqual(states.slice(0, 2), ["connecting", "connected"]);
  assert.equal(sa.lastSeq, gotA[199]?.seq);

  await waitFor("the 200 messages in history", async () => (await stored(a, ch)).length === 200, 30_000, 250);
  // History comes in message-ID order, which concurrent sends can make
  // differ from sequence order: compare by number.
  const history = await stored(a, ch);
  assert.deepEqual(history.map((m) => m.seq).sort((x, y) => x - y), gotA.map((m) => m.seq));
  assert.deepEqual(await a.range(ch, 1, gotA[199]?.seq ?? 0), gotA);
  a.close();
  assert.equal(a.state, "closed");
});

meshTest("a redirect frame moves the channel to the node that owns it", 60_000, async () => {
  const alice = user("alice");
  const ch = await newChannel("redirect", [alice], "gw-1");
  // This client knows only gw-0; the channel belongs to gw-1.
  const c = track(client(mesh, alice, { url: [mesh.gatewayUrl(0)] }));
  const moved: { reason: string; from: string; to: string }[] = [];
  c.on("moved", (m) => moved.push(m));
  await c.connect();
  const sub = c.subscribe(ch);
  const got = collect(sub);
  await sub.ready();
  assert.deepEqual(moved, [{ channels: [ch], from: mesh.gatewayUrl(0), to: mesh.gatewayUrl(1), reason: "redirect" }]);
  assert.equal(channelUrl(c, ch), mesh.gatewayUrl(1));
  assert.deepEqual(c.connections.map((x) => x.url).sort(), [mesh.gatewayUrl(0), mesh.gatewayUrl(1)].sort());
  await c.send(ch, "hello from the owner");
  await waitFor("the message", () => got.length === 1);
  assert.equal(got[0]?.body, "hello from the owner");
  await sub.unsubscribe();
  // Nothing left on gw-1: that connection is closed.
  await waitFor("the gw-1 connection closed", () => c.connections.length === 1);
});

meshTest("a send whose ack is lost is sent again with its key and stored once", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("lostack", [alice, bob]);
  const sends: { body: string; key: string | undefined; id: string | undefined }[] = [];
  let lostDone = false;
  let cutDone = false;
  const a = track(
    client(mesh, alice, {
      hooks: {
        outgoing(frame: ClientFrame, link: LinkInfo) {
          if (frame.type !== "send") return;
          sends.push({ body: frame.body, key: frame.idempotency_key, id: frame.request_id });
          if (frame.body === "cut-after-write" && !cutDone) {
            // The frame is written; the connection dies before the ack.
            cutDone = true;
            setTimeout(() => link.drop("test: cut after the send was written"), 0);
          }
        },
        incoming(frame, link) {
          if (frame.type !== "ack" || lostDone) return;
          const send = sends.find((s) => s.id === frame.request_id);
          if (send?.body === "lost-ack") {
            lostDone = true;
            link.drop("test: the ack is lost");
            return false;
          }
        },
      },
    }),
  );
  const b = track(client(mesh, bob));
  await Promise.all([a.connect(), b.connect()]);
  const sb = b.subscribe(ch);
  const got = collect(sb);
  await sb.ready();
  await a.send(ch, "before");
  const lost = await a.send(ch, "lost-ack");
  const cut = await a.send(ch, "cut-after-write");
  await a.send(ch, "after");
  await waitFor("4 messages", () => got.length >= 4);
  await sleep(500);

  assert.deepEqual(got.map((m) => m.body), ["before", "lost-ack", "cut-after-write", "after"]);
  assertInOrderOnce(got, "bob");
  for (const [body, ack] of [["lost-ack", lost], ["cut-after-write", cut]] as const) {
    const attempts = sends.filter((s) => s.body === body);
    assert.ok(attempts.length >= 2, `${body} was sent ${attempts.length} times`);
    assert.equal(new Set(attempts.map((s) => s.key)).size, 1, `${body} kept its idempotency key`);
    assert.equal(ack.duplicate, true, `${body}: the retry was answered with the original ack`);
    assert.equal(ack.seq, got.find((m) => m.body === body)?.seq);
  }
  await waitFor("history", async () => (await stored(b, ch)).length >= 4, 30_000, 250);
  assert.deepEqual((await stored(b, ch)).map((m) => m.body), ["before", "lost-ack", "cut-after-write", "after"]);
});

meshTest("retryable errors are retried with the same key; others fail at once", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const mine = await newChannel("retry", [alice]);
  const theirs = await newChannel("notmine", [bob]);
  const sent = new Map<string, number>();
  const errors: string[] = [];
  const c = track(
    client(mesh, alice, {
      sendWindow: 120,
      hooks: {
        outgoing(frame) {
          if (frame.type === "send") sent.set(frame.idempotency_key ?? "", (sent.get(frame.idempotency_key ?? "") ?? 0) + 1);
        },
        incoming(frame) {
          if (frame.type === "error") errors.push(frame.code);
        },
      },
    }),
  );
  await c.connect();

  await assert.rejects(c.send(theirs, "let me in"), (e: unknown) => e instanceof ChatError && e.code === "not_member" && !e.retryable);
  assert.equal(sent.size, 1);
  assert.deepEqual([...sent.values()], [1], "a non-retryable error is not retried");

  // 120 sends at once against a budget of 20 frames/s (bursts of 40).
  sent.clear();
  const burst = 120;
  const acks = await Promise.all(range(burst, "burst").map((body) => c.send(mine, body)));
  assert.ok(errors.filter((e) => e === "rate_limited").length > 0, "the burst was rate limited");
  assert.equal(new Set(acks.map((a) => a.seq)).size, burst);
  assert.ok([...sent.values()].some((n) => n > 1), "some sends went more than once");
  assert.equal(sent.size, burst, "one key per message");
  await waitFor("history", async () => (await stored(c, mine)).length >= burst, 30_000, 250);
  const history = await stored(c, mine);
  assert.equal(history.length, burst);
  assert.deepEqual(new Set(history.map((m) => m.body)), new Set(range(burst, "burst")));
});

meshTest("a close code retrying cannot fix (1009) stops the client", 30_000, async () => {
  const alice = user("alice");
  const ch = await newChannel("toolarge", [alice]);
  // Past the client's own check, to see what the gateway does with a frame
  // far over its limit: it closes the connection with 1009.
  const c = track(client(mesh, alice, { maxFrameBytes: 1_000_000 }));
  const states: string[] = [];
  c.on("state", (st) => states.push(st));
  const errors: Error[] = [];
  c.on("error", (e) => errors.push(e));
  await c.connect();
  await assert.rejects(c.send(ch, "x".repeat(100_000)), (e: unknown) => e instanceof ChatError && /1009/.test(e.message));
  assert.equal(c.state, "disconnected");
  assert.deepEqual(states, ["connecting", "connected", "disconnected"]);
  assert.ok(errors.some((e) => e instanceof ChatError && e.code === "protocol"));
  assert.equal((c.lastError as ChatError | undefined)?.code, "protocol");
  // connect() starts over.
  await c.connect();
  assert.equal(c.state, "connected");
});

meshTest("an expiring token is refreshed through getToken, before expiry and on reconnect", 90_000, async () => {
  const alice = user("alice");
  const ch = await newChannel("token", [alice]);
  const calls: { reason: string; at: number }[] = [];
  let link: LinkInfo | undefined;
  const c = track(
    client(mesh, alice, {
      getToken: async ({ reason }) => {
        calls.push({ reason, at: Date.now() });
        return mesh.devToken(alice, 3);
      },
      hooks: {
        incoming(_frame, l) {
          link = l;
        },
      },
    }),
  );
  await c.connect();
  const sub = c.subscribe(ch);
  const got = collect(sub);
  await sub.ready();
  const first = c.token ?? "";
  const exp = (decodeToken(first)?.exp ?? 0) * 1000;
  assert.equal(calls[0]?.reason, "initial");

  await waitFor("a refresh before expiry", () => c.token !== first, 5_000);
  const refresh = calls.find((x) => x.reason === "expiring");
  assert.ok(refresh && refresh.at < exp, "refreshed before the token expired");

  // Past the first token's expiry (and the gateway's 1 s leeway): it is refused now.
  await sleep(Math.max(0, exp + 3_000 - Date.now()));
  const refused = await fetch(`${mesh.httpUrl(0)}/v1/channels/${ch}/messages`, { headers: { authorization: `Bearer ${first}` } });
  assert.equal(refused.status, 401);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "token_expired");

  // A reconnect asks for a fresh token and gets back in.
  const before = calls.length;
  link?.drop("test: reconnect");
  await waitFor("reconnected", () => c.state === "connected" && sub.state === "subscribed" && calls.length > before, 15_000);
  assert.ok(calls.slice(before).some((x) => x.reason === "reconnect"));
  await c.send(ch, "still here");
  await waitFor("the message", () => got.length === 1);
  // HTTP calls carry the fresh token (the first one is refused by now).
  await waitFor("the message in history", async () => (await c.history(ch)).messages.length === 1, 15_000, 250);
  c.close();

  // An expired token and no getToken: retrying cannot help.
  const expired = signJwt({ sub: alice, exp: Math.floor(Date.now() / 1000) - 120 }, DEV_SECRET);
  const stale = track(new ChatClient({ url: mesh.gatewayUrls, WebSocket, token: expired }));
  await assert.rejects(stale.connect(), (e: unknown) => e instanceof ChatError && e.code === "token_expired");
  assert.equal(stale.state, "disconnected");

  // A token the gateway refuses: getToken is asked again and the client gets in.
  const forged = signJwt({ sub: alice, exp: Math.floor(Date.now() / 1000) + 3600 }, "not-the-secret");
  const reasons: string[] = [];
  const healed = track(
    client(mesh, alice, {
      token: forged,
      getToken: async ({ reason }) => {
        reasons.push(reason);
        return mesh.devToken(alice);
      },
    }),
  );
  await healed.connect();
  assert.deepEqual(reasons, ["reconnect"]);
  const refusedForever = track(new ChatClient({ url: mesh.gatewayUrls, WebSocket, token: forged }));
  await assert.rejects(refusedForever.connect(), (e: unknown) => e instanceof ChatError && e.code === "unauthorized");
});

meshTest("missed pongs reveal a dead connection; the client reconnects and catches up", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("deadconn", [alice, bob]);
  let blackout = false;
  const c = track(
    client(mesh, alice, {
      pingIntervalMs: 300,
      pongTimeoutMs: 700,
      // A half-open connection: nothing more arrives, and nothing says so.
      hooks: { incoming: () => !blackout },
    }),
  );
  const s = track(client(mesh, bob));
  const reconnects: string[] = [];
  let blackoutAt = 0;
  let detectedAfter = 0;
  c.on("reconnecting", (info) => {
    reconnects.push(info.reason);
    if (blackout) {
      detectedAfter = Date.now() - blackoutAt;
      blackout = false;
    }
  });
  await Promise.all([c.connect(), s.connect()]);
  const sub = c.subscribe(ch);
  const got = collect(sub);
  await sub.ready();
  await sendAll(s, ch, range(5, "lit"));
  await waitFor("5 messages", () => got.length === 5);
  blackout = true;
  blackoutAt = Date.now();
  await sendAll(s, ch, range(5, "dark"));
  await waitFor("the dead connection noticed", () => reconnects.length > 0, 10_000);
  assert.match(reconnects[0] ?? "", /no pong/);
  assert.ok(detectedAfter < 300 + 700 + 600, `noticed after ${detectedAfter}ms`);
  await waitFor("the messages missed meanwhile", () => got.length === 10, 15_000);
  assertInOrderOnce(got, "alice");
  assert.deepEqual(got.map((m) => m.body), [...range(5, "lit"), ...range(5, "dark")]);
});

meshTest("a jump of the wall clock (a host that slept) is noticed", 60_000, async () => {
  const alice = user("alice");
  const ch = await newChannel("sleep", [alice]);
  let offset = 0;
  const pings: number[] = [];
  const c = track(
    client(mesh, alice, {
      now: () => Date.now() + offset,
      hooks: {
        outgoing(frame) {
          if (frame.type === "ping") pings.push(Date.now());
        },
      },
    }),
  );
  const wakes: number[] = [];
  const reconnects: string[] = [];
  c.on("wake", (w) => wakes.push(w.sleptMs));
  c.on("reconnecting", (r) => reconnects.push(r.reason));
  await c.connect();
  const sub = c.subscribe(ch);
  const got = collect(sub);
  await sub.ready();

  // A short nap: check the connection at once with a ping, keep it.
  const napAt = Date.now();
  offset += 10_000;
  await waitFor("the nap noticed", () => wakes.length === 1, 5_000);
  assert.ok((wakes[0] ?? 0) >= 10_000);
  await waitFor("a ping right away", () => pings.some((t) => t >= napAt), 2_000);
  await sleep(500);
  assert.deepEqual(reconnects, []);

  // Longer than the session TTL: the session is gone; start over.
  offset += 60_000;
  await waitFor("the sleep noticed", () => wakes.length === 2, 5_000);
  assert.ok((wakes[1] ?? 0) >= 60_000);
  await waitFor("a reconnect", () => reconnects.length > 0, 5_000);
  assert.ok(reconnects.every((r) => /slept/.test(r)), reconnects.join("; "));
  await waitFor("subscribed again", () => c.state === "connected" && sub.state === "subscribed", 15_000);
  await c.send(ch, "awake");
  await waitFor("the message", () => got.length === 1);
  assert.equal(wakes.length, 2, "one wake per sleep, however many connections noticed it");
});

meshTest("presence events and online()", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("presence", [alice, bob]);
  const a = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  await a.connect();
  const sa = a.subscribe(ch);
  const events: string[] = [];
  sa.on("presence", (e) => events.push(`${e.user_id}:${e.event}`));
  await sa.ready();
  await b.connect();
  await b.subscribe(ch).ready();
  await waitFor("bob's join", () => events.includes(`${bob}:join`), 15_000);
  await waitFor("both online", async () => (await sa.online()).sort().join() === [alice, bob].sort().join(), 15_000, 250);
  const users = await a.presence([alice, bob]);
  assert.deepEqual(users.map((u) => [u.user_id, u.online]), [[alice, true], [bob, true]]);
  b.close();
  await waitFor("bob's leave", () => events.includes(`${bob}:leave`), 15_000);
  await waitFor("only alice online", async () => (await sa.online()).join() === alice, 15_000, 250);
});

meshTest("media: create, PUT to the signed URL, complete, attach, download", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("media", [alice, bob]);
  const a = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  await Promise.all([a.connect(), b.connect()]);
  const sb = b.subscribe(ch);
  const got = collect(sb);
  await sb.ready();
  const bytes = randomBytes(4096);
  const media = await a.uploadMedia(ch, bytes, { filename: "../cat.png", contentType: "image/png" });
  assert.equal(media.state, "ready");
  assert.equal(media.size, 4096);
  assert.equal(media.filename, "cat.png");
  await a.send(ch, "a cat", { attachments: [media.media_id] });
  await waitFor("the message", () => got.length === 1);
  assert.deepEqual(got[0]?.attachments, [media.media_id]);
  assert.equal((await b.getMedia(media.media_id)).uploader_id, alice);
  const { download_url } = await b.mediaDownloadUrl(media.media_id);
  const downloaded = Buffer.from(await (await fetch(download_url)).arrayBuffer());
  assert.ok(downloaded.equals(bytes));
  await assert.rejects(a.uploadMedia(ch, bytes, { filename: "x.html", contentType: "text/html" }), (e: unknown) => e instanceof ChatError && e.code === "invalid_request");
});

/** For assert.rejects: a ChatError with `code` and HTTP `status` that is not retryable. */
function refused(code: string, status: number): (e: unknown) => boolean {
  return (e: unknown) => {
    if (!(e instanceof ChatError)) return false;
    assert.deepEqual([e.code, e.status, e.retryable], [code, status, false], e.message);
    return true;
  };
}

/** `[user_id, role]` of each member, in the order the gateway lists them. */
async function roles(c: ChatClient, channel: string): Promise<[string, string][]> {
  return (await c.members(channel)).map((m) => [m.user_id, m.role]);
}

/** `[channel_id, role]` of each of the caller's channels, by channel ID. */
async function mine(c: ChatClient): Promise<[string, string | null][]> {
  return (await c.channels()).map((ch): [string, string | null] => [ch.channel_id, ch.role]).sort((x, y) => x[0].localeCompare(y[0]));
}

meshTest("channels: a private channel's creator owns it; others get in only when an owner adds them", 60_000, async () => {
  const owner = user("cora");
  const guest = user("dan");
  const ch = `chan-${mesh.run}-private`;
  const a = track(client(mesh, owner));
  const b = track(client(mesh, guest));
  const created = await a.createChannel({ channelId: ch, name: "Private room" });
  assert.deepEqual(
    { ...created, created_at_ms: 0 },
    { channel_id: ch, name: "Private room", visibility: "private", created_by: owner, created_at_ms: 0, role: "owner" },
  );
  assert.ok(Math.abs(created.created_at_ms - Date.now()) < 60_000, `created_at_ms ${created.created_at_ms}`);
  assert.deepEqual(await a.channels(), [created]);
  assert.deepEqual(await a.channel(ch), created);
  assert.deepEqual(await roles(a, ch), [[owner, "owner"]]);
  await assert.rejects(a.createChannel({ channelId: ch }), refused("already_exists", 409));

  // Not a member: not listed, not readable, and no way in of one's own.
  assert.deepEqual(await b.channels(), []);
  await assert.rejects(b.channel(ch), refused("not_member", 403));
  await assert.rejects(b.members(ch), refused("not_member", 403));
  await assert.rejects(b.joinChannel(ch), refused("private_channel", 403));
  await assert.rejects(b.addMember(ch, guest), refused("not_owner", 403));
  await Promise.all([a.connect(), b.connect()]);
  await assert.rejects(b.subscribe(ch).ready(), (e: unknown) => e instanceof ChatError && e.code === "not_member");

  // The owner adds them; adding again changes nothing.
  assert.equal(await a.addMember(ch, guest), true);
  assert.equal(await a.addMember(ch, guest), false);
  assert.deepEqual(await mine(b), [[ch, "member"]]);
  assert.equal((await b.channel(ch)).role, "member");
  assert.deepEqual(await roles(b, ch), [[owner, "owner"], [guest, "member"]]);
  // A member who is not an owner adds and removes no one.
  await assert.rejects(b.addMember(ch, user("erin")), refused("not_owner", 403));
  await assert.rejects(b.removeMember(ch, owner), refused("not_owner", 403));

  const sa = a.subscribe(ch);
  const sb = b.subscribe(ch);
  const gotA = collect(sa);
  const gotB = collect(sb);
  await Promise.all([sa.ready(), sb.ready()]);
  await b.send(ch, "thanks for adding me");
  await a.send(ch, "welcome");
  await waitFor("both messages at both clients", () => gotA.length === 2 && gotB.length === 2);
  assert.deepEqual(gotA.map((m) => [m.sender_id, m.body]), [[guest, "thanks for adding me"], [owner, "welcome"]]);
  assert.deepEqual(gotB.map((m) => m.message_id), gotA.map((m) => m.message_id));
});

meshTest("channels: public channels are listed by ID, a page at a time, and anyone can join and leave them", 60_000, async () => {
  const owner = user("fay");
  const visitor = user("gil");
  const prefix = `chan-${mesh.run}-pub`;
  const first = `${prefix}-1`;
  const second = `${prefix}-2`;
  const a = track(client(mesh, owner));
  const b = track(client(mesh, visitor));
  const made = await a.createChannel({ channelId: first, name: "First", visibility: "public" });
  assert.deepEqual([made.visibility, made.role, made.name], ["public", "owner", "First"]);
  await a.createChannel({ channelId: second, visibility: "public" });
  // A private channel between them in ID order stays out of the list.
  await a.createChannel({ channelId: `${prefix}-1a`, visibility: "private" });

  // The directory is shared with other runs: start just before this run's IDs.
  const page1 = await b.publicChannels({ after: prefix, limit: 1 });
  assert.deepEqual(page1.channels.map((c) => [c.channel_id, c.visibility, c.role, c.created_by]), [[first, "public", null, owner]]);
  assert.notEqual(page1.next_after, null);
  const page2 = await b.publicChannels({ after: page1.next_after ?? "", limit: 1 });
  assert.deepEqual(page2.channels.map((c) => c.channel_id), [second]);
  const listed: string[] = [];
  for await (const page of b.publicChannelPages({ after: prefix, limit: 2 })) {
    const ours = page.channels.filter((c) => c.channel_id.startsWith(prefix));
    listed.push(...ours.map((c) => c.channel_id));
    if (ours.length < page.channels.length) break;
  }
  assert.deepEqual(listed, [first, second]);
  await assert.rejects(b.publicChannels({ limit: 101 }), refused("invalid_request", 400));
  // The owner sees their role in the list too.
  assert.deepEqual((await a.publicChannels({ after: prefix, limit: 2 })).channels.map((c) => c.role), ["owner", "owner"]);

  // Anyone may read a public channel, and join it.
  assert.equal((await b.channel(first)).role, null);
  assert.equal(await b.joinChannel(first), true);
  assert.equal(await b.joinChannel(first), false);
  assert.deepEqual(await mine(b), [[first, "member"]]);
  assert.deepEqual(await roles(b, first), [[owner, "owner"], [visitor, "member"]]);
  await Promise.all([a.connect(), b.connect()]);
  const sub = b.subscribe(first);
  const got = collect(sub);
  await sub.ready();
  await a.send(first, "hello, whoever joins");
  await waitFor("the message", () => got.length === 1);
  await sub.unsubscribe();

  assert.equal(await b.leaveChannel(first), true);
  assert.equal(await b.leaveChannel(first), false);
  assert.deepEqual(await b.channels(), []);
  assert.equal((await b.channel(first)).role, null, "still readable: it is public");
  assert.deepEqual(await roles(a, first), [[owner, "owner"]]);
});

meshTest("channels: when the last owner leaves, the longest-standing member becomes owner", 60_000, async () => {
  const owner = user("hal");
  const early = user("ivy");
  const late = user("jon");
  const ch = `chan-${mesh.run}-handover`;
  const h = track(client(mesh, owner));
  const i = track(client(mesh, early));
  const j = track(client(mesh, late));
  await h.createChannel({ channelId: ch });
  assert.equal(await h.addMember(ch, early), true);
  const earlyJoined = (await h.members(ch)).find((m) => m.user_id === early)?.joined_at_ms ?? Number.POSITIVE_INFINITY;
  // Join times are in milliseconds: make the second join strictly later.
  await waitFor("the clock past the first join", () => Date.now() > earlyJoined, 5_000, 1);
  assert.equal(await h.addMember(ch, late), true);
  const members = await h.members(ch);
  const joined = (u: string) => members.find((m) => m.user_id === u)?.joined_at_ms ?? 0;
  assert.ok(joined(owner) <= joined(early) && joined(early) < joined(late), JSON.stringify(members));

  // The only owner leaves: the member who joined first takes over.
  assert.equal(await h.leaveChannel(ch), true);
  assert.equal(await h.leaveChannel(ch), false);
  assert.deepEqual(await h.channels(), []);
  await assert.rejects(h.channel(ch), refused("not_member", 403));
  assert.deepEqual(await roles(i, ch), [[early, "owner"], [late, "member"]]);
  assert.deepEqual(await mine(i), [[ch, "owner"]]);
  await assert.rejects(j.removeMember(ch, early), refused("not_owner", 403));

  // An owner removing themselves leaves as well, and hands over the same way.
  assert.equal(await i.removeMember(ch, early), true);
  assert.deepEqual(await roles(j, ch), [[late, "owner"]]);
  assert.deepEqual(await mine(j), [[ch, "owner"]]);
  // The new owner adds people again.
  assert.equal(await j.addMember(ch, owner), true);
  assert.deepEqual(await mine(h), [[ch, "member"]]);
});

meshTest("channels: a member an owner removes no longer lists the channel and cannot send to it", 60_000, async () => {
  const owner = user("kim");
  const guest = user("lee");
  const ch = `chan-${mesh.run}-remove`;
  const k = track(client(mesh, owner));
  const l = track(client(mesh, guest));
  await k.createChannel({ channelId: ch, name: "Team" });
  assert.equal(await k.addMember(ch, guest), true);
  await l.connect();
  const sub = l.subscribe(ch);
  await sub.ready();
  await l.send(ch, "glad to be here");
  assert.deepEqual(await mine(l), [[ch, "member"]]);

  assert.equal(await k.removeMember(ch, guest), true);
  assert.equal(await k.removeMember(ch, guest), false);
  assert.deepEqual(await l.channels(), []);
  await assert.rejects(l.channel(ch), refused("not_member", 403));
  await assert.rejects(l.members(ch), refused("not_member", 403));
  await assert.rejects(l.send(ch, "still here?"), (e: unknown) => e instanceof ChatError && e.code === "not_member" && !e.retryable);
  assert.deepEqual(await roles(k, ch), [[owner, "owner"]]);
});

meshTest("message changes: a subscriber sees each edit, reaction and delete in order, and history shows the result", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("changes", [alice, bob]);
  const a = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  await Promise.all([a.connect(), b.connect()]);
  const sub = b.subscribe(ch);
  const got = collect(sub);
  await sub.ready();

  const first = await a.send(ch, "see you at 5");
  const second = await a.send(ch, "wrong channel, sorry");
  const edit = await a.edit(ch, first.seq, "see you at 7");
  const reaction = await b.react(ch, first.seq, "👍");
  const deletion = await a.delete(ch, second.seq);

  // Storage applies the changes after they are durable: wait for history
  // to show them, posts only, each in its current state.
  const summary = (m: Message) => [m.seq, m.body, m.edit_count, m.deleted, m.reactions, m.attachments];
  const expected = [
    [first.seq, "see you at 7", 1, undefined, [{ emoji: "👍", count: 1, me: true }], undefined],
    [second.seq, "", undefined, true, undefined, undefined],
  ];
  const applied = (page: { messages: Message[] }) =>
    page.messages.find((m) => m.seq === first.seq)?.version === reaction.seq && page.messages.some((m) => m.seq === second.seq && m.deleted);
  await waitFor("the changes in history", async () => applied(await b.history(ch)), 30_000, 250);
  const page = await b.history(ch);
  assert.deepEqual(page.messages.map(summary), expected);
  assert.ok((page.messages[0]?.edited_at_ms ?? 0) >= (page.messages[0]?.created_at_ms ?? Infinity));
  assert.equal(page.messages[1]?.version, deletion.seq);
  // Alice reads the same post without her own reaction.
  assert.deepEqual((await a.history(ch)).messages[0]?.reactions, [{ emoji: "👍", count: 1, me: false }]);

  const refusal = (code: string) => (e: unknown) => e instanceof ChatError && e.code === code && !e.retryable;
  await assert.rejects(b.edit(ch, first.seq, "see you never"), refusal("forbidden"));
  await assert.rejects(b.react(ch, second.seq, "👍"), refusal("not_found"));
  // A delete made again succeeds, as an event of its own that changes nothing.
  const again = await a.delete(ch, second.seq);

  await waitFor("the posts and their changes", () => got.length >= 6);
  assertInOrderOnce(got, "bob");
  assert.deepEqual(
    got.map((m) => [m.seq, m.sender_id, m.kind, m.target_seq, m.body, m.emoji]),
    [
      [first.seq, alice, undefined, undefined, "see you at 5", undefined],
      [second.seq, alice, undefined, undefined, "wrong channel, sorry", undefined],
      [edit.seq, alice, "edit", first.seq, "see you at 7", undefined],
      [reaction.seq, bob, "reaction_add", first.seq, "", "👍"],
      [deletion.seq, alice, "delete", second.seq, "", undefined],
      [again.seq, alice, "delete", second.seq, "", undefined],
    ],
  );

  // Folded in order, the live events give the state history shows.
  const state = new MessageState({ userId: bob });
  for (const m of got) state.apply(m);
  assert.deepEqual(state.posts.map(summary), expected);
  assert.equal(state.get(first.seq)?.version, reaction.seq);
  assert.equal(state.get(second.seq)?.version, deletion.seq);
});

meshTest("threads: replies name their thread's first message, which counts them, and thread() pages them", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("threads", [alice, bob]);
  const a = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  await Promise.all([a.connect(), b.connect()]);
  const sub = b.subscribe(ch);
  const got = collect(sub);
  await sub.ready();

  const root = await a.send(ch, "lunch?");
  const yes = await b.send(ch, "yes", { replyTo: root.seq });
  const where = await a.send(ch, "where?", { replyTo: yes.seq });
  await waitFor("three messages", () => got.length >= 3);
  assert.deepEqual(
    got.map((m) => [m.seq, m.reply_to]),
    [
      [root.seq, undefined],
      [yes.seq, root.seq],
      [where.seq, root.seq],
    ],
  );
  await waitFor("the thread counted", async () => (await b.history(ch)).messages[0]?.reply_count === 2, 30_000, 250);
  const thread = await a.thread(ch, root.seq, { limit: 10 });
  assert.deepEqual(thread.messages.map((m) => m.seq), [yes.seq, where.seq]);
  assert.equal(thread.has_more, false);
  await assert.rejects(
    b.send(ch, "hello?", { replyTo: where.seq + 100 }),
    (e: unknown) => e instanceof ChatError && e.code === "not_found" && !e.retryable,
  );
});

meshTest("message changes over HTTP: each answers its event, and a repeated key the original", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("changes-http", [alice, bob]);
  const a = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  await a.connect();
  const { seq } = await a.send(ch, "see you at 5");
  const edited = await a.http.editMessage(ch, seq, "see you at 7", { idempotencyKey: "edit-1" });
  assert.deepEqual([edited.event.kind, edited.event.target_seq, edited.event.body, edited.duplicate], ["edit", seq, "see you at 7", false]);
  const again = await a.http.editMessage(ch, seq, "see you at 7", { idempotencyKey: "edit-1" });
  assert.deepEqual([again.event.seq, again.duplicate], [edited.event.seq, true]);
  const added = await b.http.addReaction(ch, seq, "👍");
  assert.deepEqual([added.event.kind, added.event.emoji, added.event.sender_id], ["reaction_add", "👍", bob]);
  const removed = await b.http.removeReaction(ch, seq, "👍");
  assert.equal(removed.event.kind, "reaction_remove");
  await assert.rejects(b.http.deleteMessage(ch, seq), refused("forbidden", 403));
  const deleted = await a.http.deleteMessage(ch, seq);
  assert.deepEqual([deleted.event.kind, deleted.event.target_seq], ["delete", seq]);
  await waitFor("the delete in history", async () => (await a.history(ch)).messages[0]?.deleted === true, 30_000, 250);
  assert.equal((await a.history(ch)).messages[0]?.version, deleted.event.seq);
});

meshTest("read state: markRead moves the position, unread counts posts and mentions on every session", 60_000, async () => {
  const alice = user("alice");
  const bob = user("bob");
  const ch = await newChannel("reads", [alice, bob]);
  const a1 = track(client(mesh, alice));
  const a2 = track(client(mesh, alice));
  const b = track(client(mesh, bob));
  await Promise.all([a1.connect(), a2.connect(), b.connect()]);
  const first = await b.send(ch, "one");
  await b.react(ch, first.seq, "👍");
  const second = await b.send(ch, `two @${alice}`);
  await b.send(ch, "three");
  const counts = async (c: ChatClient) => {
    const u = await c.unread([ch]);
    return [u.channels[0]?.unread, u.channels[0]?.mentions, u.total, u.mentions];
  };
  await waitFor("three unread posts", async () => JSON.stringify(await counts(a2)) === JSON.stringify([3, 1, 3, 1]), 30_000, 100);
  // Bob, watching the channel, gets alice's read receipt.
  const watch = b.subscribe(ch);
  const receipts: number[] = [];
  watch.on("read", (e) => {
    if (e.user_id === alice) receipts.push(e.seq);
  });
  await watch.ready();
  assert.equal(await a1.markRead(ch, second.seq), second.seq);
  await waitFor("alice's receipt at bob", () => receipts.includes(second.seq), 10_000);
  // The other session sees it at once; an older position is kept.
  assert.deepEqual(await counts(a2), [1, 0, 1, 0]);
  assert.equal(await a2.markRead(ch, first.seq), second.seq);
  assert.deepEqual(await a1.http.unread([ch]).then((u) => u.channels.map((c) => c.read_seq)), [second.seq]);
  const positions = await b.http.readPositions(ch);
  assert.equal(positions.find((r) => r.user_id === alice)?.seq, second.seq);
  const mentions = await a1.http.mentions({ channel: ch });
  assert.deepEqual(mentions.messages.map((m) => [m.seq, m.mentions]), [[second.seq, [alice]]]);
  await assert.rejects(track(client(mesh, user("mallory"))).http.markRead(ch, 1), refused("not_member", 403));
});

meshTest("the gateway's OpenAPI document has every route and method the SDK's HTTP helpers call", 30_000, async () => {
  const c = track(client(mesh, user("otto")));
  const doc = await c.openApi();
  assert.match(doc.openapi, /^3\.1\./);
  const calls: [string, string][] = [
    ["get", "/v1/channels"],
    ["post", "/v1/channels"],
    ["get", "/v1/public-channels"],
    ["get", "/v1/channels/{channel}"],
    ["post", "/v1/channels/{channel}/join"],
    ["post", "/v1/channels/{channel}/leave"],
    ["get", "/v1/channels/{channel}/members"],
    ["post", "/v1/channels/{channel}/members"],
    ["delete", "/v1/channels/{channel}/members/{user}"],
    ["get", "/v1/channels/{channel}/messages"],
    ["get", "/v1/channels/{channel}/messages/{seq}/thread"],
    ["patch", "/v1/channels/{channel}/messages/{seq}"],
    ["delete", "/v1/channels/{channel}/messages/{seq}"],
    ["put", "/v1/channels/{channel}/messages/{seq}/reactions/{emoji}"],
    ["delete", "/v1/channels/{channel}/messages/{seq}/reactions/{emoji}"],
    ["get", "/v1/channels/{channel}/online"],
    ["get", "/v1/presence"],
    ["get", "/v1/route/{channel}"],
    ["post", "/v1/channels/{channel}/media"],
    ["get", "/v1/media/{media}"],
    ["post", "/v1/media/{media}/complete"],
    ["get", "/v1/media/{media}/download"],
    ["post", "/v1/dev/token"],
    ["put", "/v1/channels/{channel}/read"],
    ["get", "/v1/channels/{channel}/reads"],
    ["get", "/v1/unread"],
    ["get", "/v1/mentions"],
  ];
  const missing = calls.filter(([method, path]) => doc.paths[path]?.[method] === undefined);
  assert.deepEqual(missing, []);
});

meshTest("reload_required: the range is paged from history and delivered in order", 180_000, async () => {
  const alice = user("alice");
  const ch = await newChannel("reload", [alice]);
  // More than the gateway replays (1,000), straight into the chat service.
  const total = 1_005;
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < total) {
        const i = next++;
        await mesh.sendViaChat(ch, alice, `old-${i}`);
      }
    }),
  );
  console.log(`${total} messages sent through chat in ${Date.now() - started}ms`);
  const probe = track(client(mesh, alice));
  await waitFor("storage caught up", async () => (await stored(probe, ch)).length === total, 60_000, 500);

  // Default: the event, with a helper that loads the range.
  const manual = track(client(mesh, alice));
  await manual.connect();
  const ms = manual.subscribe(ch, { lastSeq: 0 });
  const manualEvents: ReloadRequiredEvent[] = [];
  ms.on("reload_required", (e) => manualEvents.push(e));
  await ms.ready();
  await waitFor("reload_required", () => manualEvents.length === 1);
  assert.deepEqual([manualEvents[0]?.from_seq, manualEvents[0]?.to_seq], [1, total]);
  const loaded = (await manualEvents[0]?.fill()) ?? [];
  assert.equal(loaded.length, total);
  assertInOrderOnce(loaded, "fill()");
  assert.equal(ms.lastSeq, total);

  // reload: "fill": the client loads and delivers the range itself.
  const c = track(client(mesh, alice, { reload: "fill" }));
  await c.connect();
  const sub = c.subscribe(ch, { lastSeq: 0 });
  const got = collect(sub);
  const events: ReloadRequiredEvent[] = [];
  sub.on("reload_required", (e) => events.push(e));
  await waitFor(`${total} messages from history`, () => got.length === total, 60_000);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.filled, total);
  await c.send(ch, "live");
  await waitFor("the live message", () => got.length === total + 1);
  assertInOrderOnce(got, "alice");
  // Sent concurrently: the bodies' order is the service's, the numbers dense.
  assert.deepEqual(got.map((m) => m.seq), Array.from({ length: total + 1 }, (_, i) => i + 1));
  assert.deepEqual(new Set(got.slice(0, total).map((m) => m.body)), new Set(range(total, "old")));
  assert.equal(got[total]?.body, "live");

  await waitFor("the live message stored", async () => (await stored(c, ch)).length === total + 1, 30_000, 500);
  let pages = 0;
  let count = 0;
  for await (const page of c.historyPages(ch, { limit: 100 })) {
    pages++;
    count += page.messages.length;
  }
  assert.equal(count, total + 1);
  assert.equal(pages, Math.ceil((total + 1) / 100));
});

meshTest("a client whose gateway is SIGKILLed reconnects on its own and ends with all 250 in order", 180_000, async () => {
  const receiver = user("rita");
  const sender = user("sam");
  const ch = await newChannel("kill", [sender, receiver], "gw-1");
  const r = track(client(mesh, receiver));
  // The sender talks to gw-0 only and never subscribes: the kill does not touch it.
  const s = track(client(mesh, sender, { url: [mesh.gatewayUrl(0)] }));
  await Promise.all([r.connect(), s.connect()]);
  const sub = r.subscribe(ch);
  const got = collect(sub);
  await sub.ready();
  assert.equal(channelUrl(r, ch), mesh.gatewayUrl(1));

  const bodies = range(250, "m");
  await sendAll(s, ch, bodies.slice(0, 200));
  await waitFor("200 messages", () => got.length === 200, 60_000);
  const reconnects: string[] = [];
  r.on("reconnecting", (i) => reconnects.push(`${i.url} ${i.reason}`));
  const killedAt = Date.now();
  await mesh.kill("gw-1");
  await sendAll(s, ch, bodies.slice(200));
  await waitFor("all 250 messages", () => got.length >= 250, 60_000);
  console.log(`receiver caught up ${Date.now() - killedAt}ms after the kill (${reconnects.length} reconnect attempts)`);
  await sleep(300);
  assert.equal(got.length, 250);
  assertInOrderOnce(got, "receiver");
  assert.deepEqual(got.map((m) => m.body), bodies);
  assert.ok(reconnects.length > 0);
  assert.equal(channelUrl(r, ch), mesh.gatewayUrl(0), "the channel moved to the surviving node");

  // gw-1 comes back: the ring gives it the channel again, and gw-0 sends a
  // `reconnect` frame naming it; the client follows.
  const moved: string[] = [];
  r.on("moved", (m) => moved.push(`${m.reason} -> ${m.to}`));
  await mesh.restart("gw-1");
  await mesh.waitRing();
  await waitFor("the channel back on gw-1", () => channelUrl(r, ch) === mesh.gatewayUrl(1) && sub.state === "subscribed", 20_000);
  assert.ok(moved.includes(`channel moved to another node -> ${mesh.gatewayUrl(1)}`), moved.join("; "));
  await s.send(ch, "home again");
  await waitFor("251 messages", () => got.length === 251);
  assertInOrderOnce(got, "receiver");
});

meshTest("a draining gateway's reconnect frame is followed, to the owner looked up by route", 120_000, async () => {
  const receiver = user("rita");
  const sender = user("sam");
  const ch = await newChannel("drain", [sender, receiver], "gw-1");
  const r = track(client(mesh, receiver));
  const s = track(client(mesh, sender, { url: [mesh.gatewayUrl(0)] }));
  await Promise.all([r.connect(), s.connect()]);
  const sub = r.subscribe(ch);
  const got = collect(sub);
  await sub.ready();
  assert.equal(channelUrl(r, ch), mesh.gatewayUrl(1));
  const moved: { reason: string; from: string; to: string }[] = [];
  r.on("moved", (m) => moved.push(m));

  const bodies = range(60, "d");
  const sending = (async () => {
    for (const [i, body] of bodies.entries()) {
      await s.send(ch, body);
      if (i === 10) void mesh.terminate("gw-1");
      await sleep(20);
    }
  })();
  await sending;
  await waitFor("60 messages", () => got.length === 60, 30_000);
  assertInOrderOnce(got, "receiver");
  assert.deepEqual(got.map((m) => m.body), bodies);
  assert.ok(
    moved.some((m) => m.reason === "node shutting down" && m.from === mesh.gatewayUrl(1) && m.to === mesh.gatewayUrl(0)),
    JSON.stringify(moved),
  );
  await waitFor("gw-1 exited", () => !mesh.isRunning("gw-1"), 20_000);
  await mesh.restart("gw-1");
  await mesh.waitRing();
  await waitFor("the channel back on gw-1", () => channelUrl(r, ch) === mesh.gatewayUrl(1) && sub.state === "subscribed", 20_000);
  await s.send(ch, "after the drain");
  await waitFor("61 messages", () => got.length === 61);
  assertInOrderOnce(got, "receiver");
});
