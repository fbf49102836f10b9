// The committed protocol types match the proto (and docs/protocol.md's
// tables); the JSON frames they describe match the gateway's JSON codec.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import test from "node:test";

import { describeFrames, describeProtocol, generate, OUTPUT, REPO_ROOT, SOURCES } from "../../scripts/gen-protocol.mjs";

test("src/generated/protocol.ts is what the proto generates", () => {
  const committed = readFileSync(OUTPUT, "utf8");
  assert.equal(committed, generate(), "protocol.ts differs from the proto: run `npm run gen` and commit the result");
});

test("the generator refuses a frame the rules do not know", () => {
  const read = (p) => readFileSync(join(REPO_ROOT, p), "utf8");
  const sources = { client: read(SOURCES.client), common: read(SOURCES.common), presence: read(SOURCES.presence), doc: read(SOURCES.doc) };
  sources.client = sources.client.replace(/oneof frame \{/, "oneof frame {\n    Ping wave = 99;");
  assert.throws(() => describeFrames(sources), /ClientFrame\.wave is new/);
});

test("a field added to the proto shows up in the types", () => {
  const read = (p) => readFileSync(join(REPO_ROOT, p), "utf8");
  const sources = { client: read(SOURCES.client), common: read(SOURCES.common), presence: read(SOURCES.presence), doc: read(SOURCES.doc) };
  sources.client = sources.client.replace(/message Unsubscribed \{/, "message Unsubscribed {\n  string reason = 7;");
  const frame = describeFrames(sources).find((f) => f.side === "server" && f.type === "unsubscribed");
  assert.deepEqual(frame.fields.map((f) => f.name).sort(), ["channel_id", "reason", "request_id"]);
});

test("a message nested in a frame is described from the proto, and needs a rule", () => {
  const read = (p) => readFileSync(join(REPO_ROOT, p), "utf8");
  const fresh = () => ({ client: read(SOURCES.client), common: read(SOURCES.common), presence: read(SOURCES.presence), doc: read(SOURCES.doc) });
  const sources = fresh();
  sources.common = sources.common.replace(/message Reaction \{/, "message Reaction {\n  string note = 9;");
  const reaction = describeProtocol(sources).nested.find((n) => n.name === "Reaction");
  assert.deepEqual(reaction.fields.map((f) => [f.name, f.ts, f.optional]), [
    ["note", "string", false],
    ["emoji", "string", false],
    ["count", "number", false],
    ["me", "boolean", false],
  ]);
  const message = describeFrames(sources).find((f) => f.side === "server" && f.type === "message");
  assert.equal(message.fields.find((f) => f.name === "reactions")?.ts, "Reaction[]");

  const unruled = fresh();
  unruled.common = unruled.common.replace(/message Reaction \{/, "message Reaction {\n  Extra extra = 9;") + "\nmessage Extra { string x = 1; }\n";
  assert.throws(() => describeFrames(unruled), /JSON_RULES\.nested how the message chatmesh\.common\.v1\.Extra is written/);
});

// --- The gateway's JSON codec, gateway/src/ws/protocol.rs -----------------

function rustEnum(text, name) {
  const start = text.indexOf(`pub enum ${name} {`);
  assert.ok(start >= 0, `protocol.rs has no enum ${name}`);
  let depth = 0;
  let i = text.indexOf("{", start);
  const open = i;
  for (; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) break;
  }
  return text.slice(open + 1, i);
}

function rustStructFields(text, name) {
  const m = new RegExp(`pub struct ${name} \\{([\\s\\S]*?)\\n\\}`).exec(text);
  assert.ok(m, `protocol.rs has no struct ${name}`);
  return [...m[1].matchAll(/^\s*pub (\w+):/gm)].map((x) => x[1]);
}

/** variant (snake_case JSON type) -> field names, from a serde enum body. */
function rustVariants(text, body) {
  const clean = body.replace(/\/\/[^\n]*/g, "").replace(/#\[[^\]]*\]/g, "");
  const out = new Map();
  const re = /(\w+)\s*(\{([^}]*)\}|\((\w+)\))\s*,/g;
  let m;
  while ((m = re.exec(clean)) !== null) {
    const type = m[1].replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
    const fields = m[3] !== undefined ? [...m[3].matchAll(/(\w+)\s*:/g)].map((x) => x[1]) : rustStructFields(text, m[4]);
    out.set(type, fields);
  }
  return out;
}

test("the frames match the gateway's JSON codec (protocol.rs)", () => {
  const rs = readFileSync(join(REPO_ROOT, "gateway/src/ws/protocol.rs"), "utf8");
  const read = (p) => readFileSync(join(REPO_ROOT, p), "utf8");
  const frames = describeFrames({ client: read(SOURCES.client), common: read(SOURCES.common), presence: read(SOURCES.presence), doc: read(SOURCES.doc) });
  const problems = [];
  for (const [side, enumName] of [["client", "ClientFrame"], ["server", "ServerFrame"]]) {
    const rust = rustVariants(rs, rustEnum(rs, enumName));
    const ours = frames.filter((f) => f.side === side);
    for (const f of ours) {
      const fields = rust.get(f.type);
      if (!fields) {
        problems.push(`${side} frame ${f.type}: not in protocol.rs ${enumName}`);
        continue;
      }
      const a = new Set(f.fields.map((x) => x.name));
      const b = new Set(fields);
      for (const x of a) if (!b.has(x)) problems.push(`${side} ${f.type}.${x}: in the proto, not in the JSON codec`);
      for (const x of b) if (!a.has(x)) problems.push(`${side} ${f.type}.${x}: in the JSON codec, not in the proto`);
    }
    for (const type of rust.keys()) {
      if (!ours.some((f) => f.type === type)) problems.push(`${side} frame ${type}: in protocol.rs, not in the proto`);
    }
  }
  // A nested message `X` is the codec's struct `XBody`.
  for (const n of describeProtocol({ client: read(SOURCES.client), common: read(SOURCES.common), presence: read(SOURCES.presence), doc: read(SOURCES.doc) }).nested) {
    const a = new Set(n.fields.map((x) => x.name));
    const b = new Set(rustStructFields(rs, `${n.name}Body`));
    for (const x of a) if (!b.has(x)) problems.push(`${n.name}.${x}: in the proto, not in the JSON codec`);
    for (const x of b) if (!a.has(x)) problems.push(`${n.name}.${x}: in the JSON codec, not in the proto`);
  }
  assert.deepEqual(problems, []);
});
