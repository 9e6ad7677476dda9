/**
 * tidewire.js: the browser client of the tidewire hub (`tidewire serve`).
 *
 * One WebSocket to the hub's `/ws`, the JSON protocol of docs/protocol.md on it:
 * requests matched to their replies by id, pushes dispatched to subscriptions.
 * The client reconnects by itself with exponential backoff and full jitter,
 * resubscribes, and recovers what each subscription missed while it was away.
 * An ES module with no dependencies and no build step:
 *
 * ```js
 * import { Client } from "/tidewire.js";
 *
 * const client = new Client("/ws", { info: { name: "Ada" } });
 * client.on("state", (state) => console.log("now", state));
 * const chat = client.subscribe("chat:lobby", {
 *   onPublication(pub) { console.log(pub.offset, pub.data); },
 * });
 * client.connect();
 * await client.publish("chat:lobby", { text: "hello" });
 * const sum = await client.rpc("add", [1, 2]);  // answered by your backend
 * ```
 *
 * The hub may also subscribe the client to channels itself (server-side
 * subscriptions, made by your backend): the client's `subscribed`,
 * `publication`, `join`, `leave` and `unsubscribed` events tell of them, and
 * they are recovered after a reconnection like the client's own.
 *
 * Guarantees, per subscription: publications reach `onPublication` once each,
 * in the channel's order. After a reconnection the publications the hub still
 * had are delivered first, then the live ones; `onSubscribed` says with
 * `recovered` whether anything may have been lost in between.
 *
 * Every delay and timeout option is in milliseconds.
 *
 * @module tidewire
 */

/** The version of this file. */
export const VERSION = "0.1.0";

/**
 * The `code` of errors made by the client itself. Errors that come from the
 * hub carry the protocol's code instead (400, 401, 403, 404, 409, 429, 500,
 * 503), so the two never collide.
 *
 * - `TIMEOUT`: no reply within the request's timeout.
 * - `CONNECTION_LOST`: the connection closed before the reply came; the
 *   request may or may not have been done.
 * - `NOT_CONNECTED`: the client is disconnected (never connected, `disconnect()`
 *   was called, or the hub said not to reconnect); the request was not sent.
 * - `PROTOCOL`: the hub sent something that isn't the protocol.
 * - `TOKEN`: `getToken()` failed; the error's `cause` is what it threw.
 *
 * @readonly
 * @enum {number}
 */
export const ErrorCode = Object.freeze({
  TIMEOUT: 1,
  CONNECTION_LOST: 2,
  NOT_CONNECTED: 3,
  PROTOCOL: 4,
  TOKEN: 5,
});

/** An error of the hub or of the client, with a numeric `code` (see {@link ErrorCode}). */
export class TidewireError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = "TidewireError";
    /** @type {number} */
    this.code = code;
  }
}

/**
 * The delay before reconnection attempt number `attempt` (0 for the first):
 * exponential backoff with full jitter, never below `minDelay` nor above
 * `maxDelay`. The ceiling doubles with each attempt (2 × minDelay, 4 ×
 * minDelay, ...) up to `maxDelay`; the delay is drawn uniformly between
 * `minDelay` and that ceiling, so that clients dropped together don't come back
 * together.
 *
 * @param {number} attempt
 * @param {number} minDelay
 * @param {number} maxDelay
 * @param {() => number} [random] a source of numbers in [0, 1)
 * @returns {number} milliseconds
 */
export function backoff(attempt, minDelay, maxDelay, random = Math.random) {
  const ceiling = Math.max(minDelay, Math.min(maxDelay, minDelay * 2 ** (attempt + 1)));
  return minDelay + random() * (ceiling - minDelay);
}

/** @typedef {"disconnected" | "connecting" | "connected"} State */
/** @typedef {"unsubscribed" | "subscribing" | "subscribed"} SubscriptionState */

/**
 * A client as presence shows it, and as the `from` of its publications.
 * @typedef {object} ClientInfo
 * @property {string} client the connection's id, unique in the hub
 * @property {string} user the user id from the token; `""` for anonymous clients
 * @property {Record<string, unknown>} [info] the connect `info` or the token's `info` claim
 */

/**
 * A place in a channel's stream: everything up to `offset` of `epoch`.
 * @typedef {object} Position
 * @property {string} epoch
 * @property {number} offset
 */

/**
 * One publication of a channel.
 * @typedef {object} Publication
 * @property {string} channel
 * @property {string} epoch
 * @property {number} offset 1, 2, 3... in the channel's order, within the epoch
 * @property {*} data the published JSON value
 * @property {ClientInfo} [from] the publishing client; absent when a backend published
 */

/**
 * What `onSubscribed` receives, each time the subscription is (re)established.
 * @typedef {object} SubscribedContext
 * @property {string} channel
 * @property {string} epoch the channel's epoch
 * @property {number} offset the channel's latest offset when the hub answered
 * @property {boolean} resubscribed false the first time, true after a reconnection
 * @property {boolean} recovered true when the hub proved that nothing was missed
 *   since the last position (the publications missed, if any, follow through
 *   `onPublication`). False on a first subscription without `since`, and when
 *   publications may have been lost (the epoch changed, or the gap was older
 *   than the channel's history): reload the state from your backend.
 * @property {ClientInfo[]} [presence] who is subscribed, with the `presence` option
 */

