// Typing over a fake socket: the frames `typing()` sends, and the sets the
// gateway sends back as `typing` events.
import assert from "node:assert/strict";
import test from "node:test";

import { ChatClient, type Subscription, type TypingEvent } from "../../src/index.js";
import { fakeSockets, type FakeSocket } from "../harness/fake-socket.js";
import { waitFor } from "../harness/util.js";

/** A client on a fake socket, subscribed to `lobby`, with a clock the test moves. */
async function subscribed(): Promise<{ c: ChatClient; socket: FakeSocket; sub: Subscription; clock: { ms: number } }> {
  const fake = fakeSockets();
  const clock = { ms: 1_800_000_000_000 };
  const c = new ChatClient({
    url: "ws://127.0.0.1:9",
    token: "t",
    WebSocket: fake.WebSocket,
    fetch: async () => new Response(null, { status: 500 }),
    random: () => 0,
    now: () => clock.ms,
  });
  const ready = c.connect();
  const socket = await fake.next(1);
  await ready;
  const sub = c.subscribe("lobby");
  await waitFor("subscribe", () => socket.framesOf("subscribe").length > 0, 2_000, 5);
  const request_id = socket.framesOf("subscribe")[0]?.request_id ?? "";
  socket.receive({ type: "subscribed", request_id, channel_id: "lobby", seq: 0 });
  await sub.ready();
  return { c, socket, sub, clock };
}

test("typing: a start at most every 3 s, a stop only after a start", async () => {
  const { c, socket, clock } = await subscribed();
  c.typing("lobby");
  c.typing("lobby");
  assert.deepEqual(socket.framesOf("typing"), [{ type: "typing", channel_id: "lobby" }]);
  clock.ms += 2_999;
  c.typing("lobby");
  assert.equal(socket.framesOf("typing").length, 1, "still within 3 s");
  clock.ms += 1;
  c.typing("lobby");
  assert.equal(socket.framesOf("typing").length, 2, "renewed after 3 s");
  c.typing("lobby", true);
  c.typing("lobby", true);
  assert.deepEqual(socket.framesOf("typing").slice(2), [{ type: "typing", channel_id: "lobby", stop: true }]);
  // After a stop the next keystroke is a start again at once.
  c.typing("lobby");
  assert.equal(socket.framesOf("typing").length, 4);
  // Not subscribed: nothing to say, nothing sent.
  c.typing("elsewhere");
  assert.equal(socket.framesOf("typing").length, 4);
  c.close();
});

test("typing: the gateway's sets arrive as typing events on the subscription and the client", async () => {
  const { c, socket, sub } = await subscribed();
  const onSub: TypingEvent[] = [];
  const onClient: [TypingEvent, string][] = [];
  sub.on("typing", (e) => onSub.push(e));
  c.on("typing", (e, s) => onClient.push([e, s.channel]));
  socket.receive({ type: "typing", channel_id: "lobby", user_ids: ["alice", "bob"] });
  socket.receive({ type: "typing", channel_id: "lobby", user_ids: [] });
  // A channel the client does not receive is ignored.
  socket.receive({ type: "typing", channel_id: "elsewhere", user_ids: ["carol"] });
  assert.deepEqual(onSub, [
    { channel_id: "lobby", user_ids: ["alice", "bob"] },
    { channel_id: "lobby", user_ids: [] },
  ]);
  assert.deepEqual(
    onClient.map(([e, channel]) => [e.user_ids, channel]),
    [
      [["alice", "bob"], "lobby"],
      [[], "lobby"],
    ],
  );
  c.close();
});
