#!/usr/bin/env node
// @ts-check
// The demo page's server: the static files of dist/ and a same-origin
// path to the gateways' HTTP API, which sends no CORS headers.
//
//   GET  /, /app.js, /style.css ...     the files of the root directory
//   GET  /config.json                    {"gateways": [ws URLs], "channels": [IDs]}
//   ANY  /gw/<host:port>/v1/...          to that gateway only (it must be configured);
//                                        an unreachable gateway is answered 502 with
//                                        `x-chatmesh-proxy: unreachable`, which the page
//                                        turns back into a network error
//   ANY  /v1/...                         to the first configured gateway that answers
//   PUT  /_upload?url=<signed URL>       to an upload URL a gateway handed out through
//                                        this server, before it expires; nothing else
//
// WebSockets go straight from the page to the gateways (no CORS there).
// Node only, no dependencies:
//
//   node server.mjs --gateway ws://127.0.0.1:8080 --gateway ws://127.0.0.1:8081 [--port 8090]
//                   [--host 127.0.0.1] [--channel lobby]... [--root dist]
//
// The same settings from the environment: CHATMESH_WEB_GATEWAYS and
// CHATMESH_WEB_CHANNELS (comma-separated), CHATMESH_WEB_PORT, CHATMESH_WEB_HOST,
// CHATMESH_WEB_ROOT. Port 0 picks a free one. Once listening it prints
// `chatmesh web: listening on http://host:port`.

import { createReadStream, statSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

/** Largest request body forwarded to a gateway (they take small JSON bodies). */
const MAX_GATEWAY_BODY = 1 << 20;
/** How long a gateway gets to accept a connection and answer, in ms. */
const UPSTREAM_TIMEOUT_MS = 30_000;

const TYPES = /** @type {Record<string, string>} */ ({
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
});

// Headers that belong to one hop, or to the page's origin, and are not forwarded.
const HOP_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);
const PAGE_HEADERS = new Set(["cookie", "origin", "referer"]);

/**
 * @typedef {object} ServerOptions
 * @property {string[]} gateways  gateway URLs, ws(s):// or http(s)://
 * @property {string[]} [channels]  channel IDs the page lists
 * @property {number} [port]
 * @property {string} [host]
 * @property {string} [root]  the directory of the static files
 * @property {(line: string) => void} [log]
 */

/**
 * @typedef {object} Gateway
 * @property {string} key   host:port, as in /gw/<key>/
 * @property {URL} http     the HTTP base
 * @property {string} ws    the WebSocket base
 */

/** @param {string} raw @returns {Gateway} */
export function parseGateway(raw) {
  const u = new URL(raw.includes("://") ? raw : `http://${raw}`);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`not a gateway URL: ${raw}`);
  const path = u.pathname.replace(/\/v1\/ws\/?$/, "").replace(/\/+$/, "");
  const http = new URL(`${u.protocol}//${u.host}${path}`);
  const ws = `${u.protocol === "https:" ? "wss:" : "ws:"}//${u.host}${path}`;
  return { key: u.host, http, ws };
}

/**
 * Starts the server; resolves once it listens.
 * @param {ServerOptions} options
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>}
 */
