// What the browser tests do with a page: sign a user in in a fresh browser
// context, type and send, and read what the page shows.

import type { Browser, BrowserContext, Page } from "playwright-core";

import { waitFor } from "../support.js";

export interface Person {
  user: string;
  context: BrowserContext;
  page: Page;
  errors: string[];
  console: string[];
}

/** Opens a fresh context and page at `url` and signs `user` in. */
export async function signInAs(browser: Browser, url: string, user: string): Promise<Person> {
  const context = await browser.newContext({ viewport: { width: 1180, height: 760 } });
  const page = await context.newPage();
  const p: Person = { user, context, page, errors: [], console: [] };
  page.on("pageerror", (err) => p.errors.push(String(err)));
  page.on("console", (m) => p.console.push(`[${m.type()}] ${m.text()}`));
  await page.goto(url);
  await signInPage(page, user);
  return p;
}

/** Signs `user` in on a page that shows the sign-in form; resolves once the first channel is live. */
export async function signInPage(page: Page, user: string): Promise<void> {
  await page.waitForSelector("body[data-ready=true]");
  await page.fill("#user-id", user);
  await page.click("#sign-in-button");
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 30_000 });
  await page.waitForSelector('#sub-state[data-state="subscribed"]', { timeout: 30_000 });
}

/** What a page shows, oldest first. */
export interface Shown {
  seq: number;
  id: string;
  sender: string;
  body: string;
}

export async function shown(page: Page): Promise<Shown[]> {
  return page.$$eval(".message-list > .message", (items) =>
    items.map((li) => {
      const el = li as HTMLElement;
      return {
        seq: Number(el.dataset["seq"]),
        id: el.dataset["messageId"] ?? "",
        sender: el.dataset["sender"] ?? "",
        body: el.querySelector(".body")?.textContent ?? "",
      };
    }),
  );
}

export async function pendingCount(page: Page): Promise<number> {
  return page.locator(".pending-list > .pending").count();
}

/** Types `body` into the composer and sends it. */
export async function say(page: Page, body: string): Promise<void> {
  await page.fill("#body", body);
  await page.press("#body", "Enter");
}

export async function waitShown(page: Page, bodies: string[], what: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    what,
    async () => {
      const have = new Set((await shown(page)).map((m) => m.body));
      return bodies.every((b) => have.has(b));
    },
    timeoutMs,
    100,
  );
}
