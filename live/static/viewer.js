// The viewer page (/r/{room}?invite=…&ref=…): join with a display name; watch (WHEP); cards with live stock,
// countdowns and a log of price and stock changes; one-tap buy → checkout → order status from the personal
// `order` frames; chat; the viewer's own share link. All user text is rendered with textContent (dom.js).

import { api, ApiError, describe, money, randomKey } from "./api.js";
import { $, clock, copyText, fill, h, onSubmit, remaining, setText, show } from "./dom.js";
import { CLOSE } from "./close-codes.js";
import { RoomSocket, routeFrames } from "./hub.js";
import { play } from "./webrtc.js";

const roomId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const params = new URLSearchParams(location.search);
const storeKey = `livecart.viewer.${roomId}`;
const MAX_LOG = 100;
const MAX_CHAT = 200;
const FINAL_ORDER = new Set(["expired", "cancelled", "refunded"]);
const CHAT_ERRORS = { rate_limited: "You are sending messages too fast; wait a moment." };

let me = readStored(); // {viewer_id, name, token, share_url, invite, ref, orders: [id]}
let socket = null;
let room = { status: "scheduled" };
let synced = false; // the first snapshot arrived: later differences are changes worth logging
const cards = new Map(); // card id -> {card, node, update, tick}
const orders = new Map(); // order id -> {order, node, update, tick}
const videoState = { session: null, retry: null };

function readStored() {
  try {
    return JSON.parse(localStorage.getItem(storeKey));
  } catch {
    return null;
  }
}

function save() {
  localStorage.setItem(storeKey, JSON.stringify(me));
}

