// The whole chatmesh mesh as processes, for tests against the real thing:
// chat, presence, storage, media and N gateway nodes, each a workspace
// binary on a generated config file and free loopback ports, on the
// infrastructure `scripts/infra up` started (Redis Cluster, Postgres, the
// Kafka broker). Every run has its own Kafka topic, storage consumer group,
// presence group and gateway ring, so it runs beside `make run` and other
// test runs. Laid out like integration-tests/src/mesh.rs.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { closeGrpc, GrpcError, grpcUnary, pb } from "./grpc.js";

/** The package root (clients/js), found from this file in src or build. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("no package.json above the test harness");
    dir = up;
  }
  return dir;
}

export const REPO_ROOT = resolve(packageRoot(), "../..");

/** The dev-token secret every gateway of the mesh signs with. */
export const DEV_SECRET = "chatmesh-sdk-js-test-secret-0123456789";

export interface Infra {
  redisNodes: string[];
  directoryUrl: string;
  shardUrls: string[];
  kafkaBrokers: string[];
}

function stateDir(): string {
  return process.env["CHATMESH_INFRA_DIR"] ?? join(REPO_ROOT, ".local/infra");
}

/** Reads the state file of `scripts/infra up`. */
export function loadInfra(): Infra {
  const path = join(stateDir(), "state.env");
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: start the infrastructure with \`scripts/infra up\` (from ${REPO_ROOT})`);
  }
  const vars = new Map<string, string>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line.trim().startsWith("#")) continue;
    const i = line.indexOf("=");
    if (i < 0) continue;
    vars.set(line.slice(0, i).trim(), line.slice(i + 1).trim().replace(/^"|"$/g, ""));
  }
  const get = (k: string) => {
    const v = vars.get(k);
    if (v === undefined) throw new Error(`${path} has no ${k}`);
    return v;
  };
  const list = (k: string) => get(k).split(",").filter((s) => s !== "");
  return {
    redisNodes: list("REDIS_NODES"),
    directoryUrl: get("DIRECTORY_URL"),
    shardUrls: list("SHARD_URLS"),
    kafkaBrokers: list("KAFKA_BROKERS"),
  };
}

/** Where the workspace binaries are: `$CARGO_TARGET_DIR/debug`, else ~/.cache/chatmesh/target/debug, else <repo>/target/debug. */
export function binaryDir(): string {
  const candidates = [
    process.env["CHATMESH_BIN_DIR"],
    process.env["CARGO_TARGET_DIR"] && join(process.env["CARGO_TARGET_DIR"], "debug"),
    join(homedir(), ".cache/chatmesh/target/debug"),
    join(REPO_ROOT, "target/debug"),
  ].filter((c): c is string => typeof c === "string" && c !== "");
  for (const c of candidates) if (existsSync(join(c, "chatmesh-gateway"))) return c;
  throw new Error(`no chatmesh-gateway binary in ${candidates.join(", ")}: run \`cargo build --workspace --bins\` first`);
}

/** A loopback port free right now (given back at once, like mesh.rs does). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Creates a Kafka topic of 8 partitions with confluent-kafka, as scripts/lib/kafka.sh does. */
function createTopic(brokers: string[], topic: string): void {
  const script = `
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
fut = admin.create_topics([NewTopic(sys.argv[2], num_partitions=8, replication_factor=1)])[sys.argv[2]]
fut.result(timeout=30)
`;
  const r = spawnSync("python3", ["-c", script, brokers.join(","), topic], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`creating Kafka topic ${topic} failed: ${r.stderr || r.stdout || r.error}`);
}

interface Proc {
  name: string;
  binary: string;
  config: string;
  readyUrl: string;
  env: Record<string, string>;
  child: ChildProcess | undefined;
  starts: number;
}

export interface MeshOptions {
  gateways?: number;
  /** `routing.mode` of the gateways. */
  mode?: "redirect" | "serve";
  /** `limits.frames_per_second` of the gateways (frame_burst is twice it). */
  framesPerSecond?: number;
  /** `auth.leeway` of the gateways. */
  leeway?: string;
}

