// The demo page: a chat room, who is online, and a live ticker, over one
// WebSocket through tidewire.js. User text only ever goes in with textContent.

import { Client, ErrorCode } from "./tidewire.js";

const CHAT = "chat:lobby";
const TICKER = "ticker:prices";
const NAME_KEY = "tidewire-demo:name";
const HISTORY = 50; // messages shown from before the page was opened

const $ = (id) => document.getElementById(id);

// The nickname, kept in localStorage (which may be unavailable).

function loadName() {
  try {
    const saved = localStorage.getItem(NAME_KEY);
    if (saved) return saved;
  } catch {
    // private mode: a name for this page only
  }
  const name = `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  saveName(name);
  return name;
}

function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // see loadName()
  }
}

let myName = loadName();

// The connection.

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const client = new Client(`${scheme}//${location.host}/ws`, { info: { name: myName } });

const STATE_TEXT = { connected: "connected", connecting: "connecting…", disconnected: "disconnected" };

function showState(state) {
  const box = $("connection");
  box.dataset.state = state;
  $("connection-text").textContent = STATE_TEXT[state] ?? state;
  $("connection-toggle").textContent = state === "disconnected" ? "Connect" : "Disconnect";
  $("online").classList.toggle("stale", state !== "connected");
  $("send").disabled = state === "disconnected";
}

client.on("state", showState);
client.on("disconnect", ({ code, reason, reconnect, delay }) => {
  const why = reason ? `${code} ${reason}` : `${code}`;
  $("connection").title = reconnect
    ? `connection closed (${why}); reconnecting in ${(delay / 1000).toFixed(1)} s`
    : `connection closed (${why})`;
});
client.on("connect", () => {
  $("connection").title = "";
  renderPeople();
});

$("connection-toggle").addEventListener("click", () => {
  if (client.state === "disconnected") client.connect();
  else client.disconnect();
});

// Colors for names, stable per name.

function hue(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function avatar(name) {
  const el = document.createElement("span");
  el.className = "avatar";
  el.setAttribute("aria-hidden", "true");
  el.style.background = `hsl(${hue(name)} 55% 45%)`;
  el.textContent = [...name.trim()][0] ?? "?";
  return el;
}

// The chat.

const messages = $("messages");

function nameOf(pub) {
  const data = pub.data;
  const fromInfo = pub.from?.info;
  const name = (data && typeof data === "object" && data.name) || fromInfo?.name;
  if (typeof name === "string" && name) return name;
  return pub.from ? "anonymous" : "backend";
}

function textOf(data) {
  if (typeof data === "string") return data;
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

function messageItem(pub) {
  const li = document.createElement("li");
  li.className = "msg";
  li.dataset.testid = "message";
  li.dataset.offset = String(pub.offset);
  const name = nameOf(pub);
  if (!pub.from) li.classList.add("backend");
  else if (pub.from.client === client.session?.client) li.classList.add("mine");
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "who";
  who.dataset.testid = "message-name";
  who.textContent = name;
  meta.append(who);
  if (!pub.from) {
    const tag = document.createElement("span");
    tag.className = "muted";
    tag.textContent = "via HTTP API";
    meta.append(tag);
  }
  const text = document.createElement("div");
  text.className = "text";
  text.dataset.testid = "message-text";
  text.textContent = textOf(pub.data);
  li.append(avatar(name), meta, text);
  return li;
}

function nearBottom() {
  return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 48;
}

function append(li) {
  const stick = nearBottom();
  messages.append(li);
  if (stick) messages.scrollTop = messages.scrollHeight;
}

function notice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.dataset.testid = "notice";
  li.textContent = text;
  append(li);
}

// Who is online: client id -> ClientInfo, from the subscribe reply, then joins and leaves.
const people = new Map();

function personName(info) {
  const name = info.info?.name;
  return typeof name === "string" && name ? name : "anonymous";
}

function renderPeople() {
  const me = client.session?.client;
  const list = [...people.values()].sort((a, b) =>
    personName(a).localeCompare(personName(b)) || a.client.localeCompare(b.client));
  const items = list.map((info) => {
    const li = document.createElement("li");
    li.dataset.testid = "person";
    li.dataset.client = info.client;
    const name = personName(info);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = name;
    li.append(avatar(name), who);
    if (info.client === me) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "(you)";
      li.append(you);
    }
    return li;
  });
  $("online").replaceChildren(...items);
  $("online-count").textContent = String(list.length);
}

async function loadEarlier(sub, ctx) {
  let history;
  try {
    history = await sub.history({ limit: HISTORY });
  } catch {
    return; // the page works without them
  }
  // Live publications have offsets above ctx.offset: older ones go before them.
  const earlier = history.publications.filter(
    (pub) => history.epoch === ctx.epoch && pub.offset <= ctx.offset);
  if (earlier.length === 0 || sub.position?.epoch !== ctx.epoch) return;
  const stick = nearBottom();
  messages.prepend(...earlier.map(messageItem));
  if (stick) messages.scrollTop = messages.scrollHeight;
}

const chat = client.subscribe(CHAT, {
  presence: true,
  onSubscribed(ctx) {
    people.clear();
    for (const info of ctx.presence ?? []) people.set(info.client, info);
    renderPeople();
    if (!ctx.resubscribed) {
      loadEarlier(this, ctx);
    } else if (!ctx.recovered) {
      notice("Reconnected. Messages sent meanwhile may be missing.");
    }
  },
  onPublication(pub) {
    append(messageItem(pub));
  },
  onJoin(info) {
    people.set(info.client, info);
    renderPeople();
  },
  onLeave(info) {
    people.delete(info.client);
    renderPeople();
  },
  onError(err) {
    $("chat-error").textContent = `chat: ${err.message}`;
  },
});

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("message");
  const text = input.value.trim();
  if (!text) return;
  const send = $("send");
  send.disabled = true;
  try {
    await client.publish(CHAT, { text, name: myName });
    input.value = "";
    $("chat-error").textContent = "";
  } catch (err) {
    $("chat-error").textContent = err.code === ErrorCode.NOT_CONNECTED
      ? "Not connected: press Connect, then send again."
      : `Not sent: ${err.message}`;
  } finally {
    send.disabled = client.state === "disconnected";
    input.focus();
  }
});