/**
 * The result of `connect` on the hub.
 * @typedef {object} Session
 * @property {string} client this connection's id
 * @property {string} user the user id; `""` when anonymous
 * @property {string} version the hub's version
 * @property {number} heartbeat seconds between pings
 * @property {number} [expires] the connection's expiry, Unix seconds (from the
 *   token, or from your backend's connect proxy; a refresh moves it)
 * @property {*} [data] what your backend's connect proxy returned for the client
 */

/**
 * What the `disconnect` event receives.
 * @typedef {object} DisconnectEvent
 * @property {number} code the close code (1006 when the connection failed or
 *   the client gave up on it, for example after a ping without reply)
 * @property {string} reason
 * @property {boolean} reconnect whether the client will reconnect by itself
 * @property {number | null} delay milliseconds before it tries, when it will
 */

/**
 * @typedef {object} HistoryResult
 * @property {string} epoch
 * @property {number} offset the channel's latest offset
 * @property {Publication[]} publications oldest first
 * @property {boolean} [recovered] with `since`: whether these are all the publications after it
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} [token] a JWT made by your backend; see `getToken`
 * @property {() => Promise<string | null | undefined>} [getToken] called for a
 *   token before the first connection when `token` is not given, after the hub
 *   closed with 4001 (token expired), when the token's `expires` has passed,
 *   and once after the hub refused a token; a falsy result connects anonymously
 * @property {Record<string, unknown> | null} [info] shown in presence and in
 *   the `from` of this client's publications; at most 1 KiB as JSON
 * @property {*} [data] sent with each connect, for your backend's connect proxy
 * @property {number} [minDelay=500] the shortest delay before a reconnection
 * @property {number} [maxDelay=20000] the longest delay before a reconnection
 * @property {number} [timeout=10000] how long a request waits for its reply,
 *   and a new connection for the reply to `connect`
 * @property {number} [heartbeatTimeout=5000] how long a ping waits for its
 *   reply before the connection counts as dead
 * @property {new (url: string) => WebSocket} [WebSocket] the WebSocket class
 *   (defaults to the global one): for other platforms, and for tests
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {(pub: Publication) => void} [onPublication]
 * @property {(client: ClientInfo) => void} [onJoin] a client subscribed (where the
 *   namespace has join and leave pushes)
 * @property {(client: ClientInfo) => void} [onLeave] a client left
 * @property {(ctx: SubscribedContext) => void} [onSubscribed]
 * @property {(err: TidewireError) => void} [onError] the hub refused the
 *   subscription (the subscription is then over: its state is "unsubscribed"),
 *   or failed it for now (500, 503: the client tries again with backoff)
 * @property {boolean} [presence] ask for the presence list with each subscribe,
 *   in `onSubscribed`'s `presence`
 * @property {Position} [since] recover from this position on the first
 *   subscription, for example one saved before the page was reloaded
 * @property {string} [token] a subscription token (a JWT with a `channel`
 *   claim, made by your backend): needed in a private namespace
 * @property {(channel: string) => Promise<string | null | undefined>} [getToken]
 *   called for a subscription token before subscribing when `token` is not
 *   given, and once more after the hub refused one (401)
 * @property {(ctx: UnsubscribedContext) => void} [onUnsubscribed] the hub
 *   ended the subscription (your backend's /api/unsubscribe): it is over
 */

/**
 * What the `unsubscribed` event and `onUnsubscribed` receive.
 * @typedef {object} UnsubscribedContext
 * @property {string} channel
 */

/**
 * What the `join` and `leave` events of server-side subscriptions receive.
 * @typedef {object} PresenceEvent
 * @property {string} channel
 * @property {ClientInfo} client
 */

const DEFAULTS = Object.freeze({
  minDelay: 500,
  maxDelay: 20000,
  timeout: 10000,
  heartbeatTimeout: 5000,
});

const LOST = 1006; // the close code of a connection that ended without a close frame

/** Tell the page about an exception in an application's callback, without breaking the client. */
function report(err) {
  if (typeof globalThis.reportError === "function") {
    globalThis.reportError(err);
  } else {
    console.error(err);
  }
}

