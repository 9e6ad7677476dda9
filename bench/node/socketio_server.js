// The Socket.IO contender of the hub benchmark: one Node process, the socket.io
// package with its defaults (Engine.IO v4, the ws engine), one room per channel.
//
// A subscriber emits "subscribe" with the room's name and gets an ack once it
// has joined. The backend is a Socket.IO client too: it emits "publish" with
// the room and the data, and the server sends the data to the room with
// io.to(room).emit("pub", data), then acks. That is the shortest path from a
// backend to a room that Socket.IO offers: one emit, no HTTP server of one's
// own, no adapter.
//
// It prints "LISTENING <port> <info JSON>" once it listens on 127.0.0.1.

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const server = http.createServer();
const io = new Server(server, { serveClient: false });

io.on("connection", (socket) => {
  socket.on("subscribe", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("publish", (room, data, ack) => {
    io.to(String(room)).emit("pub", data);
    if (typeof ack === "function") ack();
  });
});

server.listen(0, "127.0.0.1", () => {
  const info = {
    library: `socket.io ${require("socket.io/package.json").version}`,
    node: process.version,
  };
  process.stdout.write(`LISTENING ${server.address().port} ${JSON.stringify(info)}\n`);
});

process.on("SIGTERM", () => process.exit(0));
