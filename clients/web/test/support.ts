// What the tests share: the package's directories, the page server as a
// process, Debian's Chromium under Playwright, and a PNG maker.

import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";

/** clients/web, found from this file in test/ or build/. */
export function webRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("no package.json above the tests");
    dir = up;
  }
  return dir;
}

/** Screenshots and logs of the browser tests (gitignored). */
export const RESULTS_DIR = join(webRoot(), "test-results");

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Resolves with the first match of `pattern` in what `child` writes to `stream`. */
function lineMatching(child: ChildProcess, stream: "stdout" | "stderr", pattern: RegExp, what: string, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: nothing matching ${pattern} within ${timeoutMs}ms; it wrote:\n${seen.slice(-4000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString("utf8");
      const m = seen.match(pattern);
      if (m) {
        cleanup();
        resolve(m);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`${what} exited with ${code} before it was ready:\n${seen.slice(-4000)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child[stream]?.off("data", onData);
      child.off("exit", onExit);
    };
    child[stream]?.on("data", onData);
    child.once("exit", onExit);
  });
}

async function stop(child: ChildProcess, timeoutMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
}

export interface PageServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts `node server.mjs` on a free port for `gateways`, listing `channels`,
 * serving `root` (the built dist/ by default).
 */
export async function startPageServer(gateways: string[], channels: string[], options: { logFile?: string; root?: string } = {}): Promise<PageServer> {
  const pkg = webRoot();
  const args = [join(pkg, "server.mjs"), "--port", "0"];
  if (options.root !== undefined) args.push("--root", options.root);
  else if (!existsSync(join(pkg, "dist/index.html"))) throw new Error("dist/ is missing: run `npm run build` first");
  for (const g of gateways) args.push("--gateway", g);
  for (const c of channels) args.push("--channel", c);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  if (options.logFile) {
    const log = createWriteStream(options.logFile);
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
  }
  const m = await lineMatching(child, "stdout", /listening on (http:\/\/\S+)/, "the page server", 15_000);
  return { url: m[1] ?? "", stop: () => stop(child) };
}

export interface Chromium {
  /** The DevTools WebSocket, for `chromium.connectOverCDP`. */
  wsEndpoint: string;
  stop(): Promise<void>;
}

/** The flags every Chromium of the tests runs with (the machine's network is closed). */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Starts Debian's Chromium (never a downloaded browser) with a fresh profile
 * and DevTools on a free port. Playwright connects over CDP, which gives
 * browser contexts like a launch does.
 */
export async function startChromium(logFile?: string): Promise<Chromium> {
  const executable = process.env["CHROMIUM"] ?? "/usr/bin/chromium";
  if (!existsSync(executable)) throw new Error(`${executable} is missing: install Debian's Chromium with \`apt-get install -y chromium\``);
  const userDataDir = mkdtempSync(join(tmpdir(), "chatmesh-web-chromium-"));
  const child = spawn(executable, [...CHROMIUM_FLAGS, `--user-data-dir=${userDataDir}`, "--remote-debugging-port=0", "about:blank"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  if (logFile) child.stderr?.pipe(createWriteStream(logFile));
  let wsEndpoint: string;
  try {
    const m = await lineMatching(child, "stderr", /DevTools listening on (ws:\/\/\S+)/, "chromium", 60_000);
    wsEndpoint = m[1] ?? "";
  } catch (err) {
    await stop(child);
    rmSync(userDataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    throw err;
  }
  return {
    wsEndpoint,
    stop: async () => {
      await stop(child);
      rmSync(userDataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
}

export function ensureResultsDir(): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  return RESULTS_DIR;
}

// -- PNG ----------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An RGB PNG of `width` × `height`: a checkerboard of 8-pixel squares in two colours. */
export function makePng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    rows[row] = 0; // no filter
    for (let x = 0; x < width; x++) {
      const on = (Math.floor(x / 8) + Math.floor(y / 8)) % 2 === 0;
      const at = row + 1 + x * 3;
      rows[at] = on ? 0x2f : 0xf2;
      rows[at + 1] = on ? 0x6f : 0xa9;
      rows[at + 2] = on ? 0xeb : 0x3b;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
