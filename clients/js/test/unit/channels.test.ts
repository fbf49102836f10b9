// The channel helpers' requests and answers, against a recording fetch: the
// method, path, query and body each sends, what each returns, and how an
// error envelope becomes a ChatError. The mesh tests check the behaviour.
import assert from "node:assert/strict";
import test from "node:test";

import { ChatClient, ChatError } from "../../src/index.js";

interface Seen {
  method: string;
  url: string;
  body: unknown;
  authorization: string | null;
  idempotencyKey: string | null;
}

class NeverOpens {
  readyState = 0;
  onopen = null;
  onclose = null;
  onmessage = null;
  onerror = null;
  send(): void {}
  close(): void {}
}

const channel = { channel_id: "ops", name: "Ops", visibility: "private", created_by: "alice", created_at_ms: 1, role: "owner" };

/** A client whose fetch records each request and answers with `answer(method, path)`. */
function recording(answer: (method: string, path: string) => { status: number; body: unknown }): { c: ChatClient; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input));
    const method = init?.method ?? "GET";
    const headers = new Headers(init?.headers);
    seen.push({
      method,
      url: url.pathname + url.search,
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
      authorization: headers.get("authorization"),
      idempotencyKey: headers.get("idempotency-key"),
    });
    const { status, body } = answer(method, url.pathname);
    return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  }) as typeof globalThis.fetch;
  const c = new ChatClient({ url: "ws://127.0.0.1:9", token: "t0k", WebSocket: NeverOpens, fetch, httpRetries: 0 });
  return { c, seen };
}

test("channels: each helper's request and what it returns", async () => {
  const { c, seen } = recording((method, path) => {
    if (method === "POST" && path === "/v1/channels") return { status: 201, body: { channel } };
    if (path === "/v1/channels") return { status: 200, body: { channels: [channel] } };
    if (path === "/v1/public-channels") return { status: 200, body: { channels: [], next_after: null } };
    if (path.endsWith("/join")) return { status: 200, body: { joined: true } };
    if (path.endsWith("/leave")) return { status: 200, body: { left: false } };
    if (method === "GET" && path.endsWith("/members")) return { status: 200, body: { members: [{ user_id: "alice", role: "owner", joined_at_ms: 1 }] } };
    if (method === "POST" && path.endsWith("/members")) return { status: 200, body: { added: true } };
    if (method === "DELETE") return { status: 200, body: { removed: true } };
    if (path === "/v1/openapi.json") return { status: 200, body: { openapi: "3.1.0", info: { title: "t", version: "0" }, paths: {} } };
    return { status: 200, body: { channel } };
  });
  assert.deepEqual(await c.channels(), [channel]);
  assert.deepEqual(await c.publicChannels({ after: "m", limit: 10 }), { channels: [], next_after: null });
  await c.publicChannels();
  assert.deepEqual(await c.channel("a/b"), channel);
  assert.deepEqual(await c.createChannel({ channelId: "ops", name: "Ops", visibility: "public" }), channel);
  await c.createChannel({ channelId: "bare" });
  assert.equal(await c.joinChannel("ops"), true);
  assert.equal(await c.leaveChannel("ops"), false);
  assert.deepEqual(await c.members("ops"), [{ user_id: "alice", role: "owner", joined_at_ms: 1 }]);
  assert.equal(await c.addMember("ops", "bob"), true);
  assert.equal(await c.removeMember("ops", "bob@example"), true);
  await c.openApi();
  c.close();

  assert.deepEqual(
    seen.map((s) => [s.method, s.url, s.body]),
    [
      ["GET", "/v1/channels", undefined],
      ["GET", "/v1/public-channels?after=m&limit=10", undefined],
      ["GET", "/v1/public-channels", undefined],
      ["GET", "/v1/channels/a%2Fb", undefined],
      ["POST", "/v1/channels", { channel_id: "ops", name: "Ops", visibility: "public" }],
      ["POST", "/v1/channels", { channel_id: "bare" }],
      ["POST", "/v1/channels/ops/join", undefined],
      ["POST", "/v1/channels/ops/leave", undefined],
      ["GET", "/v1/channels/ops/members", undefined],
      ["POST", "/v1/channels/ops/members", { user_id: "bob" }],
      ["DELETE", "/v1/channels/ops/members/bob%40example", undefined],
      ["GET", "/v1/openapi.json", undefined],
    ],
  );
  assert.deepEqual(
    seen.map((s) => s.authorization),
    [...Array<string>(seen.length - 1).fill("Bearer t0k"), null],
    "every call carries the token but the OpenAPI document's",
  );
});

