#!/usr/bin/env node
// Generates src/generated/protocol.ts from the protocol's sources of truth:
//
//   proto/chatmesh/gateway/v1/client.proto   every client and server frame
//   proto/chatmesh/common/v1/common.proto    chatmesh.common.v1.Message and Reaction
//   proto/chatmesh/presence/v1/presence.proto chatmesh.presence.v1.PresenceEvent
//   docs/protocol.md                          the error table and close codes
//
// The JSON form of a frame differs from its Protobuf form in a few documented
// ways (docs/protocol.md, "Binary frames"); JSON_RULES below lists each one,
// and generation fails if a rule names a frame or field the proto lacks, or
// if the proto has a frame no rule accounts for. So a field added to, removed
// from or renamed in the proto changes the output, and the committed file no
// longer matches it: `node scripts/gen-protocol.mjs --check` (run by the unit
// tests) fails until the file is regenerated.
//
//   node scripts/gen-protocol.mjs           write src/generated/protocol.ts
//   node scripts/gen-protocol.mjs --check   exit 1 if it is out of date

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const PACKAGE_ROOT = resolve(HERE, "..");
export const REPO_ROOT = resolve(PACKAGE_ROOT, "../..");
export const OUTPUT = join(PACKAGE_ROOT, "src/generated/protocol.ts");

export const SOURCES = {
  client: "proto/chatmesh/gateway/v1/client.proto",
  common: "proto/chatmesh/common/v1/common.proto",
  presence: "proto/chatmesh/presence/v1/presence.proto",
  doc: "docs/protocol.md",
};

// ---------------------------------------------------------------------------
// A small reader for the proto3 subset these files use: messages (nested
// ones too), enums, oneofs, optional and repeated fields.

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

function tokenize(text) {
  const tokens = [];
  const re = /\s*([A-Za-z_][A-Za-z0-9_.]*|\d+|"[^"]*"|[{}=;<>,\[\]()-])/gy;
  let m;
  let last = 0;
  while ((m = re.exec(text)) !== null) {
    tokens.push(m[1]);
    last = re.lastIndex;
  }
  if (text.slice(last).trim() !== "") {
    throw new Error(`cannot read proto near: ${text.slice(last, last + 40)}`);
  }
  return tokens;
}

/** Parses a proto file into { package, messages: Map<fullName, msg>, enums: Map<fullName, enum> }. */
export function parseProto(text) {
  const t = tokenize(stripComments(text));
  let i = 0;
  const peek = () => t[i];
  const next = () => t[i++];
  const expect = (tok) => {
    const got = next();
    if (got !== tok) throw new Error(`proto: expected ${tok}, got ${got}`);
  };
  const file = { package: "", messages: new Map(), enums: new Map() };

  function skipStatement() {
    while (next() !== ";") {
      if (i > t.length) throw new Error("proto: unterminated statement");
    }
  }

  function parseEnum(prefix) {
    const name = next();
    const full = prefix ? `${prefix}.${name}` : name;
    expect("{");
    const values = [];
    while (peek() !== "}") {
      if (peek() === "option" || peek() === "reserved") {
        skipStatement();
        continue;
      }
      const valueName = next();
      expect("=");
      let num = next();
      if (num === "-") num = `-${next()}`;
      while (peek() !== ";") next();
      expect(";");
      values.push({ name: valueName, number: Number(num) });
    }
    expect("}");
    file.enums.set(full, { name, fullName: full, values });
    return full;
  }

  function parseField(msg, label, oneof) {
    let type = next();
    if (type === "map") throw new Error("proto: map fields are not supported");
    const name = next();
    expect("=");
    const number = Number(next());
    if (peek() === "[") {
      while (next() !== "]");
    }
    expect(";");
    msg.fields.push({ name, type, number, label, oneof, scope: msg.fullName });
  }

  function parseMessage(prefix) {
    const name = next();
    const full = prefix ? `${prefix}.${name}` : name;
    const msg = { name, fullName: full, fields: [], oneofs: [] };
    file.messages.set(full, msg);
    expect("{");
    while (peek() !== "}") {
      const tok = peek();
      if (tok === "message") {
        next();
        parseMessage(full);
      } else if (tok === "enum") {
        next();
        parseEnum(full);
      } else if (tok === "oneof") {
        next();
        const oneofName = next();
        msg.oneofs.push(oneofName);
        expect("{");
        while (peek() !== "}") parseField(msg, "", oneofName);
        expect("}");
      } else if (tok === "option" || tok === "reserved" || tok === "extensions") {
        skipStatement();
      } else if (tok === "optional" || tok === "repeated") {
        next();
        parseField(msg, tok, undefined);
      } else {
        parseField(msg, "", undefined);
      }
    }
    expect("}");
  }

  while (i < t.length) {
    const tok = next();
    if (tok === "syntax" || tok === "import" || tok === "option") {
      skipStatement();
    } else if (tok === "package") {
      file.package = next();
      expect(";");
    } else if (tok === "message") {
      parseMessage(file.package);
    } else if (tok === "enum") {
      parseEnum(file.package);
    } else if (tok === "service") {
      // Services are not part of the client protocol: skip the block.
      let depth = 0;
      while (i < t.length) {
        const s = next();
        if (s === "{") depth++;
        else if (s === "}" && --depth === 0) break;
      }
    } else {
      throw new Error(`proto: unexpected ${tok}`);
    }
  }
  return file;
}