function notice(text) {
  setText($("#notice"), text || "");
  show($("#notice"), Boolean(text));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- joining ---------------------------------------------------------------------------------------------

async function join(name) {
  const invite = params.get("invite") || (me && me.invite);
  if (!invite) throw new ApiError(403, "invalid_invite", "Open the invite link you were sent to join this show.");
  const ref = params.get("ref") || (me && me.ref) || undefined;
  const body = { invite, name };
  if (ref) body.ref = ref;
  // A returning viewer sends their token: they keep their identity, orders and first referrer.
  const joined = await api(`/api/rooms/${encodeURIComponent(roomId)}/join`, {
    method: "POST",
    body,
    token: me && me.token,
  });
  me = { orders: [], ...(me || {}), ...joined, invite, ref };
  save();
  // The invite is kept in this browser; the address bar is not the link to pass on (the share link is).
  history.replaceState(null, "", `/r/${encodeURIComponent(roomId)}`);
}

onSubmit($("#join-form"), async ({ name }) => {
  setText($("#join-error"), "");
  await join(name);
  enterShow();
}, (error) => setText($("#join-error"), describe(error)));

function askName(message = "") {
  show($("#show"), false);
  show($("#join"));
  setText($("#join-error"), message);
  if (me && me.name) $("#join-form input[name=name]").value = me.name;
}

function enterShow() {
  show($("#join"), false);
  show($("#show"));
  $("#share-url").value = me.share_url;
  if (socket) socket.close();
  socket = new RoomSocket(roomId, me.token, {
    onFrame,
    onStatus: (status) => {
      // Personal frames sent while the socket was down are not replayed: ask for those orders instead.
      if (status === "live" && document.body.classList.contains("offline")) refreshOrders();
      document.body.classList.toggle("offline", status !== "live");
    },
    onFatal: (code) => {
      if (code === CLOSE.NO_ROOM) return notice("This show does not exist.");
      me = { ...me, token: null };
      save();
      askName("Please join again.");
    },
  });
  socket.connect();
  startVideo();
}

// -- frames ----------------------------------------------------------------------------------------------

const onFrame = routeFrames(
  {
    snapshot(frame) {
      renderRoom(frame.room);
      setText($("#viewer-count"), frame.viewers);
      const present = new Set(frame.cards.map((c) => c.id));
      for (const [id, entry] of cards) {
        if (!present.has(id)) {
          entry.node.remove();
          cards.delete(id);
        }
      }
      for (const card of frame.cards) upsertCard(card);
      synced = true;
    },
    card: upsertCard,
    stock(cardId, stockLeft) {
      const entry = cards.get(cardId);
      if (entry) upsertCard({ ...entry.card, stock_left: stockLeft });
    },
    viewers: (count) => setText($("#viewer-count"), count),
    room: renderRoom,
    chat: addChat,
    order: upsertOrder,
    error: (error) => setText($("#chat-error"), CHAT_ERRORS[error] || `The server refused that: ${error}`),
  },
  () => show($("#no-cards"), cards.size === 0),
);

function renderRoom(next) {
  const was = room.status;
  room = { ...room, ...next };
  setText($("#room-title"), room.title || "Live show");
  document.title = `${room.title || "Live show"} · LiveCart`;
  const badge = $("#room-status");
  setText(badge, room.status === "live" ? "LIVE" : room.status);
  badge.className = `badge ${room.status}`;
  if (room.status === "ended") {
    stopVideo("The show has ended. Thank you for watching!");
    for (const entry of cards.values()) entry.update(entry.card);
  } else if (room.status === "live" && was !== "live") {
    startVideo(); // the host just went live: try now rather than at the next retry
  }
}

// -- cards -----------------------------------------------------------------------------------------------

function logChange(text) {
  const log = $("#change-log");
  log.prepend(h("li", {}, h("span", { class: "time muted" }, clock()), " ", text));
  while (log.children.length > MAX_LOG) log.lastElementChild.remove();
}

function upsertCard(card) {
  const entry = cards.get(card.id);
  if (!entry) return createCard(card);
  const before = entry.card;
  if (synced) {
    const name = card.product ? card.product.name : before.product.name;
    if (card.price !== before.price) logChange(`${name}: price ${money(before.price)} → ${money(card.price)}`);
    if (card.stock_total > before.stock_total) logChange(`${name}: +${card.stock_total - before.stock_total} added to stock`);
    if (card.stock_left !== before.stock_left) logChange(`${name}: ${before.stock_left} → ${card.stock_left} left`);
    if (card.status !== before.status) logChange(`${name}: ${statusText(card.status)}`);
  }
  entry.update(card);
}

function statusText(status) {
  return { pinned: "coming up", open: "on sale now", closed: "sale closed", sold_out: "sold out" }[status] || status;
}

function createCard(card) {
  const image = h("img", { class: "thumb", alt: "", loading: "lazy" });
  const title = h("h3", { class: "title" });
  const desc = h("p", { class: "desc muted" });
  const now = h("strong", { class: "price-now" });
  const was = h("s", { class: "price-was muted" });
  const bar = h("progress", { class: "stock-bar", max: 1, value: 0 });
  const left = h("span", { class: "stock-left" });
  const total = h("span", { class: "muted" });
  const countdown = h("p", { class: "countdown" });
  const button = h("button", { type: "button", class: "buy" });
  const message = h("p", { class: "card-message", role: "alert" });
  const entry = { card, firstPrice: card.price };
  entry.node = h("article", { class: "card", dataset: { cardId: card.id } },
    image,
    h("div", { class: "body" },
      title, desc,
      h("p", { class: "price" }, now, " ", was),
      h("div", { class: "stock" }, bar, h("span", {}, left, total)),
      countdown, button, message));
  entry.tick = () => {
    const c = entry.card;
    const closing = c.status === "open" && c.closes_at ? remaining(c.closes_at) : null;
    setText(countdown, closing ? `Ends in ${closing}` : "");
    const expired = c.closes_at && Date.parse(c.closes_at) <= Date.now();
    const open = c.status === "open" && c.stock_left > 0 && !expired && room.status !== "ended";
    button.disabled = !open || entry.buying;
    setText(button, entry.buying ? "Reserving…" : open ? `Buy now · ${money(c.price)}`
      : c.status === "pinned" ? "Coming soon" : c.status === "sold_out" || c.stock_left === 0 ? "Sold out" : "Sale closed");
  };
  entry.update = (next) => {
    entry.card = { ...entry.card, ...next };
    const c = entry.card;
    if (c.product.image_url) image.src = c.product.image_url;
    show(image, Boolean(c.product.image_url));
    setText(title, c.product.name);
    setText(desc, c.product.description || "");
    setText(now, money(c.price));
    setText(was, c.price < entry.firstPrice ? money(entry.firstPrice) : "");
    bar.max = Math.max(1, c.stock_total);
    bar.value = c.stock_left;
    setText(left, c.stock_left);
    setText(total, ` of ${c.stock_total} left`);
    entry.node.className = `card ${c.status}`;
    entry.tick();
  };
  button.addEventListener("click", () => buy(entry, message));
  entry.update(card);
  cards.set(card.id, entry);
  $("#cards").append(entry.node);
}

setInterval(() => {
  for (const entry of cards.values()) entry.tick();
  for (const entry of orders.values()) entry.tick();
}, 1000);

// -- buying ----------------------------------------------------------------------------------------------

const BUY_ERRORS = {
  sold_out: "Sold out, sorry!",
  sale_not_open: "This sale is not open.",
  limit_exceeded: "You already have as many as one person may buy.",
};

/** One tap, one key: a retry after a network error or a 5xx reuses it, so it never makes two orders. */
async function reserve(card) {
  const key = randomKey();
  let failure;
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      return await api(`/api/cards/${encodeURIComponent(card.id)}/orders`, {
        method: "POST",
        token: me.token,
        headers: { "Idempotency-Key": key },
        body: { quantity: 1 },
      });
    } catch (error) {
      if (error.status && error.status < 500) throw error; // a decision (sold out, limit…): final
      failure = error;
      await sleep(400 * 2 ** attempt);
    }
  }
  throw failure;
}

