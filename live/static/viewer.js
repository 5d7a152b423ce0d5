// The viewer page (/r/{room}?invite=…&ref=…). First it says what the show is (the room's preview, which
// needs the link's invite or share code); then, in a verified room, the buyer signs in with their phone
// and a one-time code (or WeChat, inside WeChat) and joins: the sign-in cookie remembers them on this
// device, so a returning buyer goes straight in. A guest room asks only for a display name (v1). Then:
// watch (WHEP); cards with live stock, countdowns and a log of price and stock changes; one-tap buy →
// checkout (checkout.js: address, provider, QR code or the provider's page) → the order's status from the
// personal `order` frames, with 确认收货 and 申请售后 (mine.js); 我的订单 across the shop's shows; chat (the
// host's lines badged); the viewer's own share link. The video is viewer-video.js's (WHEP, or HLS past the
// cap or by choice); once the show has ended its replay takes over (replay.js), also for a viewer of the
// show who comes back later, and 从头看 plays it during the show. Every refusal has its own state, in the
// page's language. All user text is rendered with textContent (dom.js).

import { api, ApiError, describe, money, randomKey } from "./api.js";
import { $, clock, copyText, h, onSubmit, remaining, setText, show } from "./dom.js";
import { openCheckout, orderChanged } from "./checkout.js";
import { chatLine } from "./chat.js";
import { CLOSE } from "./close-codes.js";
import { RoomSocket, routeFrames } from "./hub.js";
import { languageSwitch, pageConfig, t, waitText } from "./i18n.js";
import { codeRequest } from "./code-sign-in.js";
import { buyerOrder, fetchMe, when } from "./mine.js";
import { ReplayView } from "./replay.js";
import { LiveVideo } from "./viewer-video.js";
import { setUpSharing, updateSharing } from "./wechat.js";

const roomId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const params = new URLSearchParams(location.search);
const storeKey = `livecart.viewer.${roomId}`;
const config = pageConfig();
const MAX_LOG = 100;
const MAX_CHAT = 200;
const FINAL_ORDER = new Set(["expired", "cancelled", "refunded"]);

let me = readStored(); // {viewer_id, name, token, share_url, invite, ref, orders: [id]}
let preview = null; // {title, host_name, status, sign_in, cover_url}
let socket = null;
let room = { status: "scheduled" };
let synced = false; // the first snapshot arrived: later differences are changes worth logging
const cards = new Map(); // card id -> {card, node, update, tick}
const orders = new Map(); // order id -> this show's order on screen (mine.js buyerOrder, plus tick)
const mineShown = new Map(); // order id -> its line in 我的订单 (mine.js buyerOrder)

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
const roomPath = (suffix = "") => `/api/rooms/${encodeURIComponent(roomId)}${suffix}`;

// -- states: what the page says instead of the show ------------------------------------------------------

/** A whole-page state (a refusal, the show's end…): a title, a sentence and maybe one thing to do. */
function showState(name, { text, action, onAction, intro = false } = {}) {
  show($("#intro"), intro);
  if (intro) {
    show($("#signin"), false);
    show($("#join"), false);
  }
  show($("#show"), false);
  show($("#state"));
  $("#state").dataset.state = name;
  setText($("#state-title"), t(`state.${name}.title`));
  setText($("#state-text"), text || t(`state.${name}.text`));
  const button = $("#state-action");
  show(button, Boolean(action));
  if (action) {
    setText(button, t(action));
    button.onclick = onAction;
  }
}

/** The state of a refused preview or join. */
function refused(error) {
  if (!(error instanceof ApiError)) return showState("error", { text: describe(error) });
  if (error.code === "invalid_invite") return showState("invalid_invite");
  if (error.code === "unknown_room" || error.status === 404) return showState("no_room");
  if (error.code === "rate_limited") return showState("rate_limited", { text: describe(error), action: "state.retry", onAction: start });
  return showState("error", { text: describe(error), action: "state.retry", onAction: start });
}

// -- what the show is -------------------------------------------------------------------------------------

function renderIntro() {
  show($("#state"), false);
  show($("#intro"));
  setText($("#intro-title"), preview.title);
  setText($("#intro-host"), preview.host_name);
  const status = $("#intro-status");
  setText(status, t(`room.status.${preview.status}`));
  status.className = `badge ${preview.status}`;
  const cover = $("#intro-cover");
  if (preview.cover_url) cover.src = preview.cover_url;
  show(cover, Boolean(preview.cover_url));
  renderRoom({ title: preview.title, status: preview.status });
}