// ---------------------------------------------------------------------------
// How the JSON frames differ from the Protobuf ones (docs/protocol.md,
// "Binary frames"). Each entry is checked against the proto.

export const JSON_RULES = {
  client: {
    // oneof case of ClientFrame -> JSON frame
    subscribe: { requestId: true },
    unsubscribe: { requestId: true },
    // `traceparent`: an optional W3C trace context the send continues;
    // `reply_to`: the `seq` of the message answered.
    send: { requestId: true, optional: ["attachments", "idempotency_key", "traceparent", "reply_to"] },
    // Changes to the message `seq` names, answered with an `ack` like a
    // send; a change without a key is tried once.
    edit: { requestId: true, optional: ["idempotency_key"] },
    delete: { requestId: true, optional: ["idempotency_key"] },
    // `remove: true` takes the reaction back; absent, it adds it.
    react: { requestId: true, optional: ["remove", "idempotency_key"] },
    // Moves the read position; answered by `read` only when it carries a
    // request_id (and by an error when refused).
    ack: { requestId: true },
    // The user's unread counts; without channel_ids, every channel of theirs.
    unread: { requestId: true, optional: ["channel_ids"] },
    ping: { requestId: true, optional: ["client_time_ms"] },
    // Answered only when refused; `stop: true` ends the user's typing.
    typing: { requestId: true, optional: ["stop"] },
  },
  server: {
    message: {
      requestId: false,
      // Omitted at their zero value: a post carries no `kind` (its enum
      // value 0), `target_seq` or `emoji`; a message never changed carries
      // none of the state fields.
      optional: [
        "attachments",
        "kind",
        "target_seq",
        "emoji",
        "edit_count",
        "edited_at_ms",
        "deleted",
        "reactions",
        "version",
        "reply_to",
        "reply_count",
        "last_reply_at_ms",
        "mentions",
      ],
      // Internal to the services (the send's key, the fan-out copy's trace
      // context); not sent to clients.
      omit: ["idempotency_key", "traceparent"],
      // `edit`, `delete`, `reaction_add`, `reaction_remove`.
      enumAsString: ["kind"],
    },
    send_ack: { type: "ack", requestId: true },
    error: { requestId: true },
    pong: { requestId: true, optional: ["client_time_ms"] },
    redirect: { requestId: true },
    // Without `url` when the node is shutting down: any node will do.
    reconnect: { requestId: false, optional: ["url"] },
    subscribed: { requestId: true },
    unsubscribed: { requestId: true },
    presence: {
      requestId: false,
      // `kind` travels as `event`, the enum as lower-case names.
      rename: { kind: "event" },
      enumAsString: ["kind"],
    },
    reload_required: { requestId: false },
    // The case is `typing_users` so it does not clash with the client's
    // `typing`; in JSON both are `typing`. `user_ids` is always present.
    typing_users: { type: "typing", requestId: false },
    // The read position held after an `ack` with a request_id.
    read_position: { type: "read", requestId: true },
    // `total_mentions` travels as `mentions`.
    unread_counts: { type: "unread", requestId: true, rename: { total_mentions: "mentions" } },
  },
  // Messages carried inside frames (by full name), each an interface of its
  // own; the same keys as a frame's rule but `type` and `requestId`.
  nested: {
    // Every field always present: `{emoji, count, me}`.
    "chatmesh.common.v1.Reaction": {},
    // Every field always present.
    "chatmesh.gateway.v1.ChannelUnread": {},
  },
};

