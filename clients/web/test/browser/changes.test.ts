// Message changes in Debian's Chromium against the real mesh: edits,
// deletes, reactions, replies and threads, and typing, made in one page
// and seen in the other, then the same state from history after a reload.
// Two browser contexts are two users; the tests share the mesh, the page
// server and the browser, and run in order.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium, type Browser, type Locator, type Page } from "playwright-core";

import { Mesh } from "../../../js/test/harness/mesh.js";
import { ensureResultsDir, startChromium, startPageServer, waitFor, type Chromium, type PageServer } from "../support.js";
import { pendingCount, say, shown, signInAs, signInPage, waitShown, type Person } from "./pages.js";

const mesh = new Mesh({ gateways: 2, mode: "redirect" });
const results = ensureResultsDir();
const alice = `alice-${mesh.run}`;
const bob = `bob-${mesh.run}`;
/** Messages stored before anyone opens the page. */
const SEEDED = 5;

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

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(results, `changes-${name}.png`) });
}

/** The channel list's node of post `seq`. */
function post(page: Page, seq: number): Locator {
  return page.locator(`.message-list > .message[data-seq="${seq}"]`);
}

/** The `seq` of the message showing `body` (once it shows). */
async function seqOf(page: Page, body: string): Promise<number> {
  await waitShown(page, [body], `"${body}" on the page`);
  const found = (await shown(page)).find((m) => m.body === body);
  if (!found) throw new Error(`"${body}" is not shown`);
  return found.seq;
}

async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? "").trim();
}

/** Post `seq`'s reactions as the page shows them: emoji → count, and whether the user is among them. */
async function reactions(page: Page, seq: number): Promise<Record<string, { count: number; me: boolean }>> {
  return post(page, seq).evaluate((li) => {
    const out: Record<string, { count: number; me: boolean }> = {};
    for (const chip of li.querySelectorAll<HTMLElement>(".reactions .reaction")) {
      out[chip.dataset["emoji"] ?? ""] = { count: Number(chip.dataset["count"]), me: chip.getAttribute("aria-pressed") === "true" };
    }
    return out;
  });
}

async function waitReactions(page: Page, seq: number, want: Record<string, { count: number; me: boolean }>, what: string): Promise<void> {
  let last: unknown;
  try {
    await waitFor(what, async () => {
      last = await reactions(page, seq);
      return JSON.stringify(last) === JSON.stringify(want);
    });
  } catch (err) {
    throw new Error(`${String(err)}; the page shows ${JSON.stringify(last)}`);
  }
}

async function typingLine(page: Page): Promise<string> {
  return text(page.locator("#typing"));
}

before(
  async () => {
    const started = Date.now();
    await mesh.start();
    channel = await mesh.channelOwnedBy("gw-0", "changes");
    await mesh.createChannel(channel, [alice, bob]);
    for (let i = 1; i <= SEEDED; i++) await mesh.sendViaChat(channel, i % 2 === 1 ? alice : bob, `earlier ${i}`);
    server = await startPageServer([mesh.httpUrl(0), mesh.httpUrl(1)], [channel], { logFile: join(results, "changes-page-server.log") });
    chrome = await startChromium(join(results, "changes-chromium.log"));
    browser = await chromium.connectOverCDP(chrome.wsEndpoint);
    console.log(`mesh, page server (${server.url}) and chromium up in ${Date.now() - started}ms; channel ${channel}; logs in ${mesh.dir}`);
  },
  { timeout: 300_000 },
);

