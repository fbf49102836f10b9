// The page's logic that needs no browser: message order, where requests
// go, where the configuration comes from, and how the channel directory is
// searched and listed.

import assert from "node:assert/strict";
import { test } from "node:test";

import type { Channel, PublicChannelsPage, PublicChannelsQuery } from "../../../js/src/index.js";
import { loadConfig } from "../../src/config.js";
import { channelLabel, findPublic, sidebarChannels } from "../../src/directory.js";
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

function publicChannel(id: string): Channel {
  return { channel_id: id, name: id, visibility: "public", created_by: "x", created_at_ms: 0, role: null };
}

/** A public-channels lister over `ids`, as the gateway pages them: by ID, after a cursor. */
function lister(ids: string[], seen: PublicChannelsQuery[]): (q: PublicChannelsQuery) => Promise<PublicChannelsPage> {
  const sorted = [...ids].sort();
  return async (q) => {
    seen.push(q);
    const from = q.after === undefined ? sorted : sorted.filter((id) => id > (q.after ?? ""));
    const page = from.slice(0, q.limit ?? 50);
    const more = from.length > page.length;
    return { channels: page.map(publicChannel), next_after: more ? (page.at(-1) ?? null) : null };
  };
}

test("public channels are found by ID prefix, from just before it to the first ID past it", async () => {
  const ids = ["alpha", "web-a", "web-pub", "web-pub-1", "web-pub-2", "web-pubx", "web-q", "zulu"];
  const seen: PublicChannelsQuery[] = [];
  const found = await findPublic(lister(ids, seen), "web-pub", 20);
  assert.deepEqual(found.channels.map((c) => c.channel_id), ["web-pub", "web-pub-1", "web-pub-2", "web-pubx"]);
  assert.equal(found.cursor, undefined, "the search ended past the prefix");
  assert.deepEqual(seen, [{ after: "web-pu", limit: 100 }]);

  // Two at a time: the cursor continues where the first search stopped.
  const first = await findPublic(lister(ids, []), "web-pub", 2);
  assert.deepEqual(first.channels.map((c) => c.channel_id), ["web-pub", "web-pub-1"]);
  assert.equal(first.cursor, "web-pub-1");
  const rest = await findPublic(lister(ids, []), "web-pub", 2, first.cursor);
  assert.deepEqual(rest.channels.map((c) => c.channel_id), ["web-pub-2", "web-pubx"]);

  // No prefix: every public channel, page by page.
  const many = Array.from({ length: 250 }, (_, i) => `c-${String(i).padStart(3, "0")}`);
  const pages: PublicChannelsQuery[] = [];
  const all = await findPublic(lister(many, pages), "", 1000);
  assert.equal(all.channels.length, 250);
  assert.deepEqual(pages.map((q) => q.after), [undefined, "c-099", "c-199"]);
  assert.deepEqual((await findPublic(lister(ids, []), "nothing", 20)).channels, []);
});

test("the sidebar lists configured and opened channels first, then the user's others by ID", () => {
  const member = [publicChannel("zeta"), publicChannel("lobby"), publicChannel("beta")];
  assert.deepEqual(sidebarChannels(["lobby"], ["opened"], member), ["lobby", "opened", "beta", "zeta"]);
  assert.deepEqual(sidebarChannels([], [], []), []);
  assert.equal(channelLabel("ops", { name: "Operations" }), "Operations (ops)");
  assert.equal(channelLabel("ops", { name: "ops" }), "ops");
  assert.equal(channelLabel("ops", undefined), "ops");
});
