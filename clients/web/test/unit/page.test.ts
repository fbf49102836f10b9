// The page's logic that needs no browser: message order, where requests
// go, and where the configuration comes from.

import assert from "node:assert/strict";
import { test } from "node:test";

import { loadConfig } from "../../src/config.js";
import { proxiedFetch, proxiedUrl } from "../../src/proxy.js";
import { Timeline } from "../../src/timeline.js";

const PAGE = "http://127.0.0.1:8090";

test("the timeline keeps messages in seq order, each once, however they arrive", () => {
  const t = new Timeline<{ message_id: string; seq: number; body: string }>();
  const m = (seq: number) => ({ message_id: String(1000 + seq), seq, body: `m${seq}` });
  // A live message, then the history page before it, then a replay that overlaps both.
  assert.equal(t.insert(m(10)), 0);
  for (const seq of [5, 6, 7, 8]) t.insert(m(seq));
  assert.equal(t.insert(m(9)), 4);
  assert.equal(t.insert(m(8)), -1);
  assert.equal(t.insert(m(10)), -1);
  assert.equal(t.insert(m(1)), 0);
  assert.deepEqual(t.toArray().map((x) => x.seq), [1, 5, 6, 7, 8, 9, 10]);
  assert.equal(t.oldest?.seq, 1);
  assert.equal(t.newest?.seq, 10);
  assert.ok(t.has("1005"));
  assert.ok(!t.has("1004"));
  assert.equal(t.length, 7);
});

test("gateway calls go to /gw/<host>/ of the page's server, uploads to /_upload, the rest unchanged", () => {
  assert.equal(proxiedUrl("http://127.0.0.1:8080/v1/channels/lobby/messages?limit=50", "GET", PAGE), `${PAGE}/gw/127.0.0.1%3A8080/v1/channels/lobby/messages?limit=50`);
  assert.equal(proxiedUrl("https://gw-1.example.com/v1/presence?user_ids=a", "GET", PAGE), `${PAGE}/gw/gw-1.example.com/v1/presence?user_ids=a`);
  const signed = "http://127.0.0.1:9999/objects/uploads/ab/123?expires=1&signature=x";
  assert.equal(proxiedUrl(signed, "PUT", PAGE), `${PAGE}/_upload?url=${encodeURIComponent(signed)}`);
  // Downloads (img src) and same-origin calls are left alone.
  assert.equal(proxiedUrl(signed, "GET", PAGE), signed);
  assert.equal(proxiedUrl(`${PAGE}/v1/dev/token`, "POST", PAGE), `${PAGE}/v1/dev/token`);
  assert.equal(proxiedUrl("/config.json", "GET", PAGE), "/config.json");
});

test("the page's fetch turns the server's unreachable answer into a network error", async () => {
  const seen: string[] = [];
  const base = (async (input: RequestInfo | URL) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.toString() : input.url;
    seen.push(url);
    if (url.includes("8081")) return new Response('{"error":{"code":"unavailable"}}', { status: 502, headers: { "x-chatmesh-proxy": "unreachable" } });
    if (url.includes("8082")) return new Response('{"error":{"code":"unavailable"}}', { status: 502 });
    return new Response("{}", { status: 200 });
  }) as typeof fetch;
  const f = proxiedFetch(PAGE, base);
  assert.equal((await f("http://127.0.0.1:8080/v1/route/x")).status, 200);
  await assert.rejects(f("http://127.0.0.1:8081/v1/route/x"), TypeError);
  // A gateway's own 502 is an answer, not a network error.
  assert.equal((await f("http://127.0.0.1:8082/v1/route/x")).status, 502);
  assert.deepEqual(seen, [`${PAGE}/gw/127.0.0.1%3A8080/v1/route/x`, `${PAGE}/gw/127.0.0.1%3A8081/v1/route/x`, `${PAGE}/gw/127.0.0.1%3A8082/v1/route/x`]);
});

test("the config comes from the query, else from config.json", async () => {
  const file = { gateways: ["ws://127.0.0.1:1", "ws://127.0.0.1:2"], channels: ["lobby"] };
  const fetchFile = (async () => new Response(JSON.stringify(file), { status: 200 })) as typeof fetch;
  const noFile = (async () => new Response("", { status: 404 })) as typeof fetch;
  assert.deepEqual(await loadConfig("", fetchFile), { gateways: file.gateways, channels: ["lobby"], user: undefined });
  assert.deepEqual(await loadConfig("?gateway=ws://h:3,ws://h:4&channel=random&channel=lobby&user=bob", fetchFile), {
    gateways: ["ws://h:3", "ws://h:4"],
    channels: ["lobby", "random"],
    user: "bob",
  });
  assert.deepEqual(await loadConfig("?gateway=ws://h:3", noFile), { gateways: ["ws://h:3"], channels: [], user: undefined });
});
