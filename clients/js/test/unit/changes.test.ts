// Message changes without a network: the frames `edit`, `delete`, `react`
// and `unreact` send over an in-memory WebSocket, how their acks and errors
// settle them, and the MessageState reducer.
import assert from "node:assert/strict";
import test from "node:test";

import { ChatClient, ChatError, MessageState, type ClientOptions, type Message, type SendAckFrame } from "../../src/index.js";
import { fakeSockets, type FakeSocket } from "../harness/fake-socket.js";
import { waitFor } from "../harness/util.js";

/** A connected client on a fake socket; `random: () => 0` makes retry delays minimal. */
async function connected(options: Partial<ClientOptions> = {}): Promise<{ c: ChatClient; socket: FakeSocket; next: (n: number) => Promise<FakeSocket> }> {
  const fake = fakeSockets();
  const c = new ChatClient({
    url: "ws://127.0.0.1:9",
    token: "t",
    WebSocket: fake.WebSocket,
    fetch: async () => new Response(null, { status: 500 }),
    random: () => 0,
    ...options,
  });
  const ready = c.connect();
  const socket = await fake.next(1);
  await ready;
  return { c, socket, next: fake.next };
}

function ack(requestId: string, seq: number): SendAckFrame {
  return { type: "ack", request_id: requestId, channel_id: "lobby", message_id: String(1000 + seq), seq, masked: false, duplicate: false };
}

/** The `index`th frame (pings left out) the client sent, once it has. */
async function sentFrame(socket: FakeSocket, index: number): Promise<Record<string, unknown> & { request_id: string }> {
  const frames = () => socket.sent.filter((f) => f.type !== "ping");
  await waitFor(`frame ${index}`, () => frames().length > index, 2_000, 5);
  const frame = frames()[index];
  if (!frame?.request_id) throw new Error(`frame ${index} has no request ID`);
  return { ...frame, request_id: frame.request_id };
}

test("changes: edit, delete, react and unreact send their frames and resolve with the ack", async () => {
  const { c, socket } = await connected();
  const cases: [() => Promise<unknown>, Record<string, unknown>][] = [
    [() => c.edit("lobby", 42, "hi, all", { idempotencyKey: "k-edit" }), { type: "edit", channel_id: "lobby", seq: 42, body: "hi, all", idempotency_key: "k-edit" }],
    [() => c.delete("lobby", 41, { idempotencyKey: "k-del" }), { type: "delete", channel_id: "lobby", seq: 41, idempotency_key: "k-del" }],
    [() => c.react("lobby", 42, "👍", { idempotencyKey: "k-add" }), { type: "react", channel_id: "lobby", seq: 42, emoji: "👍", idempotency_key: "k-add" }],
    [() => c.unreact("lobby", 42, "👍", { idempotencyKey: "k-rm" }), { type: "react", channel_id: "lobby", seq: 42, emoji: "👍", remove: true, idempotency_key: "k-rm" }],
  ];
  for (const [index, [call, expected]] of cases.entries()) {
    const done = call();
    const frame = await sentFrame(socket, index);
    const { request_id, ...rest } = frame;
    assert.deepEqual(rest, expected);
    assert.equal(typeof request_id, "string");
    socket.receive(ack(request_id, 50 + index));
    assert.deepEqual(await done, { channel_id: "lobby", message_id: String(1050 + index), seq: 50 + index, masked: false, duplicate: false });
  }
  // Without a key, one is made up.
  const done = c.react("lobby", 42, "🎉");
  const frame = await sentFrame(socket, cases.length);
  assert.match(String(frame["idempotency_key"]), /^[0-9a-f-]{32,36}$/);
  socket.receive(ack(frame.request_id, 60));
  await done;
  c.close();
});

test("changes: a retryable error sends the change again with the same key", async () => {
  const { c, socket } = await connected();
  const done = c.edit("lobby", 42, "again", { idempotencyKey: "k1" });
  const first = await sentFrame(socket, 0);
  socket.receive({ type: "error", request_id: first.request_id, code: "rate_limited", message: "slow down", retryable: true });
  const second = await sentFrame(socket, 1);
  socket.receive({ type: "error", request_id: second.request_id, code: "unavailable", message: "chat is down", retryable: true });
  const third = await sentFrame(socket, 2);
  socket.receive(ack(third.request_id, 43));
  assert.equal((await done).seq, 43);
  assert.deepEqual([first, second, third].map((f) => [f["type"], f["idempotency_key"]]), [["edit", "k1"], ["edit", "k1"], ["edit", "k1"]]);
  assert.equal(new Set([first.request_id, second.request_id, third.request_id]).size, 3, "each attempt has a request ID of its own");
  c.close();
});