export async function startServer(options) {
  const gateways = options.gateways.map(parseGateway);
  const byKey = new Map(gateways.map((g) => [g.key, g]));
  const root = resolve(options.root ?? join(HERE, "dist"));
  const log = options.log ?? ((line) => console.log(line));
  const config = JSON.stringify({ gateways: gateways.map((g) => g.ws), channels: options.channels ?? [] });
  /** Upload URLs handed out by a gateway, with their expiry (ms since the epoch). */
  const uploads = new Map();
  /** The gateway /v1/ tries first: the last one that answered. */
  let preferred = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      log(`chatmesh web: ${req.method} ${req.url}: ${err instanceof Error ? err.stack : String(err)}`);
      if (!res.headersSent) send(res, 500, { error: { code: "internal", message: "the page server failed", retryable: true } });
      else res.destroy();
    });
  });

  /** @param {import("node:http").IncomingMessage} req @param {import("node:http").ServerResponse} res */
  async function handle(req, res) {
    const url = new URL(req.url ?? "/", "http://page.invalid");
    const path = url.pathname;
    if (path.startsWith("/gw/")) {
      const rest = path.slice(4);
      const slash = rest.indexOf("/");
      const key = decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
      const upstreamPath = slash < 0 ? "/" : rest.slice(slash);
      const gateway = byKey.get(key);
      if (!gateway || !upstreamPath.startsWith("/v1/")) {
        send(res, 404, { error: { code: "not_found", message: `${key} is not a gateway this server was told about`, retryable: false } });
        return;
      }
      const body = await readBody(req, MAX_GATEWAY_BODY);
      if (body === undefined) return send(res, 413, { error: { code: "too_large", message: "request body too large", retryable: false } });
      const answered = await toGateway(gateway, req, res, upstreamPath + url.search, body);
      if (!answered) unreachable(res, `gateway ${key} could not be reached`);
      return;
    }
    if (path.startsWith("/v1/")) {
      const body = await readBody(req, MAX_GATEWAY_BODY);
      if (body === undefined) return send(res, 413, { error: { code: "too_large", message: "request body too large", retryable: false } });
      for (let i = 0; i < gateways.length; i++) {
        const index = (preferred + i) % gateways.length;
        const gateway = gateways[index];
        if (gateway && (await toGateway(gateway, req, res, path + url.search, body))) {
          preferred = index;
          return;
        }
      }
      unreachable(res, gateways.length === 0 ? "no gateway is configured" : "no gateway could be reached");
      return;
    }
    if (path === "/_upload") return upload(req, res, url.searchParams.get("url") ?? "");
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, { error: { code: "invalid_request", message: "method not allowed", retryable: false } });
      return;
    }
    if (path === "/config.json") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : config);
      return;
    }
    serveFile(req, res, path);
  }

  /**
   * Forwards one request to `gateway`. Resolves false when nothing reached it
   * (so another gateway may be tried), true once an answer was passed on.
   * @param {Gateway} gateway
   * @param {import("node:http").IncomingMessage} req
   * @param {import("node:http").ServerResponse} res
   * @param {string} pathAndQuery
   * @param {Buffer} body
   * @returns {Promise<boolean>}
   */
  function toGateway(gateway, req, res, pathAndQuery, body) {
    const target = new URL(gateway.http.pathname.replace(/\/+$/, "") + pathAndQuery, gateway.http);
    const headers = forwardHeaders(req.headers);
    headers["content-length"] = String(body.length);
    // Media creation answers carry the upload URL the page will PUT to through /_upload.
    const watchUpload = req.method === "POST" && /^\/v1\/channels\/[^/?]+\/media(\?|$)/.test(pathAndQuery);
    return new Promise((resolveSent) => {
      const upstream = (target.protocol === "https:" ? httpsRequest : httpRequest)(target, { method: req.method, headers, timeout: UPSTREAM_TIMEOUT_MS });
      let answered = false;
      upstream.on("timeout", () => upstream.destroy(new Error("timed out")));
      upstream.on("error", (err) => {
        if (answered) {
          res.destroy(err);
          return;
        }
        log(`chatmesh web: ${req.method} ${target.href}: ${err.message}`);
        resolveSent(false);
      });
      upstream.on("response", (answer) => {
        answered = true;
        const out = forwardHeaders(answer.headers);
        if (!watchUpload || (answer.statusCode !== 200 && answer.statusCode !== 201)) {
          res.writeHead(answer.statusCode ?? 502, out);
          answer.pipe(res);
          answer.on("end", () => resolveSent(true));
          answer.on("error", () => resolveSent(true));
          return;
        }
        const chunks = /** @type {Buffer[]} */ ([]);
        answer.on("data", (c) => chunks.push(c));
        answer.on("end", () => {
          const text = Buffer.concat(chunks);
          try {
            const parsed = JSON.parse(text.toString("utf8"));
            if (typeof parsed.upload_url === "string") {
              const expires = typeof parsed.expires_at_ms === "number" ? parsed.expires_at_ms : Date.now() + 15 * 60_000;
              uploads.set(parsed.upload_url, expires);
              sweepUploads();
            }
          } catch {
            // Not JSON: pass it on as it is.
          }
          delete out["content-length"];
          res.writeHead(answer.statusCode ?? 502, { ...out, "content-length": String(text.length) });
          res.end(text);
          resolveSent(true);
        });
      });
      upstream.end(body);
    });
  }

  /** @param {import("node:http").IncomingMessage} req @param {import("node:http").ServerResponse} res @param {string} signed */
  function upload(req, res, signed) {
    sweepUploads();
    if (req.method !== "PUT") return send(res, 405, { error: { code: "invalid_request", message: "uploads are PUT", retryable: false } });
    if (!uploads.has(signed)) {
      return send(res, 403, { error: { code: "forbidden", message: "not an upload URL a gateway handed out here, or it expired", retryable: false } });
    }
    const target = new URL(signed);
    const headers = forwardHeaders(req.headers);
    for (const name of Object.keys(headers)) if (name === "authorization" || name.startsWith("sec-")) delete headers[name];
    const upstream = (target.protocol === "https:" ? httpsRequest : httpRequest)(target, { method: "PUT", headers, timeout: 120_000 });
    let answered = false;
    upstream.on("timeout", () => upstream.destroy(new Error("timed out")));
    upstream.on("error", (err) => {
      if (answered) return res.destroy(err);
      unreachable(res, `the media store could not be reached: ${err.message}`);
    });
    upstream.on("response", (answer) => {
      answered = true;
      res.writeHead(answer.statusCode ?? 502, forwardHeaders(answer.headers));
      answer.pipe(res);
    });
    req.pipe(upstream);
  }

  function sweepUploads() {
    const now = Date.now();
    for (const [u, expires] of uploads) if (expires < now) uploads.delete(u);
  }

  /** @param {import("node:http").IncomingMessage} req @param {import("node:http").ServerResponse} res @param {string} path */
  function serveFile(req, res, path) {
    let decoded;
    try {
      decoded = decodeURIComponent(path);
    } catch {
      return send(res, 400, { error: { code: "invalid_request", message: "bad path", retryable: false } });
    }
    if (decoded.includes("\0")) return send(res, 400, { error: { code: "invalid_request", message: "bad path", retryable: false } });
    const relative = normalize(decoded === "/" ? "/index.html" : decoded);
    const file = join(root, relative);
    if (file !== root && !file.startsWith(root + sep)) return send(res, 404, { error: { code: "not_found", message: "no such file", retryable: false } });
    let stat;
    try {
      stat = statSync(file);
    } catch {
      stat = undefined;
    }
    if (!stat?.isFile()) return send(res, 404, { error: { code: "not_found", message: "no such file", retryable: false } });
    res.writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      "content-length": String(stat.size),
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      ...(extname(file) === ".html"
        ? {
            // Images come from the media store's signed URLs, WebSockets from the gateways.
            "content-security-policy":
              "default-src 'self'; img-src 'self' http: https: blob: data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
          }
        : {}),
    });
    if (req.method === "HEAD") return res.end();
    createReadStream(file).pipe(res);
  }

  await new Promise((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8090, options.host ?? "127.0.0.1", () => resolveListen(undefined));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const host = options.host ?? "127.0.0.1";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    url,
    port,
    close: () =>
      new Promise((resolveClose) => {
        server.close(() => resolveClose());
        server.closeAllConnections();
      }),
  };
}