/** `ws:` or `wss:` URL for `url`, which may be relative to the page or use http(s):. */
function resolveUrl(url) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const resolved = new URL(String(url), base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

function checkDelay(name, value) {
  if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a positive number of milliseconds, not ${value}`);
  }
}

function checkChannel(channel) {
  if (typeof channel !== "string" || channel === "") {
    throw new TypeError("channel must be a non-empty string");
  }
}

function publication(channel, epoch, p) {
  /** @type {Publication} */
  const pub = { channel, epoch, offset: p.offset, data: p.data };
  if (p.from !== undefined) pub.from = p.from;
  return pub;
}

/**
 * A connection to the hub, kept up until `disconnect()`.
 *
 * Events (`client.on(name, fn)`):
 * - `state` `(state, previous)`: "disconnected" (not trying: before
 *   `connect()`, after `disconnect()`, or after a "don't reconnect" close
 *   code 4500–4999), "connecting" (opening, or waiting to try again),
 *   "connected" (the hub answered `connect`);
 * - `connect` `(session)`: the hub answered `connect`;
 * - `disconnect` `(event)`: a connection, or an attempt at one, ended; see
 *   {@link DisconnectEvent};
 * - `error` `(err)`: something went wrong that no promise or subscription
 *   reports: `connect` refused, `getToken()` failed, a malformed message.
 *
 * Events of the server-side subscriptions (those the hub made, not
 * `subscribe()`):
 * - `subscribed` `(ctx)`: one began, or was re-established after a
 *   reconnection; see {@link SubscribedContext};
 * - `publication` `(pub)`: a publication of one, once each, in order;
 * - `join`, `leave` `({channel, client})`: presence changes, where the
 *   namespace has join and leave pushes;
 * - `unsubscribed` `({channel})`: the hub ended one.
 *
 * A connect refused with 503 (your backend unavailable) is tried again with
 * backoff, like a lost connection.
 *
 * Requests (`publish`, `presence`, `history`) made while connecting wait for
 * the connection, within their timeout; made while disconnected, they fail at
 * once with `NOT_CONNECTED`. A request in flight when the connection is lost
 * fails with `CONNECTION_LOST` and is not sent again.
 */
export class Client {
  /**
   * @param {string | URL} url the hub's WebSocket endpoint, `ws://host/ws`; a
   *   relative URL (`/ws`) is resolved against the page
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    if (typeof url !== "string" && !(url instanceof URL)) {
      throw new TypeError(`url must be a string or a URL, not ${url}`);
    }
    const opts = { ...DEFAULTS, ...options };
    for (const name of ["minDelay", "maxDelay", "timeout", "heartbeatTimeout"]) {
      checkDelay(name, opts[name]);
    }
    if (opts.maxDelay < opts.minDelay) throw new RangeError("maxDelay must be >= minDelay");
    const WebSocketClass = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== "function") {
      throw new TypeError("no WebSocket class here: pass options.WebSocket");
    }
    /** The hub's WebSocket URL. @type {string} */
    this.url = resolveUrl(url);
    /**
     * Sent with the next `connect`: change it, then `disconnect()` and
     * `connect()`, to show a new name in presence.
     * @type {Record<string, unknown> | null}
     */
    this.info = opts.info ?? null;
    this._opts = opts;
    this._WebSocket = WebSocketClass;
    this._token = opts.token || null;
    this._getToken = opts.getToken ?? null;
    this._refreshed = false; // getToken() was called after a refusal, since the last connect
    this._expires = null;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {State} */
    this._state = "disconnected";
    this._wanted = false; // connect() was called, and neither disconnect() nor a final close since
    this._ws = null;
    this._gen = 0; // bumped by every new socket and by disconnect(), to ignore stale work
    this._attempt = 0;
    this._retryTimer = null;
    this._connectTimer = null;
    this._heartbeatTimer = null;
    /** @type {Session | null} */
    this._session = null;
    this._nextId = 1;
    this._inflight = new Map(); // id -> request
    this._queue = []; // requests waiting for the connection
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /** Server-side subscriptions: channel -> {position, resubscribe}. */
    this._serverSubs = new Map();
    this._networkListened = false;
    this._onOnline = () => this._online();
    this._onOffline = () => this._offline();
  }

  /** The connection's state. @type {State} */
  get state() {
    return this._state;
  }

  /** The hub's answer to `connect` while connected, else null. @type {Session | null} */
  get session() {
    return this._session;
  }

  // Events.

  /**
   * Call `fn` on each `event`; returns a function that removes it.
   * @param {"state" | "connect" | "disconnect" | "error" | "subscribed" | "publication" | "join" | "leave" | "unsubscribed"} event
   * @param {Function} fn
   * @returns {() => void}
   */
  on(event, fn) {
    if (typeof fn !== "function") throw new TypeError("the listener must be a function");
    let set = this._listeners.get(event);
    if (set === undefined) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /**
   * Stop calling `fn` on `event`.
   * @param {string} event
   * @param {Function} fn
   */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (set === undefined) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        report(err);
      }
    }
  }

  _setState(state) {
    const previous = this._state;
    if (state === previous) return;
    this._state = state;
    this._emit("state", state, previous);
  }

  // The connection's life.

  /** Connect, and stay connected until `disconnect()`. Does nothing if already connecting or connected. */
  connect() {
    if (this._wanted) return;
    this._wanted = true;
    this._attempt = 0;
    this._refreshed = false;
    this._listenNetwork(true);
    this._setState("connecting");
    this._open();
  }

  /**
   * Close the connection and don't reconnect. Requests waiting for a reply
   * fail with `CONNECTION_LOST`, requests waiting for the connection with
   * `NOT_CONNECTED`. Subscriptions stay: `connect()` subscribes them again.
   */
  disconnect() {
    this._stop(1000, "disconnect() was called");
  }

  /** Stop for good: the application asked, or the hub said not to come back. */
  _stop(code, reason) {
    this._wanted = false;
    this._gen++;
    this._listenNetwork(false);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this._detach();
    this._teardown(new TidewireError(ErrorCode.CONNECTION_LOST, reason));
    if (ws !== null) {
      try {
        ws.close(1000, reason.slice(0, 120));
      } catch {
        // closing a socket can't fail in a way that matters here
      }
    }
    this._failQueue(reason);
    if (this._state !== "disconnected") {
      this._setState("disconnected");
      this._emit("disconnect", { code, reason, reconnect: false, delay: null });
    }
  }

  async _open() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const gen = ++this._gen;
    let token;
    try {
      token = await this._currentToken();
    } catch (err) {
      if (gen !== this._gen) return;
      this._emit("error", new TidewireError(ErrorCode.TOKEN, `getToken() failed: ${err}`, { cause: err }));
      this._retry(LOST, "getToken() failed");
      return;
    }
    if (gen !== this._gen) return; // disconnect() or another _open() meanwhile
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (err) {
      // A URL the WebSocket API refuses: no attempt can succeed.
      const error = new TidewireError(ErrorCode.NOT_CONNECTED, `can't open ${this.url}: ${err}`, { cause: err });
      this._emit("error", error);
      this._stop(LOST, error.message);
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws === ws) this._sendConnect(ws, token);
    };
    ws.onmessage = (event) => {
      if (this._ws === ws) this._receive(event.data);
    };
    ws.onclose = (event) => {
      if (this._ws === ws) this._closed(event.code, event.reason);
    };
    ws.onerror = () => {}; // a close event follows, with what there is to know
    const ms = this._opts.timeout;
    this._connectTimer = setTimeout(() => {
      this._connectTimer = null;
      if (this._ws === ws) this._drop(`no reply to connect in ${ms} ms`);
    }, ms);
  }

  async _currentToken() {
    if (this._getToken !== null && this._expires !== null && Date.now() >= this._expires * 1000) {
      this._token = null; // it would be refused
    }
    if (this._token === null && this._getToken !== null) {
      this._token = (await this._getToken()) || null;
      this._expires = null;
    }
    return this._token;
  }

  _sendConnect(ws, token) {
    const body = {};
    if (token) body.token = token;
    if (this.info != null) body.info = this.info;
    if (this._opts.data !== undefined) body.data = this._opts.data;
    const positions = {};
    for (const [channel, state] of this._serverSubs) {
      positions[channel] = { epoch: state.position.epoch, offset: state.position.offset };
    }
    if (this._serverSubs.size > 0) body.server_subs = positions;
    this._call("connect", body, { timeout: 0, direct: true },
      (result) => this._connected(ws, result),
      (err) => this._connectRefused(ws, err, Boolean(token)));
  }

  _connected(ws, result) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._session = result;
    this._expires = typeof result.expires === "number" ? result.expires : null;
    this._attempt = 0;
    this._refreshed = false;
    // Subscriptions first, then what waited for the connection, all before
    // the listeners hear of it: what they do comes after, on the wire too.
    for (const sub of this._subs.values()) {
      if (sub._state === "subscribing") this._sendSubscribe(sub);
    }
    const queued = this._queue;
    this._queue = [];
    for (const request of queued) this._transmit(request);
    this._startHeartbeat(ws, result.heartbeat);
    this._setState("connected");
    if (this._ws === ws) this._emit("connect", result);
  }

  _connectRefused(ws, err, withToken) {
    if (this._ws !== ws || err.code === ErrorCode.CONNECTION_LOST) return; // _closed() has it
    if (err.code === 401 && this._getToken !== null && !this._refreshed) {
      // Most likely the token expired while we were away: get a new one, once.
      this._refreshed = true;
      this._token = null;
      this._drop(`connect refused (${err.message}); trying with a new token`);
      return;
    }
    this._emit("error", err);
    if (err.code === 401 && withToken) {
      if (this._getToken !== null) this._token = null; // never send a refused token again
      return; // the hub closes with 4500: don't reconnect
    }
    if (err.code >= 500) {
      // The hub's broker or your backend is unavailable: again, with backoff.
      this._drop(`connect failed: ${err.message}`);
      return;
    }
    // 400, 403 (your backend said no), 409...: trying again would get the same answer.
    this._stop(1000, `connect refused: ${err.message}`);
  }

  /** The connection ended: by the hub, by the network, or by `_drop()`. */
  _closed(code, reason) {
    this._teardown(new TidewireError(ErrorCode.CONNECTION_LOST, `connection closed (${code}${reason ? ` ${reason}` : ""})`));
    if (code === 4001 && this._getToken !== null) this._token = null; // expired: get a new one
    if (code >= 4500 && code <= 4999) {
      this._stop(code, reason); // the hub said not to come back
      return;
    }
    this._retry(code, reason);
  }

  _retry(code, reason) {
    const { minDelay, maxDelay } = this._opts;
    const delay = backoff(this._attempt++, minDelay, maxDelay);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this._wanted) this._open();
    }, delay);
    this._setState("connecting");
    this._emit("disconnect", { code, reason, reconnect: true, delay });
  }

  /** Give up on the current connection and reconnect. */
  _drop(reason) {
    const ws = this._detach();
    if (ws === null) return;
    try {
      ws.close(1000, reason.slice(0, 120));
    } catch {
      // see disconnect()
    }
    this._closed(LOST, reason);
  }

  /** Stop listening to the current socket; returns it. */
  _detach() {
    const ws = this._ws;
    this._ws = null;
    if (ws !== null) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    return ws;
  }

  /** Forget the current socket: its timers, its requests, its subscriptions' state. */
  _teardown(error) {
    this._detach();
    clearTimeout(this._connectTimer);
    clearTimeout(this._heartbeatTimer);
    this._connectTimer = this._heartbeatTimer = null;
    this._session = null;
    const inflight = [...this._inflight.values()];
    this._inflight.clear();
    for (const sub of this._subs.values()) sub._reset();
    for (const request of inflight) {
      clearTimeout(request.timer);
      request.onError(error);
    }
  }

  _failQueue(why) {
    const queued = this._queue;
    this._queue = [];
    for (const request of queued) {
      clearTimeout(request.timer);
      request.onError(new TidewireError(ErrorCode.NOT_CONNECTED, `${request.op} not sent: ${why || "disconnected"}`));
    }
  }

  _startHeartbeat(ws, seconds) {
    if (typeof seconds !== "number" || !(seconds > 0)) return;
    const interval = seconds * 1000;
    const timeout = this._opts.heartbeatTimeout;
    const beat = () => {
      this._heartbeatTimer = null;
      if (this._ws !== ws) return;
      this._call("ping", {}, { timeout, direct: true },
        () => {
          if (this._ws === ws) this._heartbeatTimer = setTimeout(beat, interval);
        },
        (err) => {
          if (this._ws === ws && err.code === ErrorCode.TIMEOUT) {
            this._drop(`no reply to ping in ${timeout} ms`);
          }
        });
    };
    this._heartbeatTimer = setTimeout(beat, interval);
  }

  _listenNetwork(on) {
    const target = globalThis;
    if (on === this._networkListened || typeof target.addEventListener !== "function") return;
    this._networkListened = on;
    const method = on ? "addEventListener" : "removeEventListener";
    target[method]("online", this._onOnline);
    target[method]("offline", this._onOffline);
  }

  /** The browser lost its network: the connection is almost surely dead, so don't wait for timeouts. */
  _offline() {
    if (this._ws !== null) this._drop("the browser went offline");
  }

  /** The network is back: try now rather than at the end of the backoff. */
  _online() {
    if (this._wanted && this._retryTimer !== null) {
      this._attempt = 0;
      this._open();
    }
  }

  // Requests.

  /**
   * Send a request now (connected, or `direct` on the current socket), queue
   * it for the connection, or fail it. Exactly one of the callbacks is called,
   * once: with the reply's result, or with the error (at once when the request
   * can't be sent).
   */
  _call(op, body, { timeout = this._opts.timeout, direct = false, queue = true } = {}, onResult, onError) {
    const request = { op, body, onResult, onError, timer: null, id: null };
    if (timeout > 0) {
      request.timer = setTimeout(() => {
        if (request.id !== null) this._inflight.delete(request.id);
        const i = this._queue.indexOf(request);
        if (i !== -1) this._queue.splice(i, 1);
        onError(new TidewireError(ErrorCode.TIMEOUT, `no reply to ${op} in ${timeout} ms`));
      }, timeout);
    }
    if (direct || this._state === "connected") {
      this._transmit(request);
    } else if (queue && this._wanted) {
      this._queue.push(request);
    } else {
      clearTimeout(request.timer);
      onError(new TidewireError(ErrorCode.NOT_CONNECTED,
        `${op} not sent: the client is disconnected; call connect()`));
    }
  }

  _transmit(request) {
    const ws = this._ws;
    let text;
    try {
      const id = this._nextId++;
      text = JSON.stringify({ id, op: request.op, ...request.body });
      request.id = id;
    } catch (err) {
      clearTimeout(request.timer);
      request.onError(err); // data that JSON can't hold
      return;
    }
    if (ws === null) {
      clearTimeout(request.timer);
      request.onError(new TidewireError(ErrorCode.CONNECTION_LOST, `${request.op} not sent: no connection`));
      return;
    }
    this._inflight.set(request.id, request);
    try {
      ws.send(text);
    } catch (err) {
      this._inflight.delete(request.id);
      clearTimeout(request.timer);
      request.onError(new TidewireError(ErrorCode.CONNECTION_LOST, `${request.op} not sent: ${err}`, { cause: err }));
    }
  }

  /** A request's promise: resolves with the reply's result, rejects with a TidewireError. */
  _request(op, body) {
    return new Promise((resolve, reject) => this._call(op, body, {}, resolve, reject));
  }

  _receive(data) {
    if (typeof data !== "string") {
      this._emit("error", new TidewireError(ErrorCode.PROTOCOL, "the hub sent a binary message"));
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      msg = null;
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      this._emit("error", new TidewireError(ErrorCode.PROTOCOL, `the hub sent something that isn't a JSON object: ${data.slice(0, 80)}`));
      return;
    }
    if (typeof msg.push === "string") {
      this._push(msg);
      return;
    }
    const request = msg.id == null ? undefined : this._inflight.get(msg.id);
    if (request === undefined) {
      // A reply to a request that timed out, or an error about no request of ours.
      if (msg.id == null && msg.error) this._emit("error", hubError(msg.error));
      return;
    }
    this._inflight.delete(msg.id);
    clearTimeout(request.timer);
    if (msg.error) {
      request.onError(hubError(msg.error));
    } else {
      request.onResult(msg.result ?? {});
    }
  }

  _push(msg) {
    if (msg.push === "refresh") {
      this._expires = typeof msg.expires === "number" ? msg.expires : null;
      if (this._session !== null) {
        if (this._expires === null) delete this._session.expires;
        else this._session.expires = this._expires;
      }
      return;
    }
    if (msg.push === "subscribe") {
      this._serverSubscribed(msg);
      return;
    }
    const server = this._serverSubs.get(msg.channel);
    if (server !== undefined) {
      this._serverPush(msg, server);
      return;
    }
    const sub = this._subs.get(msg.channel);
    if (sub === undefined || sub._state !== "subscribed") return; // unsubscribed meanwhile
    if (msg.push === "pub") sub._publication(msg);
    else if (msg.push === "join") sub._callback("onJoin", msg.client);
    else if (msg.push === "leave") sub._callback("onLeave", msg.client);
    else if (msg.push === "unsubscribe") sub._ended();
  }

  /** A server-side subscription began, or was re-established with recovery. */
  _serverSubscribed(msg) {
    const channel = msg.channel;
    const known = this._serverSubs.get(channel);
    const previous = known?.position ?? null;
    const sameEpoch = previous !== null && previous.epoch === msg.epoch;
    const state = {
      position: { epoch: msg.epoch, offset: sameEpoch ? previous.offset : 0 },
    };
    this._serverSubs.set(channel, state);
    /** @type {SubscribedContext} */
    const ctx = {
      channel, epoch: msg.epoch, offset: msg.offset,
      resubscribed: known !== undefined, recovered: msg.recovered === true,
    };
    this._emit("subscribed", ctx);
    for (const p of msg.publications ?? []) {
      if (this._serverSubs.get(channel) !== state) return; // ended meanwhile
      this._serverPublication(channel, state, p);
    }
    if (this._serverSubs.get(channel) === state && msg.offset > state.position.offset) {
      state.position.offset = msg.offset;
    }
  }

  _serverPush(msg, state) {
    const channel = msg.channel;
    if (msg.push === "pub") this._serverPublication(channel, state, msg);
    else if (msg.push === "join" || msg.push === "leave") this._emit(msg.push, { channel, client: msg.client });
    else if (msg.push === "unsubscribe") {
      this._serverSubs.delete(channel);
      this._emit("unsubscribed", { channel });
    }
  }

  _serverPublication(channel, state, p) {
    const position = state.position;
    if (typeof p.offset === "number") {
      if (p.offset <= position.offset) return; // seen already
      position.offset = p.offset;
    }
    this._emit("publication", publication(channel, position.epoch, p));
  }

  /**
   * The channels of the server-side subscriptions, with the last position
   * seen in each.
   * @returns {Map<string, Position>}
   */
  serverSubscriptions() {
    const out = new Map();
    for (const [channel, state] of this._serverSubs) out.set(channel, { ...state.position });
    return out;
  }

  // Channels.

  /**
   * Subscribe to `channel`, now if connected, else as soon as the client is.
   * The subscription lasts until its `unsubscribe()`, across reconnections.
   * @param {string} channel
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   * @throws {Error} when this client already has a subscription to `channel`
   */
  subscribe(channel, options = {}) {
    checkChannel(channel);
    if (this._subs.has(channel)) {
      throw new Error(`already subscribed to ${channel}: use client.subscription(channel), or unsubscribe() it first`);
    }
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    if (this._state === "connected") this._sendSubscribe(sub);
    return sub;
  }

  /**
   * This client's subscription to `channel`, if it has one.
   * @param {string} channel
   * @returns {Subscription | null}
   */
  subscription(channel) {
    return this._subs.get(channel) ?? null;
  }

  _sendSubscribe(sub) {
    clearTimeout(sub._retryTimer);
    sub._retryTimer = null;
    if (sub._token === null && typeof sub._options.getToken === "function" && !sub._fetched) {
      if (!sub._fetching) this._fetchSubscriptionToken(sub);
      return; // subscribes once it has the token
    }
    const body = { channel: sub.channel };
    if (sub._token !== null) body.token = sub._token;
    const since = sub._position;
    if (since !== null) body.since = { epoch: since.epoch, offset: since.offset };
    if (sub._options.presence) body.presence = true;
    const attempt = ++sub._attempt;
    const current = () => sub._attempt === attempt && sub._state === "subscribing";
    this._call("subscribe", body, { direct: true },
      (result) => {
        if (current()) sub._subscribed(result, since !== null);
      },
      (err) => {
        if (!current() || err.code === ErrorCode.CONNECTION_LOST || err.code === ErrorCode.NOT_CONNECTED) {
          return; // subscribes again on the next connection
        }
        if (err.code === ErrorCode.TIMEOUT) {
          sub._callback("onError", err);
          // Replies come in order: a stuck subscribe means a stuck connection.
          if (this._state === "connected" && current()) this._drop(err.message);
        } else if (err.code >= 500) {
          const { minDelay, maxDelay } = this._opts;
          sub._retryTimer = setTimeout(() => {
            sub._retryTimer = null;
            if (this._state === "connected" && current()) this._sendSubscribe(sub);
          }, backoff(sub._failures++, minDelay, maxDelay));
          sub._callback("onError", err);
        } else if (err.code === 401 && typeof sub._options.getToken === "function" && !sub._refreshed) {
          // The subscription token expired, most likely: get a new one, once.
          sub._refreshed = true;
          sub._token = null;
          sub._fetched = false;
          this._sendSubscribe(sub);
        } else {
          // Refused (400, 401, 403, 404, 429): asking again won't help. The channel
          // is free again before onError hears of it.
          sub._state = "unsubscribed";
          if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
          sub._callback("onError", err);
        }
      });
  }

  /** Ask `getToken(channel)` for a subscription token, then subscribe. */
  _fetchSubscriptionToken(sub) {
    sub._fetching = true;
    const attempt = sub._attempt;
    Promise.resolve()
      .then(() => sub._options.getToken(sub.channel))
      .then((token) => {
        sub._fetching = false;
        if (sub._attempt !== attempt || sub._state !== "subscribing" || this._state !== "connected") return;
        sub._token = token || null;
        sub._fetched = true;
        this._sendSubscribe(sub);
      }, (cause) => {
        sub._fetching = false;
        if (sub._attempt !== attempt || sub._state !== "subscribing") return;
        sub._callback("onError", new TidewireError(ErrorCode.TOKEN, `getToken() failed: ${cause}`, { cause }));
        const { minDelay, maxDelay } = this._opts;
        sub._retryTimer = setTimeout(() => {
          sub._retryTimer = null;
          if (this._state === "connected" && sub._state === "subscribing") this._sendSubscribe(sub);
        }, backoff(sub._failures++, minDelay, maxDelay));
      });
  }

  /**
   * Call `method` on your backend (the hub's rpc proxy) with `data` (any JSON
   * value). Resolves with the backend's `data`; rejects with its error code
   * and message, or 503 when the backend is unavailable.
   * @param {string} method
   * @param {*} [data]
   * @returns {Promise<*>}
   */
  async rpc(method, data = null) {
    if (typeof method !== "string" || method === "") {
      throw new TypeError("method must be a non-empty string");
    }
    const result = await this._request("rpc", { method, data });
    return result.data ?? null;
  }

  /**
   * Publish `data` (any JSON value) to `channel`, where its namespace lets
   * clients publish. Resolves with the publication's position.
   * @param {string} channel
   * @param {*} data
   * @returns {Promise<Position>}
   */
  async publish(channel, data) {
    checkChannel(channel);
    const result = await this._request("publish", { channel, data });
    return { epoch: result.epoch, offset: result.offset };
  }

  /**
   * Who is subscribed to `channel` now (where its namespace has presence on).
   * @param {string} channel
   * @returns {Promise<ClientInfo[]>}
   */
  async presence(channel) {
    checkChannel(channel);
    const result = await this._request("presence", { channel });
    return result.clients ?? [];
  }

  /**
   * How many clients are subscribed to `channel`, and how many distinct users
   * they are (anonymous clients count as clients only).
   * @param {string} channel
   * @returns {Promise<{numClients: number, numUsers: number}>}
   */
  async presenceStats(channel) {
    checkChannel(channel);
    const result = await this._request("presence_stats", { channel });
    return { numClients: result.num_clients, numUsers: result.num_users };
  }

  /**
   * The latest publications of `channel`, oldest first: at most `limit`, or
   * with `since`, those after that position.
   * @param {string} channel
   * @param {{limit?: number, since?: Position}} [options]
   * @returns {Promise<HistoryResult>}
   */
  async history(channel, { limit, since } = {}) {
    checkChannel(channel);
    const body = { channel };
    if (limit !== undefined) body.limit = limit;
    if (since !== undefined) body.since = { epoch: since.epoch, offset: since.offset };
    const result = await this._request("history", body);
    /** @type {HistoryResult} */
    const out = {
      epoch: result.epoch,
      offset: result.offset,
      publications: (result.publications ?? []).map((p) => publication(channel, result.epoch, p)),
    };
    if (result.recovered !== undefined) out.recovered = result.recovered;
    return out;
  }
}

