// A test double of the browser's WebSocket, for the tests of tidewire.js that
// need a hub that misbehaves on cue (no replies, duplicate pushes, close codes).
// Pass it as `new tw.Client(url, {WebSocket: FakeSocket})`. Each socket opens
// on the next turn of the event loop; what the client sends is kept in `sent`
// and handed to `FakeSocket.handler(socket, request)`, which answers with
// `reply`, `fail`, `push` and `serverClose`. Every delivery is asynchronous,
// as over a network.
"use strict";

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    this.delivered = 0; // messages handed to onmessage
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.instances.push(this);
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }

  send(text) {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    const request = JSON.parse(text);
    this.sent.push(request);
    setTimeout(() => {
      if (this.readyState === 1) FakeSocket.handler(this, request);
    }, 0);
  }

  close(code = 1005, reason = "") {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.closedWith = { code, reason };
    setTimeout(() => this.onclose?.({ code, reason, wasClean: true }), 0);
  }

  // The hub's side.

  receive(message) {
    setTimeout(() => {
      if (this.readyState !== 1) return;
      this.delivered += 1;
      this.onmessage?.({ data: JSON.stringify(message) });
    }, 0);
  }

  reply(request, result) {
    this.receive({ id: request.id, result });
  }

  fail(request, code, message) {
    this.receive({ id: request.id, error: { code, message } });
  }

  push(message) {
    this.receive(message);
  }

  serverClose(code, reason = "") {
    setTimeout(() => {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: true });
    }, 0);
  }

  /** The requests sent with this `op`. */
  requests(op) {
    return this.sent.filter((request) => request.op === op);
  }
}

FakeSocket.instances = [];

/** A hub that answers connect, subscribe, unsubscribe and ping; tests replace it. */
FakeSocket.answer = (socket, request) => {
  switch (request.op) {
    case "connect":
      socket.reply(request, {
        client: `fake-${FakeSocket.instances.indexOf(socket)}`, user: "", version: "fake",
        heartbeat: 25,
      });
      break;
    case "subscribe":
      socket.reply(request, { channel: request.channel, epoch: "e1", offset: 0 });
      break;
    case "unsubscribe":
    case "ping":
      socket.reply(request, {});
      break;
    default:
      break; // no reply
  }
};

FakeSocket.handler = FakeSocket.answer;

FakeSocket.last = () => FakeSocket.instances[FakeSocket.instances.length - 1];

window.FakeSocket = FakeSocket;

/** Resolve once `condition()` is true; reject after `ms`. */
window.until = (condition, ms = window.WAIT ?? 10000) => new Promise((resolve, reject) => {
  const started = performance.now();
  const check = () => {
    let ok = false;
    try {
      ok = condition();
    } catch (err) {
      reject(err);
      return;
    }
    if (ok) resolve();
    else if (performance.now() - started > ms) reject(new Error(`timed out waiting for ${condition}`));
    else setTimeout(check, 5);
  };
  check();
});