// The nickname form: the name goes with connect, so changing it reconnects.

$("name").value = myName;
$("name-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name || name === myName) return;
  myName = name;
  saveName(name);
  client.info = { name };
  if (client.state !== "disconnected") {
    client.disconnect();
    client.connect();
  }
});

// The ticker.

const quotes = new Map(); // symbol -> its list item
let ticks = 0;

function formatPrice(value) {
  return typeof value === "number" ? value.toFixed(2) : "–";
}

function showQuotes(pub) {
  const list = Array.isArray(pub.data?.quotes) ? pub.data.quotes : [];
  for (const q of list) {
    if (!q || typeof q.symbol !== "string") continue;
    let li = quotes.get(q.symbol);
    if (li === undefined) {
      li = document.createElement("li");
      li.className = "quote";
      li.dataset.testid = "quote";
      li.dataset.symbol = q.symbol;
      for (const part of ["symbol", "change", "price"]) {
        const span = document.createElement("span");
        span.className = part;
        span.dataset.testid = `quote-${part}`;
        li.append(span);
      }
      li.querySelector(".symbol").textContent = q.symbol;
      quotes.set(q.symbol, li);
      $("ticker").append(li);
    }
    const change = typeof q.change === "number" ? q.change : 0;
    const direction = change > 0 ? "up" : change < 0 ? "down" : "flat";
    li.classList.remove("up", "down", "flat", "flash-up", "flash-down");
    void li.offsetWidth; // restart the flash animation
    li.classList.add(direction);
    if (direction !== "flat") li.classList.add(`flash-${direction}`);
    li.querySelector(".price").textContent = formatPrice(q.price);
    const arrow = direction === "up" ? "▲" : direction === "down" ? "▼" : "•";
    li.querySelector(".change").textContent = `${arrow} ${Math.abs(change).toFixed(2)}`;
  }
  ticks += 1;
  $("ticker").dataset.ticks = String(ticks);
  $("ticker-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

const ticker = client.subscribe(TICKER, { onPublication: showQuotes });

// How to publish from a terminal.

$("curl").textContent =
  `curl -H "Authorization: Bearer $TIDEWIRE_API_KEY" -H "Content-Type: application/json" \\\n` +
  `  -d '{"channel": "${CHAT}", "data": {"text": "hello from curl", "name": "backend"}}' \\\n` +
  `  ${location.origin}/api/publish`;

showState(client.state);
client.connect();

// For the console, and for tests.
window.tidewireDemo = { client, chat, ticker };