test("message changes: each HTTP helper's request and what it returns", async () => {
  const event = { channel_id: "ops", message_id: "845129185001", seq: 47, sender_id: "alice", body: "", created_at_ms: 1, kind: "delete", target_seq: 42 };
  const { c, seen } = recording(() => ({ status: 200, body: { event, masked: false, duplicate: false } }));
  assert.deepEqual(await c.http.editMessage("ops", 42, "hi, all", { idempotencyKey: "k1" }), { event, masked: false, duplicate: false });
  await c.http.deleteMessage("ops", 42, { idempotencyKey: "k2" });
  await c.http.addReaction("a/b", 42, "👍", { idempotencyKey: "k3" });
  await c.http.removeReaction("ops", 42, "👍", { idempotencyKey: "k4" });
  await c.http.deleteMessage("ops", 43);
  c.close();
  assert.deepEqual(
    seen.map((s) => [s.method, s.url, s.body, s.idempotencyKey]),
    [
      ["PATCH", "/v1/channels/ops/messages/42", { body: "hi, all", idempotency_key: "k1" }, null],
      ["DELETE", "/v1/channels/ops/messages/42", undefined, "k2"],
      ["PUT", "/v1/channels/a%2Fb/messages/42/reactions/%F0%9F%91%8D", undefined, "k3"],
      ["DELETE", "/v1/channels/ops/messages/42/reactions/%F0%9F%91%8D", undefined, "k4"],
      ["DELETE", "/v1/channels/ops/messages/43", undefined, seen[4]?.idempotencyKey],
    ],
  );
  assert.match(seen[4]?.idempotencyKey ?? "", /^[0-9a-f-]{32,36}$/, "a change without a key gets one");
  assert.ok(seen.every((s) => s.authorization === "Bearer t0k"));
});

test("message changes: a retryable failure is retried with the same key", async () => {
  let calls = 0;
  const keys: (string | null)[] = [];
  const fetch = (async (_input: RequestInfo | URL, init?: RequestInit) => {
    calls += 1;
    keys.push(new Headers(init?.headers).get("idempotency-key"));
    if (calls === 1) return new Response(JSON.stringify({ error: { code: "unavailable", message: "down", retryable: true } }), { status: 503 });
    return new Response(JSON.stringify({ event: {}, masked: false, duplicate: true }), { status: 200 });
  }) as typeof globalThis.fetch;
  const c = new ChatClient({ url: "ws://127.0.0.1:9", token: "t", WebSocket: NeverOpens, fetch, httpRetries: 1 });
  assert.equal((await c.http.addReaction("ops", 1, "👍")).duplicate, true);
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1]);
  assert.ok(keys[0]);
  await assert.rejects(
    recording(() => ({ status: 403, body: { error: { code: "forbidden", message: "only its author may edit a message", retryable: false } } })).c.http.editMessage("ops", 1, "x"),
    (e: unknown) => e instanceof ChatError && e.code === "forbidden" && e.status === 403,
  );
  c.close();
});

test("channels: an error envelope is a ChatError with its code, status and retryability", async () => {
  const { c, seen } = recording((_method, path) =>
    path.endsWith("/join")
      ? { status: 403, body: { error: { code: "private_channel", message: "this channel is private: ask an owner to add you", retryable: false } } }
      : { status: 403, body: { error: { code: "not_owner", message: "only an owner of this channel may do this", retryable: false } } },
  );
  await assert.rejects(c.joinChannel("ops"), (e: unknown) => e instanceof ChatError && e.code === "private_channel" && e.status === 403 && !e.retryable && /private/.test(e.message));
  await assert.rejects(c.addMember("ops", "bob"), (e: unknown) => e instanceof ChatError && e.code === "not_owner" && e.status === 403 && !e.retryable);
  assert.equal(seen.length, 2, "refusals are not retried");
  c.close();
});

test("channels: publicChannelPages follows next_after to the last page", async () => {
  const pages: Record<string, { channels: { channel_id: string }[]; next_after: string | null }> = {
    "": { channels: [{ channel_id: "a" }, { channel_id: "b" }], next_after: "b" },
    b: { channels: [{ channel_id: "c" }], next_after: null },
  };
  const seen: string[] = [];
  const fetch = (async (input: RequestInfo | URL) => {
    const url = new URL(String(input));
    seen.push(url.search);
    return new Response(JSON.stringify(pages[url.searchParams.get("after") ?? ""]), { status: 200 });
  }) as typeof globalThis.fetch;
  const c = new ChatClient({ url: "ws://127.0.0.1:9", token: "t", WebSocket: NeverOpens, fetch });
  const ids: string[] = [];
  for await (const page of c.publicChannelPages({ limit: 2 })) ids.push(...page.channels.map((x) => x.channel_id));
  assert.deepEqual(ids, ["a", "b", "c"]);
  assert.deepEqual(seen, ["?limit=2", "?after=b&limit=2"]);
  c.close();
});