function hubError(error) {
  const code = typeof error.code === "number" ? error.code : 500;
  return new TidewireError(code, String(error.message ?? "the hub failed"));
}

/**
 * A client's subscription to one channel, made by `client.subscribe()`. It
 * keeps the channel's position (the epoch of the last subscribe reply, the
 * offset of the last publication) to recover from after a reconnection.
 */
export class Subscription {
  /**
   * @param {Client} client
   * @param {string} channel
   * @param {SubscribeOptions} options
   */
  constructor(client, channel, options) {
    /** @type {Client} */
    this.client = client;
    /** @type {string} */
    this.channel = channel;
    this._options = options;
    /** @type {SubscriptionState} */
    this._state = "subscribing";
    this._position = options.since ? { epoch: options.since.epoch, offset: options.since.offset } : null;
    this._resubscribe = false;
    this._attempt = 0;
    this._failures = 0;
    this._retryTimer = null;
    this._token = options.token || null;
    this._fetching = false; // getToken() is running
    this._fetched = false; // getToken() gave the current token (null: none)
    this._refreshed = false; // a refused token was replaced, since the last subscribe
  }

  /**
   * "subscribing" until the hub confirms (and again while the client
   * reconnects), "subscribed", then "unsubscribed" after `unsubscribe()` or
   * a refusal by the hub.
   * @type {SubscriptionState}
   */
  get state() {
    return this._state;
  }