async function buy(entry, message) {
  setText(message, "");
  entry.buying = true;
  entry.tick();
  try {
    const order = await reserve(entry.card);
    upsertOrder(order);
    await pay(order);
  } catch (error) {
    setText(message, (error instanceof ApiError && BUY_ERRORS[error.code]) || describe(error));
  } finally {
    entry.buying = false;
    entry.tick();
  }
}

let checkout = null; // {order, payment_id}

async function pay(order) {
  const { payment_id: paymentId, checkout_url: checkoutUrl } = await api(
    `/api/orders/${encodeURIComponent(order.id)}/pay`, { method: "POST", token: me.token });
  const url = new URL(checkoutUrl, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/api/payments/dev/")) {
    location.assign(url.href); // a real provider's checkout page; it brings the buyer back
    return;
  }
  checkout = { order, paymentId };
  setText($("#checkout-amount"), money(order.amount, order.currency));
  const entry = cards.get(order.card_id);
  setText($("#checkout-product"), entry ? entry.card.product.name : "your order");
  setText($("#checkout-error"), "");
  $("#checkout").showModal();
}

async function completeCheckout(outcome) {
  if (!checkout) return;
  try {
    const result = await api(`/api/payments/dev/${encodeURIComponent(checkout.paymentId)}/complete`, {
      method: "POST",
      body: { outcome },
    });
    // The order's new status arrives as a personal `order` frame; ask once more if that frame is lost.
    const orderId = checkout.order.id;
    setTimeout(() => orders.get(orderId)?.order.status === "reserved" && refreshOrders(), 5000);
    if (result && result.order && result.order.status !== "paid") upsertOrder(result.order);
    checkout = null;
    $("#checkout").close();
  } catch (error) {
    setText($("#checkout-error"), describe(error));
  }
}
$("#checkout-pay").addEventListener("click", () => completeCheckout("paid"));
$("#checkout-fail").addEventListener("click", () => completeCheckout("failed"));

// -- my orders -------------------------------------------------------------------------------------------

function rememberOrder(id) {
  if (!me.orders.includes(id)) {
    me.orders = [...me.orders, id].slice(-50);
    save();
  }
}

async function refreshOrders() {
  const pending = (me.orders || []).filter((id) => !orders.has(id) || !FINAL_ORDER.has(orders.get(id).order.status));
  for (const id of pending) {
    try {
      upsertOrder(await api(`/api/orders/${encodeURIComponent(id)}`, { token: me.token }));
    } catch {
      // gone or not ours any more: leave it out
    }
  }
}

function orderText(o) {
  if (o.status === "paid") return o.tracking_number ? `paid · shipped (${o.tracking_number})` : "paid ✓";
  if (o.status === "reserved") return "reserved";
  return o.status;
}