// 64-bit Snowflake IDs travel as strings in JSON; every other integer is a
// JSON number (sequence numbers stay below 2^53).
const ID_FIELDS = new Set(["message_id"]);

const SCALARS = {
  string: "string",
  bool: "boolean",
  int32: "number",
  int64: "number",
  uint32: "number",
  uint64: "number",
  sint32: "number",
  sint64: "number",
  fixed32: "number",
  fixed64: "number",
  sfixed32: "number",
  sfixed64: "number",
  double: "number",
  float: "number",
};

function pascal(snake) {
  return snake
    .split("_")
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join("");
}

function resolveType(types, scope, name) {
  // Proto name resolution: innermost scope outwards, then fully qualified.
  if (name.startsWith(".")) return name.slice(1);
  const parts = scope.split(".");
  for (let n = parts.length; n >= 0; n--) {
    const candidate = [...parts.slice(0, n), name].join(".");
    if (types.has(candidate)) return candidate;
  }
  return undefined;
}

function enumLiteral(enumDef, value) {
  // KIND_JOIN of enum Kind -> "join"
  const prefix = enumDef.name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase() + "_";
  const bare = value.name.startsWith(prefix) ? value.name.slice(prefix.length) : value.name;
  return bare.toLowerCase();
}

/** Reads the markdown table whose header row starts with `firstHeader`. */
export function markdownTable(doc, firstHeader) {
  const lines = doc.split("\n");
  const start = lines.findIndex((l) => l.trim().startsWith(`| ${firstHeader} |`));
  if (start < 0) throw new Error(`docs/protocol.md has no table headed "${firstHeader}"`);
  const rows = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.trim().startsWith("|")) break;
    rows.push(
      line
        .trim()
        .replace(/^\||\|$/g, "")
        .split("|")
        .map((c) => c.trim()),
    );
  }
  return rows;
}

function readSources(root) {
  const read = (p) => readFileSync(join(root, p), "utf8");
  return {
    client: read(SOURCES.client),
    common: read(SOURCES.common),
    presence: read(SOURCES.presence),
    doc: read(SOURCES.doc),
  };
}

/** Fails unless every field a rule names is a field of `msg`. */
function checkRule(rule, msg, where) {
  const known = new Set(msg.fields.map((f) => f.name));
  for (const key of ["optional", "omit", "enumAsString"]) {
    for (const f of rule[key] ?? []) {
      if (!known.has(f)) throw new Error(`${where}.${key}: ${msg.fullName} has no field ${f}`);
    }
  }
  for (const f of Object.keys(rule.rename ?? {})) {
    if (!known.has(f)) throw new Error(`${where}.rename: ${msg.fullName} has no field ${f}`);
  }
}

/**
 * The JSON fields of `msg` under `rule`. A field whose type is a message
 * names that message's interface; the message is passed to `nest`, which
 * describes it too.
 */
function describeFields(msg, rule, proto, nest) {
  const fields = [];
  for (const f of msg.fields) {
    if ((rule.omit ?? []).includes(f.name)) continue;
    if (f.oneof) throw new Error(`${msg.fullName}.${f.name}: oneofs inside frames are not supported`);
    let ts;
    if (ID_FIELDS.has(f.name)) {
      if (f.type !== "uint64") throw new Error(`${msg.fullName}.${f.name}: IDs must be uint64`);
      ts = "string";
    } else if (SCALARS[f.type]) {
      ts = SCALARS[f.type];
    } else {
      const ref = resolveType(proto.allTypes, msg.fullName, f.type);
      const en = ref && proto.enums.get(ref);
      const sub = ref && proto.messages.get(ref);
      if (en) {
        if (!(rule.enumAsString ?? []).includes(f.name)) {
          throw new Error(`${msg.fullName}.${f.name}: say in JSON_RULES how the enum ${f.type} is written`);
        }
        const literals = en.values.filter((v) => v.number !== 0).map((v) => JSON.stringify(enumLiteral(en, v)));
        ts = literals.join(" | ");
      } else if (sub) {
        ts = nest(sub, `${msg.fullName}.${f.name}`);
      } else {
        throw new Error(`${msg.fullName}.${f.name}: type ${f.type} is not supported in frames`);
      }
    }
    if (f.label === "repeated") ts = ts.includes("|") ? `(${ts})[]` : `${ts}[]`;
    fields.push({
      name: (rule.rename ?? {})[f.name] ?? f.name,
      protoName: f.name,
      ts,
      optional: f.label === "optional" || (rule.optional ?? []).includes(f.name),
    });
  }
  return fields;
}