export class Mesh {
  readonly run = randomUUID().replace(/-/g, "").slice(0, 12);
  readonly dir = join(tmpdir(), `chatmesh-sdk-js-${this.run}`);
  readonly gatewayPorts: number[] = [];
  chatGrpc = "";
  private procs: Proc[] = [];

  constructor(private readonly options: MeshOptions = {}) {}

  /** Writes every config and starts every process; resolves once all are ready. */
  async start(): Promise<void> {
    const infra = loadInfra();
    const bin = binaryDir();
    mkdirSync(join(this.dir, "media"), { recursive: true });
    const topic = `chatmesh.sdkjs.${this.run}`;
    createTopic(infra.kafkaBrokers, topic);
    const words = join(this.dir, "words.txt");
    writeFileSync(words, "blocked\n");
    const q = (s: string) => JSON.stringify(s);
    const list = (xs: string[]) => `[${xs.map(q).join(", ")}]`;
    const redis = `[redis]\nnodes = ${list(infra.redisNodes)}\n`;
    const kafka = `[kafka]\nbrokers = ${list(infra.kafkaBrokers)}\ntopic = ${q(topic)}\n`;
    const directory = `[directory]\nurl = ${q(infra.directoryUrl)}\n`;
    const telemetry = `[telemetry]\nlog = "info"\njson = true\n`;
    const server = (grpc: number, admin: number) =>
      `[server]\ngrpc_addr = "127.0.0.1:${grpc}"\nadmin_addr = "127.0.0.1:${admin}"\nprobe_interval = "200ms"\nshutdown_grace = "2s"\n${telemetry}`;
    const shards = () => {
      const n = infra.shardUrls.length;
      let out = "[shards]\nbuckets = 256\n";
      infra.shardUrls.forEach((url, i) => {
        out += `[[shards.databases]]\nname = "shard_${i}"\nurl = ${q(url)}\nfirst_bucket = ${Math.floor((256 * i) / n)}\nlast_bucket = ${Math.floor((256 * (i + 1)) / n) - 1}\n`;
      });
      return out;
    };
    const add = (name: string, binary: string, toml: string, readyPort: number, env: Record<string, string> = {}) => {
      const config = join(this.dir, `${name}.toml`);
      writeFileSync(config, toml);
      this.procs.push({ name, binary: join(bin, binary), config, readyUrl: `http://127.0.0.1:${readyPort}/readyz`, env, child: undefined, starts: 0 });
    };

    const [chatGrpc, chatAdmin, presGrpc, presAdmin, storGrpc, storAdmin, mediaGrpc, mediaAdmin, mediaHttp] = await Promise.all(
      Array.from({ length: 9 }, () => freePort()),
    ) as [number, number, number, number, number, number, number, number, number];
    this.chatGrpc = `127.0.0.1:${chatGrpc}`;
    add(
      "chat",
      "chatmesh-chat",
      `storage = "http://127.0.0.1:${storGrpc}"\n${server(chatGrpc, chatAdmin)}${redis}${kafka}${directory}[moderation]\nwords_file = ${q(words)}\n[limits]\nuser_per_second = 1000\nchannel_per_second = 5000\n`,
      chatAdmin,
    );
    add("presence", "chatmesh-presence", `${server(presGrpc, presAdmin)}${redis}[presence]\ngroup = "sdkjs-${this.run}"\n`, presAdmin);
    add(
      "storage",
      "chatmesh-storage",
      `consumer_group = "sdkjs-${this.run}"\nlag_interval = "500ms"\n${server(storGrpc, storAdmin)}${kafka}${directory}${shards()}`,
      storAdmin,
      { CHATMESH_INSTANCE_ID: "storage" },
    );
    add(
      "media",
      "chatmesh-media",
      `${server(mediaGrpc, mediaAdmin)}${directory}[store]\nkind = "local"\nroot = ${q(join(this.dir, "media"))}\nlisten_addr = "127.0.0.1:${mediaHttp}"\nsecret = ${q(randomBytes(24).toString("hex"))}\n`,
      mediaAdmin,
    );
    const fps = this.options.framesPerSecond ?? 50;
    for (let i = 0; i < (this.options.gateways ?? 2); i++) {
      const port = await freePort();
      this.gatewayPorts.push(port);
      add(
        `gw-${i}`,
        "chatmesh-gateway",
        `node_id = "gw-${i}"\nhttp_addr = "127.0.0.1:${port}"\npublic_url = "ws://127.0.0.1:${port}"\nprobe_interval = "200ms"\nshutdown_grace = "3s"\n${redis}` +
          `[services]\nchat = "http://127.0.0.1:${chatGrpc}"\npresence = "http://127.0.0.1:${presGrpc}"\nstorage = "http://127.0.0.1:${storGrpc}"\nmedia = "http://127.0.0.1:${mediaGrpc}"\n` +
          `[auth]\nhs256_secret = ${q(DEV_SECRET)}\ndev_tokens = true\nleeway = ${q(this.options.leeway ?? "1s")}\n` +
          `[routing]\ncluster = "sdkjs-${this.run}"\nmode = ${q(this.options.mode ?? "redirect")}\nrefresh_interval = "200ms"\nnode_ttl = "3s"\npeer_probe_interval = "250ms"\n` +
          `[limits]\nframes_per_second = ${fps}\nframe_burst = ${fps * 2}\n${telemetry}`,
        port,
      );
    }
    for (const p of this.procs) this.spawn(p);
    for (const p of this.procs) await this.waitReady(p);
    await this.waitRing();
  }

