// Pure parts of the SDK, without a network: backoff, tokens, URLs, errors.
import assert from "node:assert/strict";
import test from "node:test";

import { backoffDelay, ChatClient, ChatError, decodeToken, DEFAULT_BACKOFF, epochOf, httpBase, isRetryableCode, wsBase } from "../../src/index.js";
import { TokenManager } from "../../src/token.js";
import { signJwt } from "../harness/util.js";

test("backoff: full jitter under an exponential ceiling, bounded", () => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const ceiling = Math.min(DEFAULT_BACKOFF.maxDelayMs, DEFAULT_BACKOFF.initialDelayMs * 2 ** attempt);
    assert.equal(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0), 0);
    assert.equal(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0.999999), Math.floor(0.999999 * ceiling));
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, DEFAULT_BACKOFF);
      assert.ok(d >= 0 && d <= ceiling && d <= DEFAULT_BACKOFF.maxDelayMs, `attempt ${attempt}: ${d}`);
    }
  }
});

test("tokens: exp is read, and a refresh is due before it", async () => {
  const now = Date.now();
  const token = signJwt({ sub: "alice", exp: Math.floor(now / 1000) + 4, iat: Math.floor(now / 1000) }, "k");
  assert.equal(decodeToken(token)?.sub, "alice");
  assert.equal(decodeToken("not a jwt"), undefined);
  const reasons: string[] = [];
  const manager = new TokenManager({
    token,
    getToken: ({ reason }) => {
      reasons.push(reason);
      return signJwt({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 3600 }, "k");
    },
    refreshMarginMs: 30_000,
    now: () => Date.now(),
    onRefreshed: () => {},
    onError: () => {},
  });
  manager.start();
  // A 4 s token: refreshed a quarter of its life (1 s) before exp.
  const deadline = Date.now() + 4000;
  while (reasons.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  manager.stop();
  assert.deepEqual(reasons, ["expiring"]);
  assert.ok(Date.now() < (decodeToken(token)?.exp ?? 0) * 1000, "refreshed before the token expired");
  assert.notEqual(manager.token, token);
});

test("urls: gateway URLs as HTTP and WebSocket bases", () => {
  assert.equal(httpBase("ws://127.0.0.1:8080/v1/ws?token=x"), "http://127.0.0.1:8080");
  assert.equal(httpBase("wss://chat.example.com/"), "https://chat.example.com");
  assert.equal(wsBase("https://chat.example.com/prefix/"), "wss://chat.example.com/prefix");
  assert.equal(wsBase("ws://gw-1:80/v1/ws"), "ws://gw-1");
});

test("errors: retryable as the error table says", () => {
  assert.equal(isRetryableCode("rate_limited"), true);
  assert.equal(isRetryableCode("in_progress"), true);
  assert.equal(isRetryableCode("unavailable"), true);
  assert.equal(isRetryableCode("not_member"), false);
  assert.equal(isRetryableCode("invalid_message"), false);
  assert.equal(new ChatError("blocked", "no").retryable, false);
  assert.equal(epochOf(2 ** 32 + 5), 1);
  assert.equal(epochOf(41), 0);
});

test("send: a frame over the size limit is refused before it is sent", async () => {
  class NeverOpens {
    readyState = 0;
    onopen = null;
    onclose = null;
    onmessage = null;
    onerror = null;
    send(): void {}
    close(): void {}
  }
  const c = new ChatClient({ url: "ws://127.0.0.1:9", token: "t", WebSocket: NeverOpens, fetch: async () => new Response(null, { status: 500 }) });
  await assert.rejects(c.send("lobby", "x".repeat(20_000)), (e: unknown) => e instanceof ChatError && e.code === "frame_too_large" && !e.retryable);
  c.close();
  assert.equal(c.state, "closed");
  await assert.rejects(c.send("lobby", "hi"), (e: unknown) => e instanceof ChatError && e.code === "closed");
});
