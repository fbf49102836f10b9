// The page in Debian's Chromium against the real mesh (the SDK's harness:
// chat, presence, storage, media and two gateways in redirect mode), served
// by server.mjs. Two browser contexts are two users. The tests share the
// mesh, the page server and the browser, and run in order.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium, type Browser, type Page } from "playwright-core";

import { Mesh } from "../../../js/test/harness/mesh.js";
import { ensureResultsDir, makePng, sleep, startChromium, startPageServer, waitFor, type Chromium, type PageServer } from "../support.js";
import { pendingCount, say, shown, signInAs, waitShown, type Person, type Shown } from "./pages.js";

const mesh = new Mesh({ gateways: 2, mode: "redirect" });
const results = ensureResultsDir();
const alice = `alice-${mesh.run}`;
const bob = `bob-${mesh.run}`;
/** Messages stored before anyone opens the page, to page back through. */
const SEEDED = 120;
const PNG_WIDTH = 96;
const PNG_HEIGHT = 64;

let channel = "";
let server: PageServer | undefined;
let chrome: Chromium | undefined;
let browser: Browser | undefined;
let failed = false;

const people: Partial<Record<"alice" | "bob", Person>> = {};

function person(name: "alice" | "bob"): Person {
  const p = people[name];
  if (!p) throw new Error(`${name} has no page`);
  return p;
}

async function connState(page: Page): Promise<string> {
  return (await page.getAttribute("#conn", "data-state")) ?? "";
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(results, `${name}.png`) });
}

/** Every stored message of the channel, from the history API, oldest first. */
async function stored(): Promise<Shown[]> {
  const token = await mesh.devToken(alice);
  const all: Shown[] = [];
  let before: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ limit: "100" });
    if (before !== undefined) q.set("before", before);
    const r = await fetch(`${mesh.httpUrl(0)}/v1/channels/${encodeURIComponent(channel)}/messages?${q}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, `history: ${await r.clone().text()}`);
    const page = (await r.json()) as { messages: { seq: number; message_id: string; sender_id: string; body: string }[]; has_more: boolean };
    all.unshift(...page.messages.map((m) => ({ seq: m.seq, id: m.message_id, sender: m.sender_id, body: m.body })));
    if (!page.has_more || page.messages.length === 0) break;
    before = page.messages[0]?.message_id;
  }
  return all.sort((a, b) => a.seq - b.seq);
}

function assertInOrderOnce(list: Shown[], what: string): void {
  for (let i = 1; i < list.length; i++) {
    const a = list[i - 1];
    const b = list[i];
    assert.ok(a && b && b.seq > a.seq, `${what}: #${i} has seq ${b?.seq} after ${a?.seq}`);
  }
  assert.equal(new Set(list.map((m) => m.id)).size, list.length, `${what}: a message is shown twice`);
}

/** Opens a fresh context and page for `name` and signs in. */
async function signIn(name: "alice" | "bob"): Promise<Person> {
  if (!browser || !server) throw new Error("no browser");
  const p = await signInAs(browser, server.url, name === "alice" ? alice : bob);
  people[name] = p;
  return p;
}

before(
  async () => {
    const started = Date.now();
    await mesh.start();
    channel = await mesh.channelOwnedBy("gw-0", "web");
    await mesh.createChannel(channel, [alice, bob]);
    for (let i = 1; i <= SEEDED; i++) await mesh.sendViaChat(channel, i % 2 === 1 ? alice : bob, `history ${i}`);
    // Storage writes from the log: wait until the history API has them all.
    await waitFor("the seeded messages in storage", async () => (await stored()).length === SEEDED, 60_000, 250);
    server = await startPageServer([mesh.httpUrl(0), mesh.httpUrl(1)], [channel], { logFile: join(results, "page-server.log") });
    chrome = await startChromium(join(results, "chromium.log"));
    browser = await chromium.connectOverCDP(chrome.wsEndpoint);
    console.log(`mesh, page server (${server.url}) and chromium up in ${Date.now() - started}ms; channel ${channel} on gw-0; logs in ${mesh.dir}`);
  },
  { timeout: 300_000 },
);