  /** The last position seen, or null before the first subscribe reply. @type {Position | null} */
  get position() {
    return this._position === null ? null : { ...this._position };
  }

  /**
   * End the subscription. Resolves when the hub confirms, or at once when not
   * connected; never rejects. No callback is called after this.
   * @returns {Promise<void>}
   */
  unsubscribe() {
    if (this._state === "unsubscribed") return Promise.resolve();
    this._state = "unsubscribed";
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const client = this.client;
    if (client._subs.get(this.channel) === this) client._subs.delete(this.channel);
    if (client.state !== "connected") return Promise.resolve();
    return new Promise((resolve) => {
      client._call("unsubscribe", { channel: this.channel }, { queue: false }, () => resolve(), () => resolve());
    });
  }

  /**
   * Who is subscribed to the channel now.
   * @returns {Promise<ClientInfo[]>}
   */
  presence() {
    return this.client.presence(this.channel);
  }

  /**
   * The channel's latest publications; see `Client.history`.
   * @param {{limit?: number, since?: Position}} [options]
   * @returns {Promise<HistoryResult>}
   */
  history(options) {
    return this.client.history(this.channel, options);
  }

  _callback(name, arg) {
    const fn = this._options[name];
    if (typeof fn === "function") {
      try {
        fn.call(this, arg);
      } catch (err) {
        report(err);
      }
    } else if (name === "onError") {
      this.client._emit("error", arg);
    }
  }