// -- signing in (verified rooms) ----------------------------------------------------------------------------

function askSignIn(message = "") {
  show($("#join"), false);
  show($("#signin"));
  setText($("#signin-error"), message);
  const inWeChat = /MicroMessenger/i.test(navigator.userAgent);
  if (config.wechat_sign_in && inWeChat) {
    const next = `/r/${encodeURIComponent(roomId)}?${new URLSearchParams({ invite: currentInvite() })}`;
    $("#wechat-sign-in").href = `/auth/wechat/start?${new URLSearchParams({ room: roomId, next })}`;
    show($("#wechat-box"));
  }
}

codeRequest({
  path: () => roomPath("/sign-in/code"),
  keys: {
    send_code: "signin.send_code",
    resend_in: "signin.resend_in",
    send_again: "signin.send_again",
    dev_code: "signin.dev_code",
  },
});

onSubmit($("#signin-form"), async ({ code, name }) => {
  setText($("#signin-error"), "");
  const phone = $("#code-form input[name=phone]").value;
  const signedIn = await api(roomPath("/sign-in"), { method: "POST", body: { phone, code } });
  // The answer also set the sign-in cookie: this device stays signed in at this shop.
  await join({ name: name.trim() || undefined, token: signedIn.token });
  enterShow();
}, (error) => noReplay(error) || setText($("#signin-error"), describe(error)));

// -- joining ---------------------------------------------------------------------------------------------

function currentInvite() {
  return params.get("invite") || (me && me.invite) || "";
}

/** Join (or re-join: the same viewer comes back). `token`: a customer token just issued; otherwise the
 * stored viewer token goes (a returning guest keeps their identity) and the cookie says who the buyer is. */
async function join({ name, token } = {}) {
  const invite = currentInvite();
  const ref = params.get("ref") || (me && me.ref) || undefined;
  const body = { invite };
  if (name) body.name = name;
  if (ref) body.ref = ref;
  const joined = await api(roomPath("/join"), { method: "POST", body, token: token || (me && me.token) });
  me = { orders: [], ...(me || {}), ...joined, invite, ref };
  // The shop's id (for 我的订单) comes with a page whose link admits; kept for this room's later visits.
  if (config.host_id) me.host_id = config.host_id;
  save();
  // The invite is kept in this browser; the address bar is not the link to pass on (the share link is).
  history.replaceState(null, "", `/r/${encodeURIComponent(roomId)}`);
  updateSharing({ link: me.share_url });
}

onSubmit($("#join-form"), async ({ name }) => {
  setText($("#join-error"), "");
  await join({ name });
  enterShow();
}, (error) => noReplay(error) || setText($("#join-error"), describe(error)));

function askName(message = "") {
  show($("#signin"), false);
  show($("#join"));
  setText($("#join-error"), message);
  if (me && me.name) $("#join-form input[name=name]").value = me.name;
}

/** Join with what this device has (the cookie, a stored viewer token); ask for what is missing. */
async function enter() {
  const verified = preview.sign_in === "verified";
  if (!verified && !(me && me.token)) return askName();
  try {
    await join({ name: verified ? undefined : me.name });
    enterShow();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.code === "sign_in_required") return askSignIn();
    if (error.status === 401 && verified) return askSignIn(describe(error));
    // An ended show admits viewers only while its replay is published: without one, that is what to say.
    if (noReplay(error)) return;
    if (error.code === "invalid_invite") return refused(error);
    if (verified) return refused(error);
    askName(describe(error));
  }
}

// -- in the show ------------------------------------------------------------------------------------------

let rejoined = false; // once per page: a token the hub refuses again right after a re-join is not retried

function enterShow() {
  show($("#state"), false);
  show($("#intro"), false);
  show($("#show"));
  show($("#viewers"));
  notice("");
  $("#share-url").value = me.share_url;
  show($("#mine-button"), Boolean(shopId() && me.customer_id));
  connect();
  // An ended show (a viewer back for its replay, or someone who missed it): the replay instead of the video.
  if (room.status === "ended") watchReplay({ ended: true });
  else startVideo();
}

/** An ended show refused the join (invalid_invite): it has no published replay to watch. True if so. */
function noReplay(error) {
  if (!(preview && preview.status === "ended" && error instanceof ApiError && error.code === "invalid_invite")) return false;
  showState("no_replay", { intro: true });
  return true;
}

