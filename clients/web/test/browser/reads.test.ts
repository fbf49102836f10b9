// Read state in Debian's Chromium against the real mesh: unread badges in
// the sidebar and the total in the title, the "New messages" line, read
// receipts, mentions, and a second session of the same user reading a
// channel. Two users in browser contexts of their own (and a second one of
// bob's); the tests share the mesh, the page server and the browser, and
// run in order.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium, type Browser, type Locator, type Page } from "playwright-core";

import { Mesh } from "../../../js/test/harness/mesh.js";
import { ensureResultsDir, startChromium, startPageServer, waitFor, type Chromium, type PageServer } from "../support.js";
import { say, shown, signInAs, signInPage, waitShown, type Person } from "./pages.js";

const mesh = new Mesh({ gateways: 2, mode: "redirect" });
const results = ensureResultsDir();
const alice = `alice-${mesh.run}`;
const bob = `bob-${mesh.run}`;

/** The channel the page is configured with: everyone opens it first. */
let general = "";
/** A channel of both users' the page lists from their memberships, on the other gateway. */
let side = "";
let server: PageServer | undefined;
let chrome: Chromium | undefined;
let browser: Browser | undefined;
let failed = false;

type Who = "alice" | "bob" | "bob2";
const people: Partial<Record<Who, Person>> = {};
/** The read positions alice's page sent (`ack` frames). */
const aliceAcks: { channel: string; seq: number }[] = [];

/** Signs alice in, keeping the read positions her page sends. */
async function signInAlice(b: Browser, url: string): Promise<Person> {
  const context = await b.newContext({ viewport: { width: 1180, height: 760 } });
  const page = await context.newPage();
  const p: Person = { user: alice, context, page, errors: [], console: [] };
  page.on("pageerror", (err) => p.errors.push(String(err)));
  page.on("console", (m) => p.console.push(`[${m.type()}] ${m.text()}`));
  page.on("websocket", (ws) => {
    ws.on("framesent", (frame) => {
      const text = typeof frame.payload === "string" ? frame.payload : frame.payload.toString("utf8");
      const parsed = JSON.parse(text) as { type?: string; channel_id?: string; seq?: number };
      if (parsed.type === "ack") aliceAcks.push({ channel: parsed.channel_id ?? "", seq: parsed.seq ?? 0 });
    });
  });
  await page.goto(url);
  await signInPage(page, alice);
  return p;
}

function person(name: Who): Person {
  const p = people[name];
  if (!p) throw new Error(`${name} has no page`);
  return p;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(results, `reads-${name}.png`) });
}

/** The sidebar entry of `channel`. */
function entry(page: Page, channel: string): Locator {
  return page.locator(`#channels li[data-channel="${channel}"]`);
}

/** What `channel`'s badge says: unread posts, mentions among them, and whether it shows. */
async function badge(page: Page, channel: string): Promise<{ unread: number; mentions: number; shown: boolean; text: string; mention: boolean }> {
  return entry(page, channel).evaluate((li) => {
    const el = li as HTMLElement;
    const b = el.querySelector<HTMLElement>(".unread");
    return {
      unread: Number(el.dataset["unread"] ?? "0"),
      mentions: Number(el.dataset["mentions"] ?? "0"),
      shown: b !== null && !b.hidden,
      text: b?.textContent ?? "",
      mention: b?.classList.contains("mention") === true,
    };
  });
}

async function waitBadge(page: Page, channel: string, unread: number, mentions: number, what: string): Promise<void> {
  let last: unknown;
  try {
    await waitFor(what, async () => {
      const b = await badge(page, channel);
      last = b;
      return b.unread === unread && b.mentions === mentions && b.shown === unread > 0;
    });
  } catch (err) {
    throw new Error(`${String(err)}; the badge is ${JSON.stringify(last)}`);
  }
}

/** The message showing `body` in the open channel. */
function message(page: Page, body: string): Locator {
  return page.locator(".message-list > .message").filter({ has: page.locator(".body", { hasText: body }) });
}

async function openChannel(page: Page, channel: string): Promise<void> {
  await entry(page, channel).locator(".channel-button").click();
  await page.waitForSelector(`#channels li.active[data-channel="${channel}"]`);
  await page.waitForSelector('#sub-state[data-state="subscribed"]', { timeout: 30_000 });
}

/** Makes the page look hidden (another tab in front) or visible again. */
async function setVisible(page: Page, visible: boolean): Promise<void> {
  await page.evaluate((v) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (v ? "visible" : "hidden") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => !v });
    document.dispatchEvent(new Event("visibilitychange"));
  }, visible);
}