/**
 * The frames and the messages nested in them, as plain data:
 * { frames: [{ side, type, name, fields }], nested: [{ name, protoMessage, fields }] },
 * each field { name, ts, optional }.
 */
export function describeProtocol(sources) {
  const files = [parseProto(sources.client), parseProto(sources.common), parseProto(sources.presence)];
  const messages = new Map();
  const enums = new Map();
  for (const f of files) {
    for (const [k, v] of f.messages) messages.set(k, v);
    for (const [k, v] of f.enums) enums.set(k, v);
  }
  const proto = { messages, enums, allTypes: new Set([...messages.keys(), ...enums.keys()]) };
  for (const full of Object.keys(JSON_RULES.nested)) {
    const msg = messages.get(full);
    if (!msg) throw new Error(`JSON_RULES.nested: no message ${full}`);
    checkRule(JSON_RULES.nested[full], msg, `JSON_RULES.nested["${full}"]`);
  }
  const nested = new Map();
  const nest = (msg, where) => {
    const rule = JSON_RULES.nested[msg.fullName];
    if (!rule) {
      throw new Error(`${where}: say in JSON_RULES.nested how the message ${msg.fullName} is written`);
    }
    if (!nested.has(msg.fullName)) {
      const entry = { name: msg.name, protoMessage: msg.fullName, fields: [] };
      nested.set(msg.fullName, entry);
      entry.fields = describeFields(msg, rule, proto, nest);
    }
    return msg.name;
  };
  const frames = [];
  for (const [side, envelopeName] of [
    ["client", "chatmesh.gateway.v1.ClientFrame"],
    ["server", "chatmesh.gateway.v1.ServerFrame"],
  ]) {
    const envelope = messages.get(envelopeName);
    if (!envelope) throw new Error(`${SOURCES.client} has no ${envelopeName}`);
    const rid = envelope.fields.find((f) => f.name === "request_id" && !f.oneof);
    if (!rid || rid.type !== "string") {
      throw new Error(`${envelopeName} must have a string request_id outside its oneof`);
    }
    const cases = envelope.fields.filter((f) => f.oneof === "frame");
    const rules = JSON_RULES[side];
    for (const name of Object.keys(rules)) {
      if (!cases.some((c) => c.name === name)) {
        throw new Error(`JSON_RULES.${side}.${name}: ${envelopeName} has no such oneof case`);
      }
    }
    for (const c of cases) {
      const rule = rules[c.name];
      if (!rule) {
        throw new Error(
          `${envelopeName}.${c.name} is new: add how its JSON form looks to JSON_RULES in scripts/gen-protocol.mjs`,
        );
      }
      const typeName = resolveType(proto.allTypes, envelope.fullName, c.type);
      const msg = typeName && messages.get(typeName);
      if (!msg) throw new Error(`${envelopeName}.${c.name}: unknown message ${c.type}`);
      checkRule(rule, msg, `JSON_RULES.${side}.${c.name}`);
      const fields = [];
      if (rule.requestId) fields.push({ name: "request_id", ts: "string", optional: true, doc: "Echoed in the reply." });
      fields.push(...describeFields(msg, rule, proto, nest));
      frames.push({
        side,
        oneofCase: c.name,
        type: rule.type ?? c.name,
        protoMessage: msg.fullName,
        name: `${pascal(rule.type === "ack" && side === "server" ? "send_ack" : c.name)}Frame`,
        fields,
      });
    }
  }
  for (const n of nested.values()) {
    if (frames.some((f) => f.name === n.name)) throw new Error(`${n.protoMessage}: its name ${n.name} is taken by a frame`);
  }
  return { frames, nested: [...nested.values()] };
}

/**
 * The frames as plain data: [{ side, type, name, fields: [{ name, ts, optional }] }].
 * Exported so tests can compare it with other descriptions of the protocol.
 */
export function describeFrames(sources) {
  return describeProtocol(sources).frames;
}