test("changes: a lost connection sends the change again, with the same key, on the next one", async () => {
  const { c, socket, next } = await connected();
  const done = c.delete("lobby", 7, { idempotencyKey: "k-lost" });
  const first = await sentFrame(socket, 0);
  socket.drop();
  const again = await next(2);
  const second = await sentFrame(again, 0);
  assert.deepEqual([second["type"], second["seq"], second["idempotency_key"]], ["delete", 7, "k-lost"]);
  // The first attempt's answer can no longer arrive; the second settles it.
  again.receive({ ...ack(second.request_id, 9), duplicate: true });
  assert.equal((await done).duplicate, true);
  assert.equal(first["idempotency_key"], "k-lost");
  c.close();
});

test("changes: a refusal rejects at once, without a retry", async () => {
  const { c, socket } = await connected();
  const done = c.edit("lobby", 42, "not mine");
  const frame = await sentFrame(socket, 0);
  socket.receive({ type: "error", request_id: frame.request_id, code: "forbidden", message: "only its author may edit a message", retryable: false });
  await assert.rejects(done, (e: unknown) => e instanceof ChatError && e.code === "forbidden" && !e.retryable);
  // The channel's queue moves on.
  const next = c.react("lobby", 42, "👍");
  const after = await sentFrame(socket, 1);
  assert.equal(after["type"], "react");
  socket.receive(ack(after.request_id, 44));
  await next;
  assert.equal(socket.sent.filter((f) => f.type === "edit").length, 1);
  await assert.rejects(c.edit("lobby", 0, "x"), (e: unknown) => e instanceof ChatError && e.code === "invalid_frame");
  await assert.rejects(c.react("lobby", 1.5, "x"), (e: unknown) => e instanceof ChatError && e.code === "invalid_frame");
  c.close();
  await assert.rejects(c.delete("lobby", 1), (e: unknown) => e instanceof ChatError && e.code === "closed");
});