function connect() {
  if (socket) socket.close();
  socket = new RoomSocket(roomId, me.token, {
    onFrame,
    onStatus: (status, code) => {
      // Personal frames sent while the socket was down are not replayed: ask for those orders instead.
      if (status === "live" && document.body.classList.contains("offline")) refreshOrders();
      document.body.classList.toggle("offline", status !== "live");
      if (status === "live") notice("");
      else if (status === "reconnecting") notice(reconnectText(code));
    },
    onFatal,
  });
  socket.connect();
}

function reconnectText(code) {
  if (code === CLOSE.TOO_SLOW) return t("socket.too_slow");
  if (code === CLOSE.RATE_LIMITED) return t("socket.rate_limited");
  return t("socket.reconnecting");
}

async function onFatal(code) {
  if (code === CLOSE.NO_ROOM) return showState("no_room");
  if (code === CLOSE.TOO_MANY_SOCKETS) {
    stopVideo("");
    return showState("elsewhere", { action: "state.elsewhere.action", onAction: enterShow });
  }
  // 4401/4403: the token no longer admits this viewer; join again with what the device has, once.
  if (!rejoined) return reauthenticate();
  showState(code === CLOSE.FORBIDDEN ? "forbidden" : "unauthorized");
}

/** The viewer token was refused (socket or API): join again with what this device has (the sign-in
 * cookie) and carry on, or ask the buyer to sign in again. Once per page, so it cannot loop. */
async function reauthenticate() {
  rejoined = true;
  if (socket) socket.close();
  stopVideo("");
  try {
    await join({ name: preview.sign_in === "verified" ? undefined : me && me.name });
    return enterShow();
  } catch (error) {
    if (noReplay(error)) return; // the show ended and its replay was hidden meanwhile
    if (error instanceof ApiError && error.status === 401 && preview.sign_in === "verified") {
      renderIntro();
      return askSignIn(t("signin.again"));
    }
    if (error instanceof ApiError && error.status === 401) {
      renderIntro();
      return askName(describe(error));
    }
    return refused(error);
  }
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
    error: (error, frame) => setText($("#chat-error"), describe(new ApiError(429, error, error, frame))),
  },
  () => show($("#no-cards"), cards.size === 0),
);

function renderRoom(next) {
  const was = room.status;
  room = { ...room, ...next };
  setText($("#room-title"), room.title || t("viewer.default_title"));
  document.title = `${room.title || t("viewer.default_title")} · LiveCart`;
  const badge = $("#room-status");
  setText(badge, t(`room.status.${room.status}`));
  badge.className = `badge ${room.status}`;
  show(badge);
  renderFromStart();
  if (room.status === "ended") {
    stopVideo(t("video.ended"));
    for (const entry of cards.values()) entry.update(entry.card);
    // The show just ended in front of the viewer: its replay takes over (when it has one).
    if (was !== "ended" && me && me.token && !$("#show").hidden) watchReplay({ ended: true });
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
    if (card.price !== before.price) {
      logChange(t("changes.price", { name, from: money(before.price), to: money(card.price) }));
    }
    if (card.stock_total > before.stock_total) {
      logChange(t("changes.restock", { name, n: card.stock_total - before.stock_total }));
    }
    if (card.stock_left !== before.stock_left) {
      logChange(t("changes.stock", { name, from: before.stock_left, to: card.stock_left }));
    }
    if (card.status !== before.status) logChange(t("changes.status", { name, status: t(`card.status.${card.status}`) }));
  }
  entry.update(card);
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
    setText(countdown, closing ? t("card.ends_in", { time: closing }) : "");
    const expired = c.closes_at && Date.parse(c.closes_at) <= Date.now();
    const open = c.status === "open" && c.stock_left > 0 && !expired && room.status !== "ended";
    button.disabled = !open || entry.buying;
    setText(button, entry.buying ? t("card.reserving") : open ? t("card.buy", { price: money(c.price) })
      : c.status === "pinned" ? t("card.coming_soon")
      : c.status === "sold_out" || c.stock_left === 0 ? t("card.sold_out") : t("card.closed"));
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
    setText(total, t("card.of_total", { total: c.stock_total }));
    entry.node.className = `card ${c.status}`;
    entry.tick();
  };
  button.addEventListener("click", () => buy(entry.card, {
    message,
    busy: (flag) => {
      entry.buying = flag;
      entry.tick();
    },
  }));
  entry.update(card);
  cards.set(card.id, entry);
  $("#cards").append(entry.node);
}