after(async () => {
  for (const p of Object.values(people)) {
    if (!p) continue;
    writeFileSync(join(results, `console-${p.user.split("-")[0]}.log`), p.console.join("\n") + "\n");
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

pageTest("two users sign in; the newest page of history shows, and scrolling up pages back to the first message", 120_000, async () => {
  const a = await signIn("alice");
  const b = await signIn("bob");
  for (const p of [a, b]) {
    await waitFor(`${p.user}: the newest history page`, async () => (await shown(p.page)).length >= 50);
    const first = await shown(p.page);
    assert.equal(first.at(-1)?.body, `history ${SEEDED}`);
    assert.ok(first.length < SEEDED, "only the newest page is loaded at first");
  }
  assert.equal(await a.page.textContent("#me"), alice);
  await shot(a.page, "01-signed-in-alice");

  // Scroll to the top until the page says the channel begins there.
  await waitFor(
    "alice: the beginning of the channel",
    async () => {
      await a.page.$eval("#messages", (el) => {
        el.scrollTop = 0;
      });
      return (await a.page.getAttribute(".history-edge", "data-state")) === "start";
    },
    30_000,
    250,
  );
  const all = await shown(a.page);
  assert.deepEqual(all.map((m) => m.body), Array.from({ length: SEEDED }, (_, i) => `history ${i + 1}`));
  assertInOrderOnce(all, "alice");
  assert.deepEqual(all.map((m) => m.sender), Array.from({ length: SEEDED }, (_, i) => (i % 2 === 0 ? alice : bob)));
  await shot(a.page, "02-history-start-alice");
  // Bob scrolls with the button instead.
  await waitFor(
    "bob: the beginning of the channel",
    async () => {
      const button = b.page.locator(".history-edge .load-older");
      // Scrolling the button into view may load the page by itself and take the button away.
      if ((await button.count()) > 0) await button.click({ timeout: 2_000 }).catch(() => {});
      return (await b.page.getAttribute(".history-edge", "data-state")) === "start";
    },
    30_000,
    250,
  );
  assert.equal((await shown(b.page)).length, SEEDED);
});

pageTest("each sees the other online, and a sign-out and sign-in as leave and join", 90_000, async () => {
  const a = person("alice");
  const b = person("bob");
  for (const p of [a, b]) {
    for (const u of [alice, bob]) {
      await p.page.waitForSelector(`#online li[data-user="${u}"]`, { timeout: 20_000 });
    }
  }
  assert.equal(await a.page.textContent("#online-count"), "2");
  await shot(b.page, "03-online-bob");

  await b.page.click("#sign-out");
  await b.page.waitForSelector("#sign-in:not([hidden])");
  await a.page.waitForSelector(`#activity li[data-event="leave"][data-user="${bob}"]`, { timeout: 30_000 });
  await waitFor("bob gone from alice's online list", async () => (await a.page.locator(`#online li[data-user="${bob}"]`).count()) === 0);

  await b.page.fill("#user-id", bob);
  await b.page.click("#sign-in-button");
  await b.page.waitForSelector('#conn[data-state="connected"]', { timeout: 30_000 });
  await b.page.waitForSelector('#sub-state[data-state="subscribed"]', { timeout: 30_000 });
  await a.page.waitForSelector(`#online li[data-user="${bob}"]`, { timeout: 30_000 });
  const events = await a.page.$$eval("#activity li", (items) => items.map((li) => `${(li as HTMLElement).dataset["user"]} ${(li as HTMLElement).dataset["event"]}`));
  // Newest first: bob came back after he left.
  const join = events.indexOf(`${bob} join`);
  const leave = events.indexOf(`${bob} leave`);
  assert.ok(join >= 0 && leave > join, `alice's activity: ${events.join(", ")}`);
  await shot(a.page, "04-presence-alice");
});

pageTest("messages typed in both pages show once and in the same order in both", 90_000, async () => {
  const a = person("alice");
  const b = person("bob");
  const fromA = Array.from({ length: 6 }, (_, i) => `hello from alice ${i + 1}`);
  const fromB = Array.from({ length: 6 }, (_, i) => `hi from bob ${i + 1}`);
  await Promise.all([
    (async () => {
      for (const m of fromA) await say(a.page, m);
    })(),
    (async () => {
      for (const m of fromB) await say(b.page, m);
    })(),
  ]);
  for (const p of [a, b]) {
    await waitShown(p.page, [...fromA, ...fromB], `${p.user}: the 12 messages`);
    await waitFor(`${p.user}: nothing pending`, async () => (await pendingCount(p.page)) === 0);
  }
  const onA = await shown(a.page);
  const onB = await shown(b.page);
  assertInOrderOnce(onA, "alice");
  assertInOrderOnce(onB, "bob");
  const tail = (list: Shown[]) => list.filter((m) => !m.body.startsWith("history "));
  assert.deepEqual(tail(onA), tail(onB));
  assert.deepEqual(tail(onA).filter((m) => m.sender === alice).map((m) => m.body), fromA);
  assert.deepEqual(tail(onA).filter((m) => m.sender === bob).map((m) => m.body), fromB);
  assert.equal(await a.page.locator(".message.mine").count(), SEEDED / 2 + fromA.length);
  await shot(a.page, "05-conversation-alice");
  await shot(b.page, "05-conversation-bob");
});

pageTest("an image uploaded in one page shows inline in the other", 90_000, async () => {
  const a = person("alice");
  const b = person("bob");
  await a.page.fill("#body", "a picture");
  await a.page.setInputFiles("#file", { name: "squares.png", mimeType: "image/png", buffer: makePng(PNG_WIDTH, PNG_HEIGHT) });
  for (const p of [b, a]) {
    const img = p.page.locator(`.message[data-sender="${alice}"] img.attachment-image`).last();
    await img.waitFor({ timeout: 30_000 });
    await waitFor(
      `${p.user}: the image decoded`,
      async () => img.evaluate((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth > 0),
      30_000,
    );
    const size = await img.evaluate((el) => [(el as HTMLImageElement).naturalWidth, (el as HTMLImageElement).naturalHeight]);
    assert.deepEqual(size, [PNG_WIDTH, PNG_HEIGHT]);
    const src = (await img.getAttribute("src")) ?? "";
    assert.match(src, /\/objects\/media\//, "the img comes from the media store's download URL");
    assert.equal(await p.page.locator(".message").last().locator(".body").textContent(), "a picture");
  }
  assert.equal(await pendingCount(a.page), 0);
  await b.page.locator("img.attachment-image").last().scrollIntoViewIfNeeded();
  await shot(b.page, "06-image-bob");
});

pageTest("a gateway killed mid-conversation and restarted: nothing is lost or doubled on screen", 180_000, async () => {
  const a = person("alice");
  const b = person("bob");
  assert.equal(await mesh.owner(channel), "gw-0");
  await say(a.page, "before the crash (alice)");
  await say(b.page, "before the crash (bob)");
  for (const p of [a, b]) await waitShown(p.page, ["before the crash (alice)", "before the crash (bob)"], `${p.user}: before`);

  // Both pages are on gw-0, which owns the channel.
  await mesh.kill("gw-0");
  for (const p of [a, b]) await waitFor(`${p.user}: the indicator shows the lost connection`, async () => (await connState(p.page)) !== "connected", 15_000, 20);
  const duringA = ["while gw-0 is down 1 (alice)", "while gw-0 is down 2 (alice)"];
  const duringB = ["while gw-0 is down (bob)"];
  for (const m of duringA) await say(a.page, m);
  for (const m of duringB) await say(b.page, m);
  // Typed while disconnected: on screen at once, as waiting.
  assert.ok((await pendingCount(a.page)) + (await shown(a.page)).filter((m) => duringA.includes(m.body)).length >= duringA.length);
  await shot(a.page, "07-gateway-down-alice");
  // The banner shows exactly while the indicator is not green.
  const [state, banner] = await a.page.evaluate(() => [document.getElementById("conn")?.dataset["state"], !document.getElementById("offline-banner")?.hidden]);
  assert.equal(banner, state !== "connected");

  // The SDK moves to gw-1 once the ring gives it the channel.
  for (const p of [a, b]) {
    await waitFor(`${p.user}: connected again`, async () => (await connState(p.page)) === "connected", 60_000, 100);
    await waitShown(p.page, [...duringA, ...duringB], `${p.user}: the messages sent while gw-0 was down`, 60_000);
  }
  assert.notEqual(await mesh.owner(channel, 1), "gw-0");
  await shot(b.page, "08-failed-over-bob");

  await say(a.page, "on gw-1 (alice)");
  await mesh.restart("gw-0");
  await mesh.waitRing();
  await say(b.page, "gw-0 is back (bob)");
  await say(a.page, "after the restart (alice)");
  const last = ["on gw-1 (alice)", "gw-0 is back (bob)", "after the restart (alice)"];
  for (const p of [a, b]) {
    await waitShown(p.page, last, `${p.user}: the messages after the restart`, 60_000);
    await waitFor(`${p.user}: connected, nothing pending`, async () => (await connState(p.page)) === "connected" && (await pendingCount(p.page)) === 0, 60_000, 100);
  }
  // Everything the channel stored is on both screens, once, in order.
  await sleep(1_000);
  const expected = [...duringA, ...duringB, ...last];
  await waitFor("storage has the conversation", async () => {
    const bodies = new Set((await stored()).map((m) => m.body));
    return expected.every((e) => bodies.has(e));
  }, 30_000, 250);
  const truth = await stored();
  assert.equal((await shown(a.page))[0]?.body, "history 1", "alice paged back to the start");
  for (const p of [a, b]) {
    // Bob signed in again in between, so he has history from some page on.
    const list = await shown(p.page);
    assertInOrderOnce(list, p.user);
    const from = list[0]?.seq ?? 0;
    assert.deepEqual(list, truth.filter((m) => m.seq >= from), `${p.user}: the screen is the stored channel`);
    assert.ok(Number(await p.page.getAttribute("#conn", "data-reconnects")) > 0, `${p.user}: the page saw reconnects`);
    assert.equal(await p.page.isVisible("#offline-banner"), false);
  }
  // The image of the previous test is still there.
  assert.ok(await b.page.locator("img.attachment-image").last().evaluate((el) => (el as HTMLImageElement).naturalWidth > 0));
  await shot(a.page, "09-after-restart-alice");
  await shot(b.page, "09-after-restart-bob");
});

/** Creates `id` from the page's "New channel" form; it opens once the gateway made it. */
async function createFromPage(page: Page, id: string, name: string, visibility: "private" | "public"): Promise<void> {
  await page.fill("#new-channel-id", id);
  await page.fill("#new-channel-name", name);
  await page.check(`#new-channel input[name="visibility"][value="${visibility}"]`);
  await page.click("#create-channel");
  await page.waitForSelector(`#channels li.active[data-channel="${id}"][data-role="owner"][data-visibility="${visibility}"]`, { timeout: 15_000 });
  await page.waitForSelector('#sub-state[data-state="subscribed"]', { timeout: 30_000 });
  await page.waitForSelector(`#members li[data-user="${await page.textContent("#me")}"][data-role="owner"]`, { timeout: 15_000 });
}

/** Opens `id` from the sidebar and waits until it is live. */
async function openFromList(page: Page, id: string): Promise<void> {
  await page.click(`#channels li[data-channel="${id}"] .channel-button`);
  await page.waitForSelector(`#channels li.active[data-channel="${id}"]`);
  await page.waitForSelector('#sub-state[data-state="subscribed"]', { timeout: 30_000 });
}

/** The message bodies of the open channel, oldest first. */
async function bodies(page: Page): Promise<string[]> {
  return (await shown(page)).map((m) => m.body);
}

pageTest("a private channel created in one page: its owner adds the other user, who finds it in their list, and they talk", 120_000, async () => {
  const a = person("alice");
  const b = person("bob");
  const ch = `web-${mesh.run}-private`;
  await createFromPage(a.page, ch, "Project X", "private");
  assert.equal(await a.page.textContent("#channel-title"), `# ${ch}`);
  assert.match((await a.page.textContent("#channel-info")) ?? "", /private · you are an owner/);
  assert.equal(await a.page.locator("#members li").count(), 1);
  assert.equal(await b.page.locator(`#channels li[data-channel="${ch}"]`).count(), 0, "bob is not in it yet");

  // Only the owner has the form to add members.
  await a.page.fill("#member-id", bob);
  await a.page.click('#add-member button[type="submit"]');
  await a.page.waitForSelector(`#members li[data-user="${bob}"][data-role="member"]`, { timeout: 15_000 });
  await shot(a.page, "10-private-channel-alice");

  // Bob's page lists it when it next reloads his channels.
  await b.page.waitForSelector(`#channels li[data-channel="${ch}"][data-role="member"]`, { timeout: 20_000 });
  await openFromList(b.page, ch);
  assert.equal(await b.page.isVisible("#add-member"), false, "a member who is not an owner adds no one");
  assert.equal(await b.page.locator("#members .remove-member").count(), 0);
  await say(b.page, "thanks for adding me");
  await waitShown(a.page, ["thanks for adding me"], "alice: bob's message");
  await say(a.page, "welcome, bob");
  for (const p of [a, b]) await waitShown(p.page, ["thanks for adding me", "welcome, bob"], `${p.user}: both messages`);
  assert.deepEqual(await bodies(a.page), ["thanks for adding me", "welcome, bob"]);
  assert.deepEqual(await shown(b.page), await shown(a.page));
  await waitFor("nothing pending", async () => (await pendingCount(a.page)) + (await pendingCount(b.page)) === 0);
  await shot(b.page, "11-private-channel-bob");

  // The owner removes him: his page takes the channel off his list.
  await a.page.click(`#members li[data-user="${bob}"] .remove-member`);
  await a.page.waitForSelector(`#members li[data-user="${bob}"]`, { state: "detached", timeout: 15_000 });
  await b.page.waitForSelector(`#channels li[data-channel="${ch}"]`, { state: "detached", timeout: 20_000 });
  assert.match((await b.page.textContent("#channels-note")) ?? "", new RegExp(`no longer a member of # ${ch}`));
  await shot(b.page, "12-removed-bob");
});

pageTest("a public channel created in one page is found in the other's public list, joined and left", 120_000, async () => {
  const a = person("alice");
  const b = person("bob");
  const ch = `web-${mesh.run}-public`;
  await createFromPage(a.page, ch, "Town square", "public");

  // The search lists public channels only: the private one of the last test shares the prefix.
  await b.page.fill("#public-prefix", `web-${mesh.run}-p`);
  await b.page.click('#find-public button[type="submit"]');
  await b.page.waitForSelector(`#public-channels li[data-channel="${ch}"][data-member="false"]`, { timeout: 15_000 });
  const listed = await b.page.$$eval("#public-channels li[data-channel]", (items) => items.map((li) => (li as HTMLElement).dataset["channel"]));
  assert.deepEqual(listed, [ch]);
  assert.match((await b.page.textContent(`#public-channels li[data-channel="${ch}"]`)) ?? "", /Town square/);
  await shot(b.page, "13-public-list-bob");

  await b.page.click(`#public-channels li[data-channel="${ch}"] button`);
  await b.page.waitForSelector(`#channels li.active[data-channel="${ch}"][data-role="member"][data-visibility="public"]`, { timeout: 15_000 });
  await b.page.waitForSelector('#sub-state[data-state="subscribed"]', { timeout: 30_000 });
  await b.page.waitForSelector(`#public-channels li[data-channel="${ch}"][data-member="true"]`);
  await say(b.page, "hello, square");
  await waitShown(a.page, ["hello, square"], "alice: bob's message in the public channel");
  // Alice's members panel has him: his presence in the channel told her page to look.
  await a.page.waitForSelector(`#members li[data-user="${bob}"][data-role="member"]`, { timeout: 20_000 });
  await shot(a.page, "14-public-joined-alice");

  await b.page.click("#leave-channel");
  await b.page.waitForSelector(`#channels li[data-channel="${ch}"]`, { state: "detached", timeout: 15_000 });
  await b.page.waitForSelector(`#public-channels li[data-channel="${ch}"][data-member="false"]`);
  assert.match((await b.page.textContent("#channels-note")) ?? "", new RegExp(`You left # ${ch}`));
  await a.page.waitForSelector(`#members li[data-user="${bob}"]`, { state: "detached", timeout: 20_000 });
  await shot(b.page, "15-left-bob");
});
