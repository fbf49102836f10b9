// One Socket.IO 4 node for chatmesh-bench-peers: rooms shared with the other
// nodes through the sharded Redis adapter on a Redis Cluster, in "dynamic"
// mode (one SSUBSCRIBE per room a node has members of).
//
// Configuration, from the environment:
//   REDIS_NODES  comma-separated Redis Cluster seed nodes, redis://host:port
//   PORT         port to listen on (default 0: one the kernel picks)
//   HOST         address to listen on (default 127.0.0.1)
//
// Once Redis is connected and the port bound, the server prints one line on
// stdout, `ready <host>:<port>`, and nothing else there afterwards; logs go
// to stderr. A port of 0 spares the caller picking a free port that someone
// may take before the server binds it.
//
// Events, each acknowledged through the client's ack callback:
//   join(room)        joins the room; acknowledged once this node's
//                     subscription to the room's Redis channel is in place,
//                     so members elsewhere hear it from then on
//   send(room, body)  emits `msg` with the body to the room, on every node
// A refused request is acknowledged with { error: "<reason>" }.

import { createServer } from "node:http";
import process from "node:process";

import { createShardedAdapter } from "@socket.io/redis-adapter";
import { createCluster } from "redis";
import { Server } from "socket.io";

const seeds = (process.env.REDIS_NODES ?? "")
  .split(",")
  .map((url) => url.trim())
  .filter((url) => url !== "");
if (seeds.length === 0) {
  console.error("REDIS_NODES is empty: name the Redis Cluster's seed nodes, redis://host:port,…");
  process.exit(2);
}
const port = Number(process.env.PORT ?? "0");
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT=${process.env.PORT} is not a port number`);
  process.exit(2);
}
const host = process.env.HOST ?? "127.0.0.1";

const pub = createCluster({ rootNodes: seeds.map((url) => ({ url })) });
const sub = pub.duplicate();
// Without a listener an 'error' event kills the process; the clients
// reconnect on their own, so a dropped connection is only logged.
pub.on("error", (err) => console.error("redis publisher:", err.message));
sub.on("error", (err) => console.error("redis subscriber:", err.message));

// The adapter subscribes to a room's channel when the room first gets a
// member here, but drops the SSUBSCRIBE's promise. Keeping it per channel
// lets `join` wait for it, so its ack means the node hears the room.
const subscriptions = new Map();
const sSubscribe = sub.sSubscribe.bind(sub);
sub.sSubscribe = (channel, listener, bufferMode) => {
  const done = sSubscribe(channel, listener, bufferMode);
  if (typeof channel === "string") subscriptions.set(channel, done);
  return done;
};

await Promise.all([pub.connect(), sub.connect()]);

const httpServer = createServer();
// Nagle's algorithm would hold small frames back for up to 40 ms; every
// peer in the comparison turns it off.
httpServer.on("connection", (socket) => socket.setNoDelay(true));

const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  adapter: createShardedAdapter(pub, sub, { subscriptionMode: "dynamic" }),
});
const adapter = io.of("/").adapter;

function refuse(ack, reason) {
  if (typeof ack === "function") ack({ error: reason });
}

io.on("connection", (socket) => {
  socket.on("join", async (room, ack) => {
    if (typeof room !== "string" || room === "") {
      return refuse(ack, "join: room must be a non-empty string");
    }
    try {
      await socket.join(room);
      // The adapter's channel for a room, as its "dynamic" mode names it.
      await subscriptions.get(`${adapter.channel}${room}#`);
      if (typeof ack === "function") ack();
    } catch (err) {
      console.error(`join ${room}:`, err.message);
      refuse(ack, `join: ${err.message}`);
    }
  });

  socket.on("send", (room, body, ack) => {
    if (typeof room !== "string" || room === "") {
      return refuse(ack, "send: room must be a non-empty string");
    }
    // Goes through the adapter: SPUBLISH to the room's channel for the
    // other nodes, then the fan-out to this node's members. The emit does
    // not wait for either, so the ack leaves first.
    io.to(room).emit("msg", body);
    if (typeof ack === "function") ack();
  });
});

// A large backlog: the load client opens thousands of connections at once.
httpServer.listen({ port, host, backlog: 4096 }, () => {
  const { address, port: bound } = httpServer.address();
  process.stdout.write(`ready ${address}:${bound}\n`);
});

function shutdown() {
  io.close(() => Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0)));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