setInterval(() => {
  for (const entry of cards.values()) entry.tick();
  for (const entry of orders.values()) entry.tick();
}, 1000);

// -- buying ----------------------------------------------------------------------------------------------

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

/** Buy one of `card` (a live card, or a replay's whose sale is open): reserve, then the checkout sheet.
 * `message`: where a refusal is said; `busy(flag)`: the card's button shows the reservation under way. */
async function buy(card, { message, busy }) {
  setText(message, "");
  busy(true);
  try {
    const order = await reserve(card);
    upsertOrder(order);
    await pay(order);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && !rejoined && !watchingReplay) return reauthenticate();
    setText(message, describe(error));
  } finally {
    busy(false);
  }
}

/** The product name of a card of this show: from the live cards, else the replay's. */
function productName(cardId) {
  const entry = cards.get(cardId);
  if (entry) return entry.card.product.name;
  const card = replay.card(cardId);
  return card ? card.product.name : null;
}

/** The checkout sheet for a reserved order (checkout.js): address, provider, then the provider's way. */
async function pay(order) {
  await openCheckout(order, {
    token: me.token,
    productName: productName(order.card_id) || "",
    onOrder: upsertOrder,
  });
}

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

function orderLine(o) {
  return t("order.line", {
    product: productName(o.card_id) || t("order.unknown_product"),
    quantity: o.quantity,
    amount: money(o.amount, o.currency),
  });
}

function upsertOrder(order) {
  rememberOrder(order.id);
  show($("#orders-panel"));
  let entry = orders.get(order.id);
  if (!entry) {
    // A reserved order's own controls: its time to pay, 支付 (the checkout sheet again) and 取消.
    const due = h("span", { class: "muted due" });
    const payButton = h("button", { type: "button", class: "small pay" }, t("order.pay"));
    const cancel = h("button", { type: "button", class: "secondary small cancel" }, t("order.cancel"));
    entry = buyerOrder(order, { auth: { token: me.token }, title: orderLine, extra: [due, payButton, cancel] });
    payButton.addEventListener("click", () => pay(entry.order).catch((e) => notice(describe(e))));
    cancel.addEventListener("click", () =>
      api(`/api/orders/${encodeURIComponent(entry.order.id)}/cancel`, { method: "POST", token: me.token })
        .then(upsertOrder)
        .catch((e) => notice(describe(e))));
    entry.tick = () => {
      const o = entry.order;
      const reserved = o.status === "reserved" && Date.parse(o.expires_at) > Date.now();
      setText(due, reserved ? t("order.pay_within", { time: remaining(o.expires_at) }) : "");
      show(due, reserved);
      show(payButton, reserved);
      show(cancel, reserved);
    };
    orders.set(order.id, entry);
    $("#my-orders").prepend(entry.node);
  } else if (order.status === "reserved" && entry.order.status !== "reserved") {
    return; // a late copy: an order never goes back to reserved (the frame of a buy can follow its 201)
  }
  entry.update(order);
  entry.tick();
  orderChanged(order);
  const line = mineShown.get(order.id);
  if (line) line.update({ ...line.order, ...order });
}

// -- 我的订单: the buyer's orders across every show of this shop -------------------------------------------

/** The room's shop: the page's config (a link that admits, or the shop's cookie), else what was kept. */
function shopId() {
  return config.host_id || (me && me.host_id) || null;
}

async function showMine() {
  const panel = $("#mine-panel");
  show(panel);
  setText($("#mine-error"), "");
  try {
    const shop = shopId();
    const mine = await fetchMe(shop);
    mineShown.clear();
    const lines = mine.orders.map((order) => {
      const line = buyerOrder(order, { auth: { shop }, title: mineLine });
      mineShown.set(order.id, line);
      return line.node;
    });
    $("#mine-orders").replaceChildren(...lines);
    // This show's own lines ask afresh too (a request decided since this page drew them).
    for (const order of mine.orders) orders.get(order.id)?.reload();
    show($("#mine-none"), mine.orders.length === 0);
  } catch (error) {
    $("#mine-orders").replaceChildren();
    show($("#mine-none"), false);
    const signedOut = error instanceof ApiError && error.status === 401;
    setText($("#mine-error"), signedOut ? t("mine.sign_in") : describe(error));
  }
  panel.scrollIntoView({ block: "nearest" });
}