test("changes: they queue behind the channel's sends, in order", async () => {
  const { c, socket } = await connected();
  const order: string[] = [];
  const sent = c.send("lobby", "hello", { idempotencyKey: "k-send" }).then(() => order.push("send"));
  const edited = c.edit("lobby", 1, "hello, all").then(() => order.push("edit"));
  const first = await sentFrame(socket, 0);
  assert.deepEqual([first["type"], first["body"], first["idempotency_key"]], ["send", "hello", "k-send"]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(socket.sent.filter((f) => f.type !== "ping").length, 1, "the edit waits for the send's ack");
  socket.receive(ack(first.request_id, 1));
  const second = await sentFrame(socket, 1);
  assert.equal(second["type"], "edit");
  socket.receive(ack(second.request_id, 2));
  await Promise.all([sent, edited]);
  assert.deepEqual(order, ["send", "edit"]);
  c.close();
});

// --- MessageState ------------------------------------------------------------

let nextId = 5000;
function post(seq: number, sender: string, body: string, extra: Partial<Message> = {}): Message {
  return { channel_id: "lobby", message_id: String(nextId++), seq, sender_id: sender, body, created_at_ms: 1000 + seq, ...extra };
}
function change(seq: number, sender: string, kind: NonNullable<Message["kind"]>, target: number, extra: Partial<Message> = {}): Message {
  return { ...post(seq, sender, "", extra), kind, target_seq: target, ...extra };
}

test("MessageState: a change at or below its target's version is skipped", () => {
  const state = new MessageState({ userId: "alice" });
  // Replayed from storage: already edited once, by the change at 47.
  state.apply(post(42, "alice", "hi, all", { edit_count: 1, edited_at_ms: 1047, version: 47 }));
  assert.equal(state.apply(change(47, "alice", "edit", 42, { body: "hi, all" })), undefined);
  assert.equal(state.apply(change(45, "bob", "reaction_add", 42, { emoji: "👍" })), undefined);
  assert.deepEqual([state.get(42)?.body, state.get(42)?.edit_count, state.get(42)?.version, state.get(42)?.reactions], ["hi, all", 1, 47, undefined]);
  const edited = state.apply(change(48, "alice", "edit", 42, { body: "hi, everyone" }));
  assert.equal(edited?.body, "hi, everyone");
  assert.equal(edited?.edit_count, 2);
  assert.equal(edited?.edited_at_ms, 1048);
  assert.equal(edited?.version, 48);
  // A change to a post the state does not hold changes nothing.
  assert.equal(state.apply(change(49, "bob", "reaction_add", 3, { emoji: "👍" })), undefined);
  // An older copy of the post does not replace the newer state.
  assert.equal(state.apply(post(42, "alice", "hi, all", { edit_count: 1, version: 47 })), undefined);
  assert.equal(state.get(42)?.body, "hi, everyone");
});

test("MessageState: an edit clears the reactions; a delete leaves a tombstone", () => {
  const state = new MessageState({ userId: "bob" });
  state.apply(post(1, "alice", "see you at 5", { attachments: ["m1"] }));
  state.apply(change(2, "bob", "reaction_add", 1, { emoji: "👍" }));
  assert.deepEqual(state.get(1)?.reactions, [{ emoji: "👍", count: 1, me: true }]);
  const edited = state.apply(change(3, "alice", "edit", 1, { body: "see you at 7" }));
  assert.equal(edited?.reactions, undefined);
  assert.deepEqual(edited?.attachments, ["m1"]);
  // A reaction after the edit counts from zero again.
  state.apply(change(4, "carol", "reaction_add", 1, { emoji: "👍" }));
  assert.deepEqual(state.get(1)?.reactions, [{ emoji: "👍", count: 1, me: false }]);

  const deleted = state.apply(change(5, "alice", "delete", 1));
  assert.equal(deleted?.deleted, true);
  assert.equal(deleted?.body, "");
  assert.equal(deleted?.attachments, undefined);
  assert.equal(deleted?.reactions, undefined);
  assert.equal(deleted?.version, 5);
  // A deleted post takes no further change; deleting it again changes nothing.
  assert.equal(state.apply(change(6, "bob", "reaction_add", 1, { emoji: "🎉" })), undefined);
  assert.equal(state.apply(change(7, "alice", "delete", 1)), undefined);
  assert.equal(state.get(1)?.version, 5);
});

test("MessageState: a reaction counts once per member and emoji", () => {
  const state = new MessageState({ userId: "alice" });
  state.apply(post(1, "alice", "lunch?"));
  state.apply(change(2, "bob", "reaction_add", 1, { emoji: "👍" }));
  assert.equal(state.apply(change(3, "bob", "reaction_add", 1, { emoji: "👍" })), undefined, "bob's second 👍");
  state.apply(change(4, "alice", "reaction_add", 1, { emoji: "👍" }));
  state.apply(change(5, "bob", "reaction_add", 1, { emoji: "🍕" }));
  assert.deepEqual(state.get(1)?.reactions, [
    { emoji: "👍", count: 2, me: true },
    { emoji: "🍕", count: 1, me: false },
  ]);
  state.apply(change(6, "alice", "reaction_remove", 1, { emoji: "👍" }));
  assert.equal(state.apply(change(7, "alice", "reaction_remove", 1, { emoji: "👍" })), undefined, "taken back twice");
  assert.equal(state.apply(change(8, "carol", "reaction_remove", 1, { emoji: "👍" })), undefined, "never given");
  state.apply(change(9, "bob", "reaction_remove", 1, { emoji: "🍕" }));
  assert.deepEqual(state.get(1)?.reactions, [{ emoji: "👍", count: 1, me: false }], "an emoji at 0 disappears");
});

test("MessageState: counts from storage take live changes; replay ends where the live stream did", () => {
  const events = [
    post(1, "alice", "hi"),
    post(2, "bob", "hello"),
    change(3, "bob", "reaction_add", 1, { emoji: "👋" }),
    change(4, "carol", "reaction_add", 1, { emoji: "👋" }),
    change(5, "bob", "edit", 2, { body: "nope" }),
    change(6, "alice", "reaction_add", 1, { emoji: "👋" }),
    change(7, "bob", "edit", 2, { body: "hello, all" }),
    change(8, "carol", "reaction_remove", 1, { emoji: "👋" }),
  ];
  const live = new MessageState({ userId: "alice" });
  for (const e of events) live.apply(e);

  // A reader that reconnects after seq 2 gets the posts as stored at
  // version 6, then every change after its last_seq, 3 to 8.
  const replay = new MessageState({ userId: "alice" });
  replay.apply(events[0] as Message);
  replay.apply(events[1] as Message);
  replay.apply({ ...(events[0] as Message), reactions: [{ emoji: "👋", count: 3, me: true }], version: 6 });
  replay.apply({ ...(events[1] as Message), body: "nope", edit_count: 1, edited_at_ms: 1005, version: 5 });
  for (const e of events.slice(2)) replay.apply(e);

  assert.deepEqual(replay.posts, live.posts);
  assert.deepEqual(live.get(1)?.reactions, [{ emoji: "👋", count: 2, me: true }]);
  assert.deepEqual(
    live.posts.map((p) => [p.seq, p.body, p.edit_count, p.version]),
    [
      [1, "hi", undefined, 8],
      [2, "hello, all", 2, 7],
    ],
  );
  assert.throws(() => live.apply({ ...post(9, "x", "y"), channel_id: "other" }), /holds channel lobby/);
});
