// The page's bookkeeping for replies and typing, without a browser: how
// many replies a thread's first message shows, the typing line, and when
// typing frames go out.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ReplyCounts } from "../../src/replies.js";
import { START_GAP_MS, TypingSender, typingText } from "../../src/typing.js";

test("a thread's count adds the replies seen after its stored count, each once", () => {
  const r = new ReplyCounts();
  // The newest page (up to seq 20) holds a first message with 2 stored replies, and both replies.
  assert.equal(r.root({ seq: 10, reply_count: 2 }, 20), true);
  assert.equal(r.reply({ seq: 12, reply_to: 10 }), false);
  assert.equal(r.reply({ seq: 15, reply_to: 10 }), false);
  assert.equal(r.count(10), 2);
  // A reply comes live; a replay delivers it again.
  assert.equal(r.reply({ seq: 25, reply_to: 10 }), true);
  assert.equal(r.reply({ seq: 25, reply_to: 10 }), false);
  assert.equal(r.count(10), 3);
  // A message that is no reply counts nowhere.
  assert.equal(r.reply({ seq: 26 }), false);
  assert.equal(r.count(26), 0);
});

test("a first message whose stored count includes replies not seen yet keeps that count", () => {
  const r = new ReplyCounts();
  // Loaded with an older page: 5 replies stored, none of them seen.
  r.root({ seq: 3, reply_count: 5 }, 100);
  assert.equal(r.count(3), 5);
  r.reply({ seq: 90, reply_to: 3 });
  assert.equal(r.count(3), 5);
  r.reply({ seq: 101, reply_to: 3 });
  assert.equal(r.count(3), 6);
  // An older read with a smaller count does not take the count back.
  assert.equal(r.root({ seq: 3, reply_count: 4 }, 80), false);
  assert.equal(r.count(3), 6);
});

test("a first message replayed from storage counts the larger of its stored count and the replies seen", () => {
  const r = new ReplyCounts();
  r.root({ seq: 40, reply_count: 2 }, Number.POSITIVE_INFINITY);
  assert.equal(r.count(40), 2);
  // The replay then delivers the two replies its count included, and a third.
  r.reply({ seq: 41, reply_to: 40 });
  r.reply({ seq: 43, reply_to: 40 });
  assert.equal(r.count(40), 2);
  r.reply({ seq: 47, reply_to: 40 });
  assert.equal(r.count(40), 3);
  // A live first message starts at no stored count.
  assert.equal(r.root({ seq: 50 }, Number.POSITIVE_INFINITY), false);
  r.reply({ seq: 51, reply_to: 50 });
  assert.equal(r.count(50), 1);
});

test("the typing line names up to three typers and counts the rest", () => {
  assert.equal(typingText([]), "");
  assert.equal(typingText(["alice"]), "alice is typing…");
  assert.equal(typingText(["alice", "bob"]), "alice and bob are typing…");
  assert.equal(typingText(["alice", "bob", "carol"]), "alice, bob and carol are typing…");
  assert.equal(typingText(["alice", "bob", "carol", "dave", "erin"]), "alice, bob and 3 others are typing…");
});

test("typing frames: a start while the draft has text, a stop when it is cleared, and a start never within the gap of the last", async () => {
  const sent: string[] = [];
  let now = 1_000_000;
  const typing = new TypingSender((channel, stop) => sent.push(`${channel} ${stop ? "stop" : "start"}`), () => now);
  typing.draft("lobby", true);
  assert.deepEqual(sent, ["lobby start"]);
  // Cleared, then typed again at once: the start waits for the gap.
  typing.draft("lobby", false);
  typing.draft("lobby", true);
  typing.draft("lobby", true);
  assert.deepEqual(sent, ["lobby start", "lobby stop"]);
  now += START_GAP_MS;
  await new Promise((r) => setTimeout(r, START_GAP_MS + 50));
  assert.deepEqual(sent, ["lobby start", "lobby stop", "lobby start"]);
  // A start held back and then sent: the draft was cleared meanwhile, so it never goes.
  typing.draft("lobby", false);
  typing.draft("lobby", true);
  typing.stop("lobby");
  await new Promise((r) => setTimeout(r, START_GAP_MS + 50));
  assert.deepEqual(sent, ["lobby start", "lobby stop", "lobby start", "lobby stop", "lobby stop"]);
  // Channels are apart.
  typing.draft("other", true);
  assert.equal(sent.at(-1), "other start");
  typing.clear();
});
