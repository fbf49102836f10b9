// The page server (server.mjs) as a process, in front of fake gateways and
// a fake media store: static files, config, the per-gateway proxy, the
// failover of /v1/, and uploads only to URLs a gateway handed out.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { startPageServer, type PageServer } from "../support.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const address = server.address();
  return `127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
}

function fake(name: string, seen: Seen[], answer: (req: Seen) => { status: number; body: unknown }): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      seen.push(s);
      const { status, body } = answer(s);
      res.writeHead(status, { "content-type": "application/json", "x-served-by": name });
      res.end(JSON.stringify(body));
    });
  });
}

/** A raw request (no URL normalisation), for paths like /../x. */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: IncomingMessage["headers"]; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const gw0Seen: Seen[] = [];
const gw1Seen: Seen[] = [];
const storeSeen: Seen[] = [];
let storeHost = "";
const gw0 = fake("gw-0", gw0Seen, (req) => {
  if (req.url === "/v1/channels/lobby/media") {
    return { status: 201, body: { media_id: "m1", upload_method: "PUT", upload_url: `http://${storeHost}/objects/uploads/ab/m1?expires=9&signature=s`, upload_headers: {}, expires_at_ms: Date.now() + 60_000 } };
  }
  return { status: 200, body: { echo: req.url } };
});
const gw1 = fake("gw-1", gw1Seen, (req) => ({ status: 200, body: { echo: req.url } }));
const store = fake("store", storeSeen, () => ({ status: 200, body: {} }));
let gw0Host = "";
let gw1Host = "";
let downHost = "";
let root = "";
let page: PageServer;
let failover: PageServer;

before(async () => {
  gw0Host = await listen(gw0);
  gw1Host = await listen(gw1);
  storeHost = await listen(store);
  const down = createServer();
  downHost = await listen(down);
  await new Promise((r) => down.close(r));
  root = mkdtempSync(join(tmpdir(), "chatmesh-web-root-"));
  writeFileSync(join(root, "index.html"), "<!doctype html><title>t</title>");
  writeFileSync(join(root, "style.css"), "body{}");
  page = await startPageServer([`ws://${gw0Host}`, `http://${gw1Host}/`, `ws://${downHost}/v1/ws`], ["lobby", "random"], { root });
  failover = await startPageServer([`ws://${downHost}`, `ws://${gw1Host}`], [], { root });
});

after(async () => {
  await page.stop();
  await failover.stop();
  for (const s of [gw0, gw1, store]) s.closeAllConnections();
  await Promise.all([gw0, gw1, store].map((s) => new Promise((r) => s.close(r))));
  rmSync(root, { recursive: true, force: true });
});

test("serves the files of its root, and nothing outside it", async () => {
  const index = await raw(page.url, "GET", "/");
  assert.equal(index.status, 200);
  assert.match(index.body, /<title>t<\/title>/);
  assert.match(String(index.headers["content-type"]), /^text\/html/);
  assert.match(String(index.headers["content-security-policy"]), /connect-src 'self' ws: wss:/);
  const css = await raw(page.url, "GET", "/style.css");
  assert.equal(css.status, 200);
  assert.match(String(css.headers["content-type"]), /^text\/css/);
  for (const path of ["/../package.json", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/missing.js", "/%00"]) {
    const r = await raw(page.url, "GET", path);
    assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status}`);
  }
  assert.equal((await raw(page.url, "POST", "/index.html")).status, 405);
});

test("config.json names the gateways as WebSocket URLs and the channels", async () => {
  const r = await raw(page.url, "GET", "/config.json");
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { gateways: [`ws://${gw0Host}`, `ws://${gw1Host}`, `ws://${downHost}`], channels: ["lobby", "random"] });
});

test("/gw/<host>/v1/ goes to that gateway with the token and body, and nowhere else", async () => {
  gw0Seen.length = 0;
  const r = await raw(page.url, "POST", `/gw/${encodeURIComponent(gw0Host)}/v1/media/m1/complete?x=1`, {
    authorization: "Bearer t0k",
    cookie: "secret=1",
    "content-type": "application/json",
  }, '{"a":1}');
  assert.equal(r.status, 200);
  assert.equal(r.headers["x-served-by"], "gw-0");
  assert.deepEqual(JSON.parse(r.body), { echo: "/v1/media/m1/complete?x=1" });
  const seen = gw0Seen[0];
  assert.equal(seen?.method, "POST");
  assert.equal(seen?.headers.authorization, "Bearer t0k");
  assert.equal(seen?.headers.cookie, undefined);
  assert.equal(seen?.headers.host, gw0Host);
  assert.equal(seen?.body, '{"a":1}');
  const r1 = await raw(page.url, "GET", `/gw/${gw1Host}/v1/route/lobby`);
  assert.equal(r1.headers["x-served-by"], "gw-1");

  const unknown = await raw(page.url, "GET", `/gw/${encodeURIComponent("example.com:80")}/v1/route/lobby`);
  assert.equal(unknown.status, 404);
  const notApi = await raw(page.url, "GET", `/gw/${gw0Host}/admin`);
  assert.equal(notApi.status, 404);
  const down = await raw(page.url, "GET", `/gw/${downHost}/v1/route/lobby`);
  assert.equal(down.status, 502);
  assert.equal(down.headers["x-chatmesh-proxy"], "unreachable");
});

test("/v1/ goes to the first gateway that answers", async () => {
  gw1Seen.length = 0;
  const r = await raw(failover.url, "POST", "/v1/dev/token", { "content-type": "application/json" }, '{"user_id":"alice"}');
  assert.equal(r.status, 200);
  assert.equal(r.headers["x-served-by"], "gw-1");
  assert.equal(gw1Seen[0]?.body, '{"user_id":"alice"}');
});

test("uploads go only to an upload URL a gateway handed out", async () => {
  const signed = `http://${storeHost}/objects/uploads/ab/m1?expires=9&signature=s`;
  const path = `/_upload?url=${encodeURIComponent(signed)}`;
  const before = await raw(page.url, "PUT", path, { "content-type": "image/png" }, "PNG!");
  assert.equal(before.status, 403);
  const elsewhere = await raw(page.url, "PUT", `/_upload?url=${encodeURIComponent(`http://${gw1Host}/v1/anything`)}`, {}, "x");
  assert.equal(elsewhere.status, 403);
  assert.equal(storeSeen.length, 0);

  const created = await raw(page.url, "POST", `/gw/${gw0Host}/v1/channels/lobby/media`, { "content-type": "application/json" }, '{"size":4}');
  assert.equal(created.status, 201);
  assert.equal(JSON.parse(created.body).upload_url, signed);
  const put = await raw(page.url, "PUT", path, { "content-type": "image/png", "content-length": "4", authorization: "Bearer t0k" }, "PNG!");
  assert.equal(put.status, 200);
  assert.equal(put.headers["x-served-by"], "store");
  assert.equal(storeSeen[0]?.method, "PUT");
  assert.equal(storeSeen[0]?.url, "/objects/uploads/ab/m1?expires=9&signature=s");
  assert.equal(storeSeen[0]?.headers["content-type"], "image/png");
  assert.equal(storeSeen[0]?.headers.authorization, undefined);
  assert.equal(storeSeen[0]?.body, "PNG!");
  assert.equal((await raw(page.url, "GET", path)).status, 405);
});