/** @param {import("node:http").IncomingHttpHeaders} headers @returns {Record<string, string | string[]>} */
function forwardHeaders(headers) {
  /** @type {Record<string, string | string[]>} */
  const out = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_HEADERS.has(name) || PAGE_HEADERS.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * The whole body, or undefined when it is over `limit` bytes.
 * @param {import("node:http").IncomingMessage} req @param {number} limit @returns {Promise<Buffer | undefined>}
 */
function readBody(req, limit) {
  return new Promise((resolveBody, reject) => {
    const chunks = /** @type {Buffer[]} */ ([]);
    let size = 0;
    let over = false;
    req.on("data", (c) => {
      size += c.length;
      if (size > limit) over = true;
      else chunks.push(c);
    });
    req.on("end", () => resolveBody(over ? undefined : Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** @param {import("node:http").ServerResponse} res @param {number} status @param {unknown} body */
function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
  res.end(text);
}

/** The answer for an upstream nothing reached: the page's fetch turns it into a network error. */
/** @param {import("node:http").ServerResponse} res @param {string} message */
function unreachable(res, message) {
  const text = JSON.stringify({ error: { code: "unavailable", message, retryable: true } });
  res.writeHead(502, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), "x-chatmesh-proxy": "unreachable" });
  res.end(text);
}

/** @param {string[]} argv */
function parseArgs(argv) {
  const env = process.env;
  const list = (/** @type {string | undefined} */ v) => (v ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  /** @type {ServerOptions & { gateways: string[], channels: string[] }} */
  const options = {
    gateways: list(env["CHATMESH_WEB_GATEWAYS"]),
    channels: list(env["CHATMESH_WEB_CHANNELS"]),
    port: Number(env["CHATMESH_WEB_PORT"] ?? 8090),
    host: env["CHATMESH_WEB_HOST"] ?? "127.0.0.1",
  };
  if (env["CHATMESH_WEB_ROOT"]) options.root = env["CHATMESH_WEB_ROOT"];
  let fromArgs = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--gateway":
        if (!fromArgs) options.gateways = [];
        fromArgs = true;
        options.gateways.push(...list(value()));
        break;
      case "--channel":
        options.channels.push(...list(value()));
        break;
      case "--port":
        options.port = Number(value());
        break;
      case "--host":
        options.host = value();
        break;
      case "--root":
        options.root = value();
        break;
      case "-h":
      case "--help":
        console.log("usage: node server.mjs --gateway URL [--gateway URL]... [--port 8090] [--host 127.0.0.1] [--channel ID]... [--root dist]");
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${flag} (see --help)`);
    }
  }
  if (!Number.isInteger(options.port) || (options.port ?? 0) < 0) throw new Error(`bad port ${options.port}`);
  return options;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = parseArgs(process.argv.slice(2));
  if (options.gateways.length === 0) console.error("chatmesh web: no --gateway given; the page will need ?gateway= and the API calls will fail");
  const server = await startServer(options);
  console.log(`chatmesh web: listening on ${server.url} (gateways: ${options.gateways.join(", ") || "none"})`);
  const stop = () => {
    void server.close().then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