after(async () => {
  for (const p of Object.values(people)) {
    if (!p) continue;
    writeFileSync(join(results, `changes-console-${p.user.split("-")[0]}.log`), p.console.join("\n") + "\n");
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

/** Alice's message the tests edit, react to and reply to. */
let plan = 0;
/** Bob's message he deletes. */
let oops = 0;

pageTest("an edit by its author shows on the other page, marked edited", 90_000, async () => {
  if (!browser || !server) throw new Error("no browser");
  const a = (people.alice = await signInAs(browser, server.url, alice));
  const b = (people.bob = await signInAs(browser, server.url, bob));
  for (const p of [a, b]) await waitShown(p.page, [`earlier ${SEEDED}`], `${p.user}: the history`);

  await say(a.page, "see you at 5");
  plan = await seqOf(a.page, "see you at 5");
  assert.equal(await seqOf(b.page, "see you at 5"), plan);
  // Only the author may edit.
  assert.equal(await post(b.page, plan).locator(".edit-action").count(), 0, "bob cannot edit alice's message");
  assert.equal(await post(b.page, plan).locator(".delete-action").count(), 0, "bob cannot delete alice's message");

  await post(a.page, plan).locator(".edit-action").click();
  const input = post(a.page, plan).locator(".edit-input");
  await input.waitFor();
  assert.equal(await input.inputValue(), "see you at 5");
  assert.ok(await input.evaluate((el) => el === document.activeElement), "the editor has the focus");
  // Escape gives up; nothing changes.
  await input.press("Escape");
  await post(a.page, plan).locator(".edit-input").waitFor({ state: "detached" });
  assert.equal(await text(post(a.page, plan).locator(".body")), "see you at 5");

  await post(a.page, plan).locator(".edit-action").click();
  await post(a.page, plan).locator(".edit-input").fill("see you at 7");
  await post(a.page, plan).locator(".edit-input").press("Enter");
  for (const p of [b, a]) {
    await waitFor(`${p.user}: the edited text`, async () => (await text(post(p.page, plan).locator(".body"))) === "see you at 7");
    await waitFor(`${p.user}: marked edited`, async () => (await post(p.page, plan).getAttribute("data-edited")) === "true");
    await waitFor(`${p.user}: "(edited)"`, async () => (await text(post(p.page, plan).locator(".edited"))) === "(edited)");
  }
  // Still one message, in its place.
  assert.equal((await shown(b.page)).filter((m) => m.seq === plan).length, 1);
  assert.equal((await shown(b.page)).filter((m) => m.body === "see you at 5").length, 0);
  await shot(b.page, "01-edited-bob");
});

pageTest("a delete by its author leaves a tombstone on both pages", 60_000, async () => {
  const a = person("alice");
  const b = person("bob");
  await say(b.page, "oops, wrong channel");
  oops = await seqOf(b.page, "oops, wrong channel");
  await seqOf(a.page, "oops, wrong channel");

  await post(b.page, oops).locator(".delete-action").click();
  // It asks first; Cancel keeps the message.
  await post(b.page, oops).locator(".confirm-delete-no").click();
  await post(b.page, oops).locator(".confirm-delete").waitFor({ state: "detached" });
  assert.equal(await post(b.page, oops).getAttribute("data-deleted"), null);
  await post(b.page, oops).locator(".delete-action").click();
  await post(b.page, oops).locator(".confirm-delete-yes").click();
  for (const p of [a, b]) {
    await waitFor(`${p.user}: the tombstone`, async () => (await post(p.page, oops).getAttribute("data-deleted")) === "true");
    assert.equal(await text(post(p.page, oops).locator(".body")), "message deleted");
    assert.equal(await post(p.page, oops).locator(".message-actions").count(), 0, "a tombstone takes no more changes");
  }
  assert.equal((await shown(a.page)).filter((m) => m.body === "oops, wrong channel").length, 0);
  await shot(a.page, "02-deleted-alice");
});

pageTest("a reaction's count toggles on both pages, highlighted for who reacted", 60_000, async () => {
  const a = person("alice");
  const b = person("bob");
  // Bob picks 👍 from the picker.
  await post(b.page, plan).locator(".react-action").click();
  await post(b.page, plan).locator('.emoji-picker .pick[data-emoji="👍"]').click();
  await waitReactions(b.page, plan, { "👍": { count: 1, me: true } }, "bob: his 👍");
  await waitReactions(a.page, plan, { "👍": { count: 1, me: false } }, "alice: bob's 👍");
  assert.equal(await post(b.page, plan).locator(".emoji-picker").count(), 0, "the picker closes");

  // Alice clicks the count: hers joins it.
  await post(a.page, plan).locator('.reaction[data-emoji="👍"]').click();
  await waitReactions(a.page, plan, { "👍": { count: 2, me: true } }, "alice: two 👍, hers among them");
  await waitReactions(b.page, plan, { "👍": { count: 2, me: true } }, "bob: two 👍");
  await shot(b.page, "03-reactions-bob");

  // Bob takes his back, then alice hers: the emoji is gone.
  await post(b.page, plan).locator('.reaction[data-emoji="👍"]').click();
  await waitReactions(b.page, plan, { "👍": { count: 1, me: false } }, "bob: his 👍 taken back");
  await waitReactions(a.page, plan, { "👍": { count: 1, me: true } }, "alice: hers left");
  await post(a.page, plan).locator('.reaction[data-emoji="👍"]').click();
  for (const p of [a, b]) await waitReactions(p.page, plan, {}, `${p.user}: no reactions`);

  // Two emoji, for the reload at the end.
  await post(a.page, plan).locator(".react-action").click();
  await post(a.page, plan).locator('.emoji-picker .pick[data-emoji="🎉"]').click();
  await post(b.page, plan).locator(".react-action").click();
  await post(b.page, plan).locator('.emoji-picker .pick[data-emoji="❤️"]').click();
  await waitReactions(a.page, plan, { "🎉": { count: 1, me: true }, "❤️": { count: 1, me: false } }, "alice: 🎉 and ❤️");
  await waitReactions(b.page, plan, { "🎉": { count: 1, me: false }, "❤️": { count: 1, me: true } }, "bob: 🎉 and ❤️");
});

pageTest("a reply quotes its message, and the thread shows the replies", 90_000, async () => {
  const a = person("alice");
  const b = person("bob");
  await post(b.page, plan).locator(".reply-action").click();
  await b.page.waitForSelector(`#reply-target[data-seq="${plan}"]:not([hidden])`);
  assert.match(await text(b.page.locator("#reply-target-text")), /see you at 7/);
  await say(b.page, "7 works for me");
  assert.equal(await b.page.isVisible("#reply-target"), false, "sending ends the reply");
  const reply = await seqOf(b.page, "7 works for me");
  for (const p of [a, b]) {
    await waitShown(p.page, ["7 works for me"], `${p.user}: the reply`);
    assert.equal(await post(p.page, reply).getAttribute("data-reply-to"), String(plan));
    const quote = await text(post(p.page, reply).locator(".reply-quote"));
    assert.ok(quote.includes(alice) && quote.includes("see you at 7"), `${p.user}: the reply quotes "${quote}"`);
    await waitFor(`${p.user}: "1 reply" under the message`, async () => (await text(post(p.page, plan).locator(".replies"))) === "1 reply");
  }

  // Alice opens the thread from the count and answers there.
  await post(a.page, plan).locator(".replies").click();
  await a.page.waitForSelector(`#thread[data-root="${plan}"][data-state="loaded"]:not([hidden])`);
  assert.equal(await text(a.page.locator("#thread-root .message .body")), "see you at 7");
  await waitFor("alice: the reply in the thread", async () => (await a.page.locator("#thread-replies > .message .body").allTextContents()).join("|") === "7 works for me");
  await a.page.fill("#thread-body", "great, see you then");
  await a.page.press("#thread-body", "Enter");
  await waitFor(
    "alice: both replies in the thread",
    async () => (await a.page.locator("#thread-replies > .message .body").allTextContents()).join("|") === "7 works for me|great, see you then",
  );
  assert.equal(await text(a.page.locator("#thread-count")), "2 replies");
  // The thread's reply is in the channel too, quoting the message.
  for (const p of [a, b]) {
    const seq = await seqOf(p.page, "great, see you then");
    assert.equal(await post(p.page, seq).getAttribute("data-reply-to"), String(plan));
    await waitFor(`${p.user}: "2 replies"`, async () => (await text(post(p.page, plan).locator(".replies"))) === "2 replies");
  }
  await shot(a.page, "04-thread-alice");

  // Bob opens it from the quote of a reply; an edit of a reply shows in his open thread.
  await post(b.page, reply).locator(".reply-quote").click();
  await b.page.waitForSelector(`#thread[data-root="${plan}"][data-state="loaded"]:not([hidden])`);
  await waitFor(
    "bob: the thread's replies",
    async () => (await b.page.locator("#thread-replies > .message .body").allTextContents()).join("|") === "7 works for me|great, see you then",
  );
  await post(b.page, reply).locator(".edit-action").click();
  await post(b.page, reply).locator(".edit-input").fill("7 works for me, I'll bring the slides");
  await post(b.page, reply).locator(".edit-input").press("Enter");
  await waitFor(
    "bob: the edited reply in the thread",
    async () => (await b.page.locator(`#thread-replies > .message[data-seq="${reply}"] .body`).textContent()) === "7 works for me, I'll bring the slides",
  );
  await shot(b.page, "05-thread-bob");
  for (const p of [a, b]) {
    await p.page.click("#thread-close");
    await p.page.waitForSelector("#thread", { state: "hidden" });
    await waitFor(`${p.user}: nothing pending`, async () => (await pendingCount(p.page)) === 0);
  }
});

pageTest("typing in one page shows on the other, and stops when the draft is cleared", 60_000, async () => {
  const a = person("alice");
  const b = person("bob");
  await a.page.locator("#body").pressSequentially("are we", { delay: 30 });
  await waitFor("bob: alice is typing", async () => (await typingLine(b.page)) === `${alice} is typing…`);
  // A page does not show its own user typing.
  assert.equal(await typingLine(a.page), "");
  await shot(b.page, "06-typing-bob");

  // Bob starts too: alice sees him; he still sees alice.
  await b.page.fill("#body", "yes");
  await waitFor("alice: bob is typing", async () => (await typingLine(a.page)) === `${bob} is typing…`);
  await waitFor("bob: alice still typing", async () => (await typingLine(b.page)) === `${alice} is typing…`, 3_000);

  // A cleared draft stops at once; a sent one too.
  await a.page.fill("#body", "");
  await waitFor("bob: alice stopped", async () => (await typingLine(b.page)) === "", 10_000);
  await b.page.press("#body", "Enter");
  await waitFor("alice: bob stopped", async () => (await typingLine(a.page)) === "", 10_000);
  await waitShown(a.page, ["yes"], "alice: bob's message");
});

pageTest("after a reload the page shows every change from history, and the thread", 90_000, async () => {
  const b = person("bob");
  await b.page.reload();
  await signInPage(b.page, bob);
  await waitShown(b.page, ["see you at 7", "yes"], "bob: the history after the reload");
  const list = await shown(b.page);
  assert.equal(list.filter((m) => m.seq === plan).length, 1);
  assert.equal(await post(b.page, plan).getAttribute("data-edited"), "true");
  assert.equal(await text(post(b.page, plan).locator(".edited")), "(edited)");
  assert.equal(await post(b.page, oops).getAttribute("data-deleted"), "true");
  assert.equal(await text(post(b.page, oops).locator(".body")), "message deleted");
  await waitReactions(b.page, plan, { "🎉": { count: 1, me: false }, "❤️": { count: 1, me: true } }, "bob: the reactions from history");
  assert.equal(await text(post(b.page, plan).locator(".replies")), "2 replies");
  const reply = list.find((m) => m.body.startsWith("7 works for me"));
  assert.equal(reply?.body, "7 works for me, I'll bring the slides");
  assert.ok(reply && (await text(post(b.page, reply.seq).locator(".reply-quote"))).includes("see you at 7"));

  // A change after the reload applies once, on top of the stored state.
  const a = person("alice");
  await post(a.page, plan).locator('.reaction[data-emoji="❤️"]').click();
  await waitReactions(b.page, plan, { "🎉": { count: 1, me: false }, "❤️": { count: 2, me: true } }, "bob: alice's ❤️ after the reload");

  await post(b.page, plan).locator(".replies").click();
  await b.page.waitForSelector(`#thread[data-root="${plan}"][data-state="loaded"]:not([hidden])`);
  assert.deepEqual(await b.page.locator("#thread-replies > .message .body").allTextContents(), ["7 works for me, I'll bring the slides", "great, see you then"]);
  await shot(b.page, "07-reloaded-bob");
  await b.page.click("#thread-close");
});