  /** The connection ended: subscribe again on the next one. */
  _reset() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._state === "subscribed") this._state = "subscribing";
  }

  _subscribed(result, withSince) {
    const previous = this._position;
    const sameEpoch = previous !== null && previous.epoch === result.epoch;
    // Offsets restart in a new epoch: only the old epoch's offsets are duplicates.
    this._position = { epoch: result.epoch, offset: sameEpoch ? previous.offset : 0 };
    this._state = "subscribed";
    this._failures = 0;
    this._refreshed = false;
    /** @type {SubscribedContext} */
    const ctx = {
      channel: this.channel,
      epoch: result.epoch,
      offset: result.offset,
      resubscribed: this._resubscribe,
      recovered: withSince && result.recovered === true,
    };
    if (result.presence !== undefined) ctx.presence = result.presence;
    this._resubscribe = true;
    this._callback("onSubscribed", ctx);
    for (const p of result.publications ?? []) {
      if (this._state !== "subscribed") return; // a callback unsubscribed or disconnected
      this._publication(p);
    }
    if (this._state === "subscribed" && result.offset > this._position.offset) {
      this._position.offset = result.offset;
    }
  }

  /** The hub ended the subscription (an unsubscribe push). */
  _ended() {
    this._state = "unsubscribed";
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const client = this.client;
    if (client._subs.get(this.channel) === this) client._subs.delete(this.channel);
    this._callback("onUnsubscribed", { channel: this.channel });
  }

  _publication(p) {
    const position = this._position;
    if (typeof p.offset === "number") {
      if (p.offset <= position.offset) return; // seen already
      position.offset = p.offset;
    }
    this._callback("onPublication", publication(this.channel, position.epoch, p));
  }
}