  private spawn(p: Proc): void {
    p.starts += 1;
    const log = createWriteStream(join(this.dir, `${p.name}-${p.starts}.log`));
    const env: Record<string, string | undefined> = { ...process.env, ...p.env, CHATMESH_CONFIG: p.config };
    delete env["RUST_LOG"];
    const child = spawn(p.binary, [], { env, stdio: ["ignore", "pipe", "pipe"], cwd: REPO_ROOT });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    child.on("exit", () => {
      if (p.child === child) p.child = undefined;
    });
    p.child = child;
  }

  private async waitReady(p: Proc, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!p.child) throw new Error(`${p.name} exited on start:\n${this.log(p.name).slice(-4000)}`);
      try {
        const r = await fetch(p.readyUrl);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${p.name} not ready after ${timeoutMs}ms:\n${this.log(p.name).slice(-4000)}`);
      await sleep(100);
    }
  }

  /** Waits until every running gateway's ring holds every running gateway. */
  async waitRing(timeoutMs = 30_000): Promise<void> {
    const running = this.gatewayPorts.filter((_, i) => this.isRunning(`gw-${i}`));
    const deadline = Date.now() + timeoutMs;
    // A channel name per node is found once each ring names all nodes.
    for (;;) {
      const ok = await Promise.all(
        running.map(async (port) => {
          const seen = new Set<string>();
          for (let k = 0; k < 64 && seen.size < running.length; k++) {
            try {
              const r = await fetch(`http://127.0.0.1:${port}/v1/route/ring-probe-${k}`);
              if (!r.ok) return false;
              seen.add(((await r.json()) as { node: string }).node);
            } catch {
              return false;
            }
          }
          return seen.size === running.length;
        }),
      );
      if (ok.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error("the gateways' rings did not settle");
      await sleep(200);
    }
  }

  private proc(name: string): Proc {
    const p = this.procs.find((x) => x.name === name);
    if (!p) throw new Error(`the mesh has no process ${name}`);
    return p;
  }

  isRunning(name: string): boolean {
    return this.proc(name).child !== undefined;
  }

  /** SIGKILL, the way a crashed node dies; resolves once it exited. */
  async kill(name: string): Promise<void> {
    const child = this.proc(name).child;
    if (!child) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM, the way a supervisor stops a node: it drains. Resolves once it exited. */
  async terminate(name: string, timeoutMs = 20_000): Promise<void> {
    const child = this.proc(name).child;
    if (!child) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  /** Sends SIGTERM without waiting for the exit. */
  signal(name: string, signal: NodeJS.Signals): void {
    this.proc(name).child?.kill(signal);
  }

  /** Starts `name` again on the same config and ports, and waits until it is ready. */
  async restart(name: string): Promise<void> {
    const p = this.proc(name);
    if (p.child) throw new Error(`${name} is still running`);
    this.spawn(p);
    await this.waitReady(p);
  }

  log(name: string): string {
    const p = this.proc(name);
    try {
      return readFileSync(join(this.dir, `${p.name}-${p.starts}.log`), "utf8");
    } catch {
      return "";
    }
  }

  gatewayUrl(i: number): string {
    return `ws://127.0.0.1:${this.gatewayPorts[i]}`;
  }

  httpUrl(i: number): string {
    return `http://127.0.0.1:${this.gatewayPorts[i]}`;
  }

  get gatewayUrls(): string[] {
    return this.gatewayPorts.map((_, i) => this.gatewayUrl(i));
  }

  /** The node that owns `channel`, as gateway `via` sees it. */
  async owner(channel: string, via = 0): Promise<string> {
    const r = await fetch(`${this.httpUrl(via)}/v1/route/${encodeURIComponent(channel)}`);
    return ((await r.json()) as { node: string }).node;
  }

  /** A fresh channel ID (prefix + random) that `node` owns. */
  async channelOwnedBy(node: string, prefix: string): Promise<string> {
    for (;;) {
      const id = `${prefix}-${randomUUID().slice(0, 8)}`;
      if ((await this.owner(id)) === node) return id;
    }
  }

  /** A development token from gateway 0. */
  async devToken(userId: string, ttlSecs?: number): Promise<string> {
    const body: Record<string, unknown> = { user_id: userId };
    if (ttlSecs !== undefined) body["ttl_secs"] = ttlSecs;
    const r = await fetch(`${this.httpUrl(0)}/v1/dev/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`dev token: HTTP ${r.status} ${await r.text()}`);
    return ((await r.json()) as { token: string }).token;
  }

  /** Creates `channel` owned by `members[0]` and joins the rest, over the chat service's gRPC API. */
  async createChannel(channel: string, members: string[]): Promise<void> {
    const [owner, ...rest] = members;
    if (owner === undefined) throw new Error("a channel needs a member");
    await grpcUnary(this.chatGrpc, "/chatmesh.chat.v1.ChatService/CreateChannel", [
      pb.string(1, channel),
      pb.string(2, channel),
      pb.string(3, owner),
      pb.varint(4, 1),
    ]);
    for (const user of rest) {
      await grpcUnary(this.chatGrpc, "/chatmesh.chat.v1.ChatService/JoinChannel", [pb.string(1, channel), pb.string(2, user)]);
    }
  }

  /** Sends a message straight to the chat service (no gateway, no frame budget). */
  async sendViaChat(channel: string, sender: string, body: string): Promise<void> {
    // One idempotency key for every attempt: a retry after a refusal or a
    // lost answer is stored once, as an internal caller would do it.
    const fields = [pb.string(1, channel), pb.string(2, sender), pb.string(3, body), pb.string(5, randomUUID())];
    for (let attempt = 1; ; attempt++) {
      try {
        await grpcUnary(this.chatGrpc, "/chatmesh.chat.v1.ChatService/SendMessage", fields);
        return;
      } catch (e) {
        if (!(e instanceof GrpcError && e.retryable) || attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 500)));
      }
    }
  }

  /** Stops everything; keeps the logs when `keepLogs`. */
  async stop(keepLogs = false): Promise<void> {
    closeGrpc();
    await Promise.all(
      this.procs.map(async (p) => {
        const child = p.child;
        if (!child) return;
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    if (!keepLogs) rmSync(this.dir, { recursive: true, force: true });
  }
}
