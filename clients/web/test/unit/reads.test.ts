// The page's read-state bookkeeping, without a browser: unread counts from
// the gateway and live posts, mentions in text, and who has read a post.

import assert from "node:assert/strict";
import { test } from "node:test";

import { mentionParts, mentionsIn, mentionsOf } from "../../src/mentions.js";
import { readersOf, seenText } from "../../src/receipts.js";
import { badgeText, titleWith, UnreadCounter } from "../../src/unread.js";

test("mentions follow the gateway's rule: at a word's start, closing punctuation trimmed", () => {
  assert.deepEqual(mentionsIn("@ana hi @bo-b, and @c.d."), ["ana", "bo-b", "c.d"]);
  assert.deepEqual(mentionsIn("(cc @ana)"), ["ana"]);
  assert.deepEqual(mentionsIn("héllo,@zoë!"), ["zoë"]);
  assert.deepEqual(mentionsIn("mail ana@example.com"), []);
  assert.deepEqual(mentionsIn("@ @. @@ @! @@ana"), []);
  assert.deepEqual(mentionsIn("@ana @ana @ana"), ["ana"]);
  assert.deepEqual(mentionsIn("@ana @bob", "ana"), ["bob"]);
  assert.deepEqual(mentionsIn(`@${"x".repeat(129)} @ok`), ["ok"]);
  assert.equal(mentionsIn(Array.from({ length: 40 }, (_, i) => `@u${i}`).join(" ")).length, 32);
});

test("a message's text cut at its mentions gives the text back", () => {
  const text = "thanks @bob-1. see ana@example.com, (cc @carol)";
  const parts = mentionParts(text);
  assert.equal(parts.map((p) => p.text).join(""), text);
  assert.deepEqual(
    parts.filter((p) => p.user !== undefined).map((p) => [p.text, p.user]),
    [
      ["@bob-1", "bob-1"],
      ["@carol", "carol"],
    ],
  );
  assert.deepEqual(mentionParts("no mentions here"), [{ text: "no mentions here" }]);
});

test("a post's mentions are its list until it is edited, then its text's; a deleted one mentions nobody", () => {
  assert.deepEqual(mentionsOf({ sender_id: "a", body: "@bob hi", mentions: ["bob"] }), ["bob"]);
  assert.deepEqual(mentionsOf({ sender_id: "a", body: "@carol now", mentions: ["bob"], edit_count: 1 }), ["carol"]);
  assert.deepEqual(mentionsOf({ sender_id: "a", body: "@bob @a" }), ["bob"]);
  assert.deepEqual(mentionsOf({ sender_id: "a", body: "", mentions: ["bob"], deleted: true }), []);
});

test("unread counts add live posts past what the gateway counted, once each", () => {
  const c = new UnreadCounter();
  // Two posts arrive before the gateway answers; it counted the first.
  assert.equal(c.post(11, false), true);
  assert.equal(c.post(12, true), true);
  assert.equal(c.unread, 2);
  c.take({ read_seq: 5, last_seq: 11, unread: 4, mentions: 1 });
  assert.equal(c.unread, 5);
  assert.equal(c.mentions, 2);
  // A replay delivers one again; one the gateway counted comes late.
  assert.equal(c.post(12, true), false);
  assert.equal(c.post(10, false), false);
  assert.equal(c.unread, 5);
  // Deleted posts no longer count; an edit adds a mention.
  assert.equal(c.post(13, false), true);
  c.edited(13, true);
  assert.equal(c.mentions, 3);
  c.deleted(13);
  assert.equal(c.unread, 5);
  assert.equal(c.mentions, 2);
});

test("reading clears the counts; reading part of what the gateway counted asks again", () => {
  const c = new UnreadCounter();
  c.take({ read_seq: 5, last_seq: 20, unread: 6, mentions: 1 });
  c.post(21, false);
  assert.equal(c.readTo(15), true);
  assert.equal(c.stale, true);
  assert.equal(c.unread, 7, "the stored count stands until the gateway says again");
  c.take({ read_seq: 15, last_seq: 21, unread: 3, mentions: 0 });
  assert.equal(c.stale, false);
  assert.equal(c.unread, 3);
  assert.equal(c.readTo(21), true);
  assert.equal(c.unread, 0);
  assert.equal(c.mentions, 0);
  assert.equal(c.readTo(18), false, "a position never goes back");
  // An answer read before the user's read is stored takes nothing back.
  c.take({ read_seq: 15, last_seq: 21, unread: 3, mentions: 0 });
  assert.equal(c.read, 21);
  assert.equal(c.unread, 0);
  // Posts at or before the position never count.
  assert.equal(c.post(21, false), false);
  assert.equal(c.post(22, false), true);
  assert.equal(c.unread, 1);
});

test("the badge and the title say how many are unread, and when some mention the user", () => {
  assert.deepEqual(badgeText(0, 0), { text: "", title: "" });
  assert.deepEqual(badgeText(3, 0), { text: "3", title: "3 unread messages" });
  assert.deepEqual(badgeText(1, 1), { text: "@ 1", title: "1 unread message, 1 mentions you" });
  assert.equal(titleWith(3, "alice · chatmesh"), "(3) alice · chatmesh");
  assert.equal(titleWith(0, "chatmesh"), "chatmesh");
});

test("a post is seen by the members whose position reached it, and by those who posted after it", () => {
  const positions = new Map([
    ["me", 40],
    ["bob", 12],
    ["carol", 9],
    ["dan", 30],
  ]);
  assert.deepEqual(readersOf(10, "me", positions, []), ["bob", "dan"]);
  assert.deepEqual(readersOf(10, "me", positions, [{ seq: 11, sender_id: "carol" }, { seq: 12, sender_id: "me" }]), ["bob", "carol", "dan"]);
  assert.deepEqual(readersOf(50, "me", positions, []), []);
  assert.equal(seenText(["bob"]), "Seen by bob");
  assert.equal(seenText(["bob", "carol"]), "Seen by bob, carol");
  assert.equal(seenText(["a", "b", "c", "d", "e", "f", "g"]), "Seen by a, b, c, d, e and 2 others");
  assert.equal(seenText([]), "");
});