function upsertOrder(order) {
  rememberOrder(order.id);
  show($("#orders-panel"));
  let entry = orders.get(order.id);
  if (!entry) {
    const what = h("span", { class: "title" });
    const status = h("span", { class: "status" });
    const due = h("span", { class: "muted due" });
    const payButton = h("button", { type: "button", class: "small" }, "Pay");
    const cancel = h("button", { type: "button", class: "secondary small" }, "Cancel");
    entry = { order };
    entry.node = h("li", { dataset: { orderId: order.id } }, what, status, due, payButton, cancel);
    payButton.addEventListener("click", () => pay(entry.order).catch((e) => notice(describe(e))));
    cancel.addEventListener("click", () =>
      api(`/api/orders/${encodeURIComponent(entry.order.id)}/cancel`, { method: "POST", token: me.token })
        .then(upsertOrder)
        .catch((e) => notice(describe(e))));
    entry.tick = () => {
      const o = entry.order;
      const reserved = o.status === "reserved" && Date.parse(o.expires_at) > Date.now();
      setText(due, reserved ? `pay within ${remaining(o.expires_at)}` : "");
      show(payButton, reserved);
      show(cancel, reserved);
    };
    entry.update = (next) => {
      entry.order = next;
      const card = cards.get(next.card_id);
      setText(what, `${card ? card.card.product.name : "Order"} × ${next.quantity} · ${money(next.amount, next.currency)}`);
      setText(status, orderText(next));
      status.className = `status ${next.status}`;
      entry.tick();
    };
    orders.set(order.id, entry);
    $("#my-orders").prepend(entry.node);
  } else if (order.status === "reserved" && entry.order.status !== "reserved") {
    return; // a late copy: an order never goes back to reserved (the frame of a buy can follow its 201)
  }
  entry.update(order);
}

// -- chat ------------------------------------------------------------------------------------------------

function addChat(from, text) {
  const log = $("#chat-log");
  log.append(h("li", {}, h("b", { class: "from" }, from), " ", h("span", { class: "text" }, text)));
  while (log.children.length > MAX_CHAT) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

onSubmit($("#chat-form"), async ({ text }, form) => {
  setText($("#chat-error"), "");
  if (!socket || !socket.send({ type: "chat", text })) throw new Error("Reconnecting… try again in a moment.");
  form.reset();
}, (error) => setText($("#chat-error"), describe(error)));

// -- share -----------------------------------------------------------------------------------------------

$("#share").addEventListener("click", async () => {
  const url = me.share_url;
  if (navigator.share) {
    try {
      await navigator.share({ title: room.title || document.title, url });
      return;
    } catch (error) {
      if (error.name === "AbortError") return;
    }
  }
  const copied = await copyText(url, $("#share-url"));
  setText($("#share-status"), copied ? "Link copied: paste it to your friends." : "Copy the link above.");
});

// -- video (WHEP) ----------------------------------------------------------------------------------------

const video = $("#video");
video.addEventListener("playing", () => {
  show($("#video-status"), false);
  show($("#unmute"), video.muted);
});
$("#unmute").addEventListener("click", () => {
  video.muted = false;
  video.play().catch(() => {});
  show($("#unmute"), false);
});

function videoMessage(text) {
  setText($("#video-status"), text);
  show($("#video-status"), true);
}

function retryVideo(ms) {
  clearTimeout(videoState.retry);
  videoState.retry = setTimeout(startVideo, ms);
}

async function startVideo() {
  clearTimeout(videoState.retry);
  if (videoState.session || videoState.connecting || room.status === "ended" || !me || !me.token) return;
  videoState.connecting = true;
  try {
    const session = await play(roomId, me.token, video);
    videoState.session = session;
    const lost = () => {
      if (videoState.session !== session) return;
      videoState.session = null;
      session.pc.close();
      videoMessage("Reconnecting the video…");
      retryVideo(1000);
    };
    session.pc.addEventListener("connectionstatechange", () => {
      const s = session.pc.connectionState;
      if (s === "failed" || s === "closed") lost();
      if (s === "disconnected") setTimeout(() => session.pc.connectionState === "disconnected" && lost(), 4000);
    });
  } catch (error) {
    const waiting = error instanceof ApiError && (error.code === "not_live" || error.status === 409);
    videoMessage(waiting ? "Waiting for the host to go on camera…" : `Video unavailable (${describe(error)}); retrying…`);
    retryVideo(waiting ? 3000 : 8000);
  } finally {
    videoState.connecting = false;
  }
}

function stopVideo(text) {
  clearTimeout(videoState.retry);
  const session = videoState.session;
  videoState.session = null;
  if (session) session.stop();
  video.srcObject = null;
  videoMessage(text);
}

window.addEventListener("pagehide", () => {
  if (videoState.session) videoState.session.stop();
});

// -- start -----------------------------------------------------------------------------------------------

if (!roomId) {
  notice("This link does not name a show.");
} else if (me && me.token) {
  join(me.name)
    .then(enterShow)
    .catch((error) => askName(describe(error)));
} else {
  askName();
}