/** A line of 我的订单: the show it was bought in, product × quantity · amount, when. */
function mineLine(o) {
  const at = o.paid_at ? t("mine.paid_at", { time: when(o.paid_at) }) : t("mine.ordered_at", { time: when(o.created_at) });
  return `${t("mine.line", { product: o.product_name, quantity: o.quantity, amount: money(o.amount, o.currency) })} · ${o.room_title} · ${at}`;
}

$("#mine-button").addEventListener("click", () => showMine());
$("#mine-refresh").addEventListener("click", () => showMine());
$("#mine-close").addEventListener("click", () => show($("#mine-panel"), false));

// -- chat ------------------------------------------------------------------------------------------------

function addChat(from, text, role) {
  const log = $("#chat-log");
  log.append(chatLine(from, text, role));
  while (log.children.length > MAX_CHAT) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

onSubmit($("#chat-form"), async ({ text }, form) => {
  setText($("#chat-error"), "");
  if (!socket || !socket.send({ type: "chat", text })) throw new Error(t("chat.not_connected"));
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
  setText($("#share-status"), copied ? t("share.copied") : t("share.copy_it"));
});

// -- video: live (viewer-video.js) and the replay (replay.js) -------------------------------------------------

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
  show($("#video-status"), Boolean(text));
}

const live = new LiveVideo({
  roomId,
  token: () => me.token,
  canStart: () => room.status !== "ended" && Boolean(me && me.token) && !$("#show").hidden && !watchingReplay,
  message: videoMessage,
  onHls: () => renderFromStart(),
});
const replay = new ReplayView({ roomId, token: () => me.token, buy });
let watchingReplay = false; // the replay plays instead of the live video (从头看, or the show has ended)
let replayTries = 0;

function startVideo() {
  live.start();
}

/** 从头看 where there is a recording to watch: the show is live and has HLS this browser plays. */
function renderFromStart() {
  show($("#watch-from-start"), room.status === "live" && live.hlsOk);
}

function stopVideo(text) {
  live.stop(text);
}

/** Play the replay in place of the live video: the show ended (`ended`: the live sections go too), or 从头看
 * during it. A show without one (404 no_replay) says so; one the encoder is still finishing is asked for
 * again. */
async function watchReplay({ ended }) {
  watchingReplay = true;
  stopVideo("");
  replayMode(ended ? "replaying" : "catching-up");
  show($("#replay-back"), !ended);
  try {
    await replay.open();
    replayTries = 0;
  } catch (error) {
    replay.close();
    watchingReplay = false;
    replayMode(null);
    if (ended && error instanceof ApiError && error.code === "no_replay" && replayTries++ < 3) {
      videoMessage(t("video.ended"));
      return setTimeout(() => room.status === "ended" && watchReplay({ ended }), 3000);
    }
    videoMessage(error instanceof ApiError && error.status === 404 ? t("replay.none") : describe(error));
    if (!ended) startVideo();
  }
}

/** What the replay replaces: "replaying" (the ended show: every live section), "catching-up" (从头看: the
 * live video only), null (nothing: the live page). */
function replayMode(mode) {
  $("#show").classList.toggle("replaying", mode === "replaying");
  $("#show").classList.toggle("catching-up", mode === "catching-up");
}

function backToLive() {
  replay.close();
  watchingReplay = false;
  replayMode(null);
  startVideo();
}

$("#watch-from-start").addEventListener("click", () => watchReplay({ ended: false }));
$("#replay-back").addEventListener("click", backToLive);

window.addEventListener("pagehide", () => live.leave());

// -- start -----------------------------------------------------------------------------------------------

async function start() {
  if (!roomId) return showState("no_link");
  const invite = currentInvite();
  if (!invite) return showState("no_invite");
  try {
    preview = await api(roomPath(`/preview?${new URLSearchParams({ invite })}`));
  } catch (error) {
    return refused(error);
  }
  renderIntro();
  setUpSharing(roomId, preview, { link: (me && me.share_url) || location.href }).catch(() => {});
  if (preview.status === "ended") return ended();
  await enter();
}

/** The show has ended. Its replay admits whoever holds the link while the host keeps it published: a
 * viewer of the show (this device kept their token) goes straight to it, anyone else is offered it (they
 * sign in or give a name first, as for the show). `preview.replay` false: there is none to offer. */
function ended() {
  const offered = preview.replay !== false;
  if (!offered) return showState("no_replay", { intro: true });
  if (me && me.token) return enter();
  showState("ended", {
    intro: true,
    action: "state.ended.replay",
    onAction: () => {
      show($("#state"), false);
      enter().catch(refused);
    },
  });
}

languageSwitch($("#lang"));
start().catch(refused);