/** `user`'s unread posts in `channel` as the gateway counts them. */
async function storedUnread(user: string, channel: string): Promise<number> {
  const token = await mesh.devToken(user);
  const r = await fetch(`${mesh.httpUrl(0)}/v1/unread?channel_ids=${encodeURIComponent(channel)}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `unread: ${await r.clone().text()}`);
  const counts = (await r.json()) as { channels: { channel_id: string; unread: number }[] };
  return counts.channels.find((c) => c.channel_id === channel)?.unread ?? -1;
}

before(
  async () => {
    const started = Date.now();
    await mesh.start();
    general = await mesh.channelOwnedBy("gw-0", "general");
    side = await mesh.channelOwnedBy("gw-1", "side");
    await mesh.createChannel(general, [alice, bob]);
    await mesh.createChannel(side, [alice, bob]);
    await mesh.sendViaChat(general, alice, "good morning");
    server = await startPageServer([mesh.httpUrl(0), mesh.httpUrl(1)], [general], { logFile: join(results, "reads-page-server.log") });
    chrome = await startChromium(join(results, "reads-chromium.log"));
    browser = await chromium.connectOverCDP(chrome.wsEndpoint);
    console.log(`mesh, page server (${server.url}) and chromium up in ${Date.now() - started}ms; channels ${general}, ${side}; logs in ${mesh.dir}`);
  },
  { timeout: 300_000 },
);

after(async () => {
  for (const [name, p] of Object.entries(people)) {
    if (!p) continue;
    writeFileSync(join(results, `reads-console-${name}.log`), p.console.join("\n") + "\n");
    await p.context.close().catch(() => {});
  }
  await browser?.close().catch(() => {});
  await chrome?.stop();
  await server?.stop();
  await mesh.stop(failed);
  if (failed) console.log(`process logs kept in ${mesh.dir}`);
});

function pageTest(name: string, timeoutMs: number, body: () => Promise<void>): void {
  test(name, { timeout: timeoutMs }, async () => {
    try {
      await body();
      for (const p of Object.values(people)) assert.deepEqual(p?.errors ?? [], [], `${p?.user}: errors in the page`);
    } catch (err) {
      failed = true;
      for (const [n, p] of Object.entries(people)) if (p) await shot(p.page, `failed-${n}`).catch(() => {});
      throw err;
    }
  });
}

pageTest("bob's badge counts alice's posts in a channel he has not opened, and opening it clears the badge", 120_000, async () => {
  if (!browser || !server) throw new Error("no browser");
  const b = (people.bob = await signInAs(browser, server.url, bob));
  await entry(b.page, side).waitFor({ timeout: 20_000 });
  const a = (people.alice = await signInAlice(browser, server.url));
  await waitShown(a.page, ["good morning"], "alice: general's history");
  await entry(a.page, side).waitFor({ timeout: 20_000 });
  await openChannel(a.page, side);
  for (const n of [1, 2, 3]) await say(a.page, `side ${n}`);
  await waitShown(a.page, ["side 1", "side 2", "side 3"], "alice: her posts");

  await waitBadge(b.page, side, 3, 0, "bob: 3 unread in the channel he has not opened");
  const shownBadge = await badge(b.page, side);
  assert.equal(shownBadge.text, "3");
  assert.equal(shownBadge.mention, false);
  assert.equal(await b.page.title(), `(3) ${bob} · chatmesh`);
  // The open channel counts nothing: bob is reading it.
  assert.deepEqual(await badge(b.page, general), { unread: 0, mentions: 0, shown: false, text: "", mention: false });
  // Nobody has read alice's posts yet.
  assert.equal(await a.page.locator(".seen-by").count(), 0);
  await shot(b.page, "01-badge-bob");

  await openChannel(b.page, side);
  await waitShown(b.page, ["side 1", "side 2", "side 3"], "bob: the channel's messages");
  await waitBadge(b.page, side, 0, 0, "bob: the badge cleared");
  await waitFor("bob: the title without a count", async () => (await b.page.title()) === `${bob} · chatmesh`);
  // The line sits above the first post he had not read.
  const divider = b.page.locator(".message-list > .unread-divider");
  assert.equal(await divider.count(), 1);
  assert.equal(await divider.evaluate((el) => el.nextElementSibling?.querySelector(".body")?.textContent ?? ""), "side 1");
  await shot(b.page, "02-opened-bob");
  await waitFor("the gateway: bob has read the channel", async () => (await storedUnread(bob, side)) === 0, 15_000, 200);

  // He leaves and comes back: nothing is new, so no line.
  await openChannel(b.page, general);
  await openChannel(b.page, side);
  assert.equal(await b.page.locator(".message-list > .unread-divider").count(), 0);
});

pageTest("alice sees \"Seen by bob\" under her latest message once he has read it", 60_000, async () => {
  const a = person("alice");
  const b = person("bob");
  await waitFor("alice: seen by bob", async () => (await message(a.page, "side 3").locator(".seen-by").textContent().catch(() => null)) === `Seen by ${bob}`);
  assert.equal(await a.page.locator(".seen-by").count(), 1, "only under her latest message");
  await shot(a.page, "03-seen-alice");

  // Bob has the channel open: her next message is read at once, and the receipt moves under it.
  await say(a.page, "side 4");
  await waitShown(b.page, ["side 4"], "bob: her next message");
  await waitFor("alice: seen by bob under her latest", async () => (await message(a.page, "side 4").locator(".seen-by").textContent().catch(() => null)) === `Seen by ${bob}`);
  assert.equal(await message(a.page, "side 3").locator(".seen-by").count(), 0);
  // Bob's own receipt line says nothing: he has no message there.
  assert.equal(await b.page.locator(".seen-by").count(), 0);
  // Alice's page never stored a read position in the channel: everything new there was her own.
  await new Promise((r) => setTimeout(r, 1_500));
  assert.deepEqual(aliceAcks.filter((x) => x.channel === side), []);
  // Bob answers: alice, looking at the channel, reads it once.
  await say(b.page, "got it");
  await waitShown(a.page, ["got it"], "alice: bob's answer");
  const answer = (await shown(a.page)).find((m) => m.body === "got it")?.seq ?? 0;
  await waitFor("alice: her read position sent", () => aliceAcks.some((x) => x.channel === side && x.seq === answer));
  await new Promise((r) => setTimeout(r, 1_500));
  assert.deepEqual(aliceAcks.filter((x) => x.channel === side), [{ channel: side, seq: answer }]);
  assert.equal(await message(a.page, "side 4").locator(".seen-by").textContent(), `Seen by ${bob}`);
});

pageTest("a mention of bob is highlighted on his page, and his badge shows it mentions him", 60_000, async () => {
  const a = person("alice");
  const b = person("bob");
  await openChannel(b.page, general);
  await say(a.page, `@${bob} can you look at this?`);
  await say(a.page, "thanks!");
  await waitBadge(b.page, side, 2, 1, "bob: 2 unread, 1 mentioning him");
  const shownBadge = await badge(b.page, side);
  assert.equal(shownBadge.mention, true, "the badge is highlighted");
  assert.equal(await b.page.title(), `(2) ${bob} · chatmesh`);
  await shot(b.page, "04-mention-badge-bob");

  await openChannel(b.page, side);
  await waitShown(b.page, [`@${bob} can you look at this?`], "bob: the mention");
  const mention = message(b.page, "can you look at this?");
  assert.equal(await mention.getAttribute("data-mentions-me"), "true");
  assert.match((await mention.getAttribute("class")) ?? "", /\bmentions-me\b/);
  assert.equal(await mention.locator(".mention.me").textContent(), `@${bob}`);
  assert.equal(await message(b.page, "thanks!").getAttribute("data-mentions-me"), null);
  await waitBadge(b.page, side, 0, 0, "bob: the badge cleared");
  await shot(b.page, "05-mention-bob");

  // Alice sees her mention emphasized, but it is not about her.
  const own = message(a.page, "can you look at this?");
  assert.equal(await own.locator(".mention").textContent(), `@${bob}`);
  assert.equal(await own.locator(".mention.me").count(), 0);
  assert.equal(await own.getAttribute("data-mentions-me"), null);
});

pageTest("a hidden page counts the open channel; bob reading it in another session clears it here", 120_000, async () => {
  if (!browser || !server) throw new Error("no browser");
  const a = person("alice");
  const b = person("bob");
  // Bob's page goes to the background with the channel open.
  await setVisible(b.page, false);
  await say(a.page, "while you were away");
  await waitShown(b.page, ["while you were away"], "bob: the message, in the background");
  await waitBadge(b.page, side, 1, 0, "bob: 1 unread while the page is hidden");
  assert.equal(await b.page.title(), `(1) ${bob} · chatmesh`);

  // A second session of bob's: its counts come from the gateway at sign-in.
  const b2 = (people.bob2 = await signInAs(browser, server.url, bob));
  await waitBadge(b2.page, side, 1, 0, "bob's second session: 1 unread from the gateway");
  await openChannel(b2.page, side);
  await waitShown(b2.page, ["while you were away"], "bob's second session: the message");
  await waitBadge(b2.page, side, 0, 0, "bob's second session: read");
  // The first session hears of it and clears its badge, still hidden.
  await waitBadge(b.page, side, 0, 0, "bob: read in his other session");
  await waitFor("bob: the title without a count", async () => (await b.page.title()) === `${bob} · chatmesh`);
  await shot(b.page, "06-read-elsewhere-bob");

  // Back in front: nothing new, and the list shows everything once.
  await setVisible(b.page, true);
  await waitBadge(b.page, side, 0, 0, "bob: still read");
  const list = await shown(b.page);
  assert.equal(new Set(list.map((m) => m.id)).size, list.length, "a message is shown twice");
});