export function describeErrors(doc) {
  return markdownTable(doc, "`code`").map(([code, http, retryable, meaning]) => {
    const name = code.replace(/`/g, "");
    if (!/^[a-z_]+$/.test(name)) throw new Error(`docs/protocol.md: odd error code ${code}`);
    if (retryable !== "yes" && retryable !== "no") throw new Error(`docs/protocol.md: ${name} retryable is ${retryable}`);
    return { code: name, http: Number(http), retryable: retryable === "yes", meaning };
  });
}

export function describeCloseCodes(doc) {
  return markdownTable(doc, "Close code").map(([code, reason]) => ({
    code: Number(code.replace(/`/g, "")),
    reason,
  }));
}

function tsString(s) {
  return JSON.stringify(s);
}

export function generate(root = REPO_ROOT) {
  const sources = readSources(root);
  const { frames, nested } = describeProtocol(sources);
  const errors = describeErrors(sources.doc);
  const closes = describeCloseCodes(sources.doc);
  const out = [];
  out.push("// Generated by scripts/gen-protocol.mjs from");
  for (const p of Object.values(SOURCES)) out.push(`//   ${p}`);
  out.push("// Do not edit: run `npm run gen` after changing those files.");
  out.push("/* eslint-disable */");
  out.push("");
  if (nested.length > 0) {
    out.push("// Messages nested in frames (JSON form).");
    out.push("");
    for (const n of nested) {
      out.push(`/** The JSON form of \`${n.protoMessage}\`. */`);
      out.push(`export interface ${n.name} {`);
      for (const field of n.fields) out.push(`  ${field.name}${field.optional ? "?" : ""}: ${field.ts};`);
      out.push("}");
      out.push("");
    }
  }
  for (const side of ["client", "server"]) {
    const list = frames.filter((f) => f.side === side);
    out.push(`// ${side === "client" ? "Client" : "Server"} frames (JSON text form).`);
    out.push("");
    for (const f of list) {
      out.push(`/** \`${f.type}\`: the JSON form of \`${f.protoMessage}\` (${side === "client" ? "ClientFrame" : "ServerFrame"}.${f.oneofCase}). */`);
      out.push(`export interface ${f.name} {`);
      out.push(`  type: ${tsString(f.type)};`);
      for (const field of f.fields) out.push(`  ${field.name}${field.optional ? "?" : ""}: ${field.ts};`);
      out.push("}");
      out.push("");
    }
    const union = side === "client" ? "ClientFrame" : "ServerFrame";
    out.push(`export type ${union} =`);
    list.forEach((f, idx) => out.push(`  | ${f.name}${idx === list.length - 1 ? ";" : ""}`));
    out.push("");
    out.push(`export const ${side.toUpperCase()}_FRAME_TYPES = [${[...new Set(list.map((f) => tsString(f.type)))].join(", ")}] as const;`);
    out.push("");
    out.push(`/** Every field each ${side} frame may carry, for runtime checks. */`);
    out.push(`export const ${side.toUpperCase()}_FRAME_FIELDS = {`);
    for (const f of list) {
      out.push(`  ${f.name.replace(/Frame$/, "")}: { type: ${tsString(f.type)}, fields: [${f.fields.map((x) => tsString(x.name)).join(", ")}], required: [${f.fields.filter((x) => !x.optional).map((x) => tsString(x.name)).join(", ")}] },`);
    }
    out.push("} as const;");
    out.push("");
  }
  out.push("/** The error table of docs/protocol.md: HTTP status and whether a retry may succeed. */");
  out.push("export const ERROR_CODES = {");
  for (const e of errors) out.push(`  ${e.code}: { http: ${e.http}, retryable: ${e.retryable} }, // ${e.meaning}`);
  out.push("} as const;");
  out.push("");
  out.push("export type ErrorCode = keyof typeof ERROR_CODES;");
  out.push("");
  out.push("/** WebSocket close codes the gateway uses (docs/protocol.md, Closing). */");
  out.push("export const CLOSE_CODES = {");
  for (const c of closes) out.push(`  ${c.code}: ${tsString(c.reason)},`);
  out.push("} as const;");
  out.push("");
  return out.join("\n");
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const text = generate();
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(OUTPUT, "utf8");
    } catch {}
    if (current !== text) {
      console.error(`${OUTPUT} is out of date with the proto; run \`npm run gen\``);
      process.exit(1);
    }
    console.log("protocol types match the proto");
  } else {
    writeFileSync(OUTPUT, text);
    console.log(`wrote ${OUTPUT}`);
  }
}
