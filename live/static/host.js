// The host console (/host): sign in (a code to the host's phone, or a pasted session token; sign-up shows
// the new token masked), the host's sessions (sign out one or all) and their OBS/WHIP stream key; products;
// shows (verified or guest: a guest room is labelled as one whose limits can be dodged), invites and
// a guest room's promoter links; the camera over WHIP; cards (pin, open, close, cut the price, add stock);
// the live dashboard over the room's websocket and /stats (the promoter leaderboard is the server's);
// chat (the host's own lines badged); orders (where each ships, ship with carrier and tracking number, mark
// delivered, refund, CSV); "End show" asks first. The shop-wide tabs (团长, 结算, 客户) are host-leaders.js's,
// 售后 (after-sale requests, refunds at the providers) host-after-sale.js's; a show's HLS state and replay,
// and the shop's replay settings, host-video.js's. An expired or signed-out session sends the host back to
// sign in.
// Every string is the catalogue's (i18n.js); all user text is rendered with textContent (dom.js).

import { api, ApiError, describe, money, percent, toMinor } from "./api.js";
import { drawLine } from "./chart.js";
import { chatLine } from "./chat.js";
import { CLOSE } from "./close-codes.js";
import { $, clock, copyText, fill, h, onSubmit, remaining, setText, show } from "./dom.js";
import { initAfterSale, resetAfterSale } from "./host-after-sale.js";
import { initTeam, resetTeam, saveCsv, showTab } from "./host-leaders.js";
import { closeRoomVideo, initHostVideo, openRoomVideo, roomStatus } from "./host-video.js";
import { RoomSocket, routeFrames } from "./hub.js";
import { languageSwitch, t } from "./i18n.js";
import { publish } from "./webrtc.js";

const TOKEN_KEY = "livecart.host.token";
const NAME_KEY = "livecart.host.name";
const ROOMS_PAGE = 50;
const STATS_EVERY_MS = 4000;
const STATS_MIN_GAP_MS = 1000;
const MAX_SAMPLES = 3000;
const MAX_CHAT = 200;

let token = localStorage.getItem(TOKEN_KEY);
let products = [];
let active = null; // the open room: see openRoom()
let roomsLoad = 0; // bumped by each (re)load of the room list: an older answer that arrives late is dropped

/** A host call with the session token; a 401 means the session is over (expired, signed out): sign in. */
async function call(path, options = {}) {
  try {
    return await api(path, { token, ...options });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && token) sessionEnded(describe(error));
    throw error;
  }
}
const errorTo = (node) => (error) => setText(node, describe(error));

function notice(text) {
  const box = $("#notice");
  setText(box, text);
  show(box, Boolean(text));
}

// -- signing in ------------------------------------------------------------------------------------------

async function signIn(candidate) {
  const tried = candidate.trim();
  try {
    products = await api("/api/products", { token: tried }); // proves the token
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && error.code !== "token_expired") {
      throw new ApiError(401, "not_a_host_token", error.detail);
    }
    throw error;
  }
  token = tried;
  localStorage.setItem(TOKEN_KEY, token);
  enterConsole();
}

/** Forget the session on this device (the console closes) and show the sign-in forms, saying why. */
function forget(reason = "") {
  closeRoom();
  resetTeam();
  resetAfterSale();
  roomsLoad++;
  fill($("#room-list"));
  fill($("#session-list"));
  show($("#rooms-more"), false);
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(NAME_KEY);
  token = null;
  location.hash = "";
  $("#token-value").value = "";
  $("#stream-key").value = "";
  show($("#stream-key-box"), false);
  show($("#token-box"), false);
  show($("#console"), false);
  show($("#sign-out"), false);
  setText($("#signed-in"), "");
  setText($("#signin-reason"), reason);
  show($("#signin-reason"), Boolean(reason));
  show($("#signin"));
}

/** The server refused the session (expired, signed out elsewhere): back to the sign-in forms. */
function sessionEnded(reason) {
  if (token) forget(reason || t("error.token_expired"));
}

/** Sign out: this session ends on the server too (its token stops working), then the device forgets it. */
async function signOut() {
  const ending = token;
  forget();
  try {
    const sessions = await api("/api/sessions", { token: ending });
    const current = sessions.find((s) => s.current);
    if (current) await api(`/api/sessions/${encodeURIComponent(current.id)}`, { method: "DELETE", token: ending });
  } catch {
    // already expired or revoked: nothing left to end
  }
}

function enterConsole() {
  show($("#signin"), false);
  show($("#signin-reason"), false);
  show($("#console"));
  show($("#sign-out"));
  const name = localStorage.getItem(NAME_KEY);
  setText($("#signed-in"), name ? t("host.signed_in_as", { name }) : t("host.signed_in"));
  showTab("shows");
  renderProducts();
  renderRooms().catch(errorTo($("#room-error")));
  loadSessions().catch(errorTo($("#sessions-error")));
  route();
}

onSubmit($("#signin-form"), async ({ token: value }) => {
  setText($("#signin-error"), "");
  await signIn(value);
}, errorTo($("#signin-error")));

onSubmit($("#host-code-form"), async ({ phone }) => {
  setText($("#signin-error"), "");
  show($("#host-dev-code"), false);
  const sent = await api("/api/host-sign-in/code", { method: "POST", body: { phone } });
  show($("#host-signin-form"));
  if (sent && sent.dev_code) {
    setText($("#host-dev-code"), t("signin.dev_code", { code: sent.dev_code }));
    show($("#host-dev-code"));
  }
  $("#host-signin-form input[name=code]").focus();
}, errorTo($("#signin-error")));

onSubmit($("#host-signin-form"), async ({ code }, form) => {
  setText($("#signin-error"), "");
  const phone = $("#host-code-form input[name=phone]").value;
  const host = await api("/api/host-sign-in", { method: "POST", body: { phone, code } });
  localStorage.setItem(NAME_KEY, host.name);
  form.reset();
  show(form, false);
  show($("#host-dev-code"), false);
  await signIn(host.token);
}, errorTo($("#signin-error")));

onSubmit($("#signup-form"), async ({ name, phone }) => {
  setText($("#signin-error"), "");
  const body = { name };
  if (phone && phone.trim()) body.phone = phone.trim();
  const host = await api("/api/hosts", { method: "POST", body });
  localStorage.setItem(NAME_KEY, host.name);
  await signIn(host.token);
  // Shown once, masked: it is a password (the console's, until it expires), to keep or paste elsewhere.
  $("#token-value").value = host.token;
  maskToken(true);
  show($("#token-box"));
}, errorTo($("#signin-error")));

function maskToken(masked) {
  $("#token-value").type = masked ? "password" : "text";
  setText($("#token-show"), t(masked ? "host.token.show" : "host.token.hide"));
}

$("#sign-out").addEventListener("click", signOut);
$("#token-show").addEventListener("click", () => maskToken($("#token-value").type !== "password"));
$("#token-copy").addEventListener("click", async () => {
  const copied = await copyText($("#token-value").value, null);
  setText($("#token-status"), copied ? t("host.token.copied") : t("share.copy_it"));
});

// -- sessions and the stream key -------------------------------------------------------------------------

/** "Chrome · Android" from a User-Agent (the session's label), or the label itself when it says neither. */
function device(label) {
  const browser = [["MicroMessenger", "WeChat"], ["Edg/", "Edge"], ["Firefox/", "Firefox"], ["Chrome/", "Chrome"],
    ["Safari/", "Safari"], ["curl/", "curl"], ["python", "Python"]].find(([mark]) => label.includes(mark));
  const system = [["Android", "Android"], ["iPhone", "iPhone"], ["iPad", "iPad"], ["Windows", "Windows"],
    ["Mac OS X", "macOS"], ["Linux", "Linux"]].find(([mark]) => label.includes(mark));
  const parts = [browser && browser[1], system && system[1]].filter(Boolean);
  return parts.length ? parts.join(" · ") : label;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(document.documentElement.lang) : "";
}

async function loadSessions() {
  const sessions = await call("/api/sessions");
  fill($("#session-list"), sessions.filter((s) => s.active).map((s) =>
    h("li", { dataset: { sessionId: s.id }, class: s.current ? "current" : null },
      h("span", { class: "title", title: s.label }, device(s.label)),
      s.current ? h("span", { class: "badge live" }, t("host.sessions.this_device")) : null,
      h("span", { class: "muted desc" }, t("host.sessions.times", {
        used: when(s.last_used_at), expires: when(s.expires_at),
      })),
      h("button", { type: "button", class: "secondary small", onclick: () => revokeSession(s) }, t("host.sessions.revoke")))));
}

async function revokeSession(session) {
  setText($("#sessions-error"), "");
  try {
    await call(`/api/sessions/${encodeURIComponent(session.id)}`, { method: "DELETE" });
    if (session.current) return sessionEnded(t("host.sessions.signed_out"));
    await loadSessions();
  } catch (error) {
    setText($("#sessions-error"), describe(error));
  }
}

$("#sessions-refresh").addEventListener("click", () => loadSessions().catch(errorTo($("#sessions-error"))));
$("#sessions-revoke-all").addEventListener("click", async () => {
  setText($("#sessions-error"), "");
  try {
    await call("/api/sessions", { method: "DELETE" });
    sessionEnded(t("host.sessions.signed_out_all"));
  } catch (error) {
    setText($("#sessions-error"), describe(error));
  }
});

function whipUrl(roomId) {
  return `${location.origin}/api/rooms/${encodeURIComponent(roomId)}/whip`;
}

function renderObsServer() {
  setText($("#obs-server"), active ? whipUrl(active.id) : whipUrl(t("host.obs.room_id")));
}

$("#stream-key-rotate").addEventListener("click", async () => {
  setText($("#stream-key-error"), "");
  try {
    const { stream_key: key } = await call("/api/stream-key", { method: "POST" });
    $("#stream-key").value = key;
    show($("#stream-key-box"));
  } catch (error) {
    setText($("#stream-key-error"), describe(error));
  }
});

// -- products --------------------------------------------------------------------------------------------

function renderProducts() {
  fill(
    $("#product-list"),
    products.map((p) =>
      h("li", { dataset: { productId: p.id } },
        h("span", { class: "title" }, p.name),
        h("span", { class: "muted" }, money(p.price)),
        p.shippable === false ? h("span", { class: "badge" }, t("host.products.no_shipping")) : null,
        p.description ? h("span", { class: "muted desc" }, p.description) : null),
    ),
  );
  const select = $("#card-form select[name=product_id]");
  const chosen = select.value;
  fill(select, products.map((p) => h("option", { value: p.id }, `${p.name} · ${money(p.price)}`)));
  if (chosen) select.value = chosen;
  if (!select.value && products.length) select.value = products[products.length - 1].id;
  syncCardPrice();
}

function syncCardPrice() {
  const product = products.find((p) => p.id === $("#card-form select[name=product_id]").value);
  if (product) $("#card-form input[name=price]").value = (product.price / 100).toFixed(2);
}
$("#card-form select[name=product_id]").addEventListener("change", syncCardPrice);

onSubmit($("#product-form"), async (data, form) => {
  setText($("#product-error"), "");
  const price = toMinor(data.price);
  if (Number.isNaN(price)) throw new Error(t("host.bad_price"));
  // An unchecked box is absent from the form's data: a voucher or a service, paid without an address.
  const body = { name: data.name, price, shippable: data.shippable === "on" };
  if (data.description) body.description = data.description;
  if (data.image_url) body.image_url = data.image_url;
  const product = await call("/api/products", { method: "POST", body });
  products.push(product);
  renderProducts();
  $("#card-form select[name=product_id]").value = product.id;
  syncCardPrice();
  form.reset();
}, errorTo($("#product-error")));

// -- rooms -----------------------------------------------------------------------------------------------

// The host's rooms come from the server (GET /api/rooms, newest first), so they follow the host to any
// browser they sign in on; a full page offers the next one.

function roomItem(room) {
  return h("li", { dataset: { roomId: room.id } },
    h("span", { class: "title" }, room.title),
    h("span", { class: `badge ${room.status}` }, t(`host.status.${room.status}`)),
    room.sign_in === "guest" ? h("span", { class: "badge guest" }, t("room.guest_label")) : null,
    h("a", { href: `#room=${encodeURIComponent(room.id)}`, class: "button secondary" }, t("host.rooms.open")));
}

function roomsPage(before) {
  const query = new URLSearchParams({ limit: String(ROOMS_PAGE) });
  if (before) query.set("before", before);
  return call(`/api/rooms?${query}`);
}

function showMoreRooms(page) {
  const more = $("#rooms-more");
  more.dataset.before = page.length ? page[page.length - 1].id : "";
  show(more, page.length === ROOMS_PAGE);
}

async function renderRooms() {
  const load = ++roomsLoad;
  const rooms = await roomsPage();
  if (load !== roomsLoad) return;
  fill($("#room-list"), rooms.length
    ? rooms.map(roomItem)
    : [h("li", { class: "muted empty" }, t("host.rooms.none"))]);
  showMoreRooms(rooms);
}

$("#rooms-more").addEventListener("click", async () => {
  const more = $("#rooms-more");
  const load = roomsLoad;
  more.disabled = true; // one page at a time: a double click must not append the same page twice
  try {
    const rooms = await roomsPage(more.dataset.before);
    if (load !== roomsLoad) return;
    $("#room-list").append(...rooms.map(roomItem));
    showMoreRooms(rooms);
  } catch (error) {
    setText($("#room-error"), describe(error));
  } finally {
    more.disabled = false;
  }
});

onSubmit($("#room-form"), async (data, form) => {
  setText($("#room-error"), "");
  const body = { title: data.title, sign_in: data.sign_in };
  if (data.scheduled_at) body.scheduled_at = new Date(data.scheduled_at).toISOString();
  const room = await call("/api/rooms", { method: "POST", body });
  form.reset();
  await renderRooms();
  location.hash = `room=${encodeURIComponent(room.id)}`;
}, errorTo($("#room-error")));

function route() {
  const match = /room=([^&]+)/.exec(location.hash);
  if (!match) {
    closeRoom();
    return;
  }
  const roomId = decodeURIComponent(match[1]);
  if ($("#tab-shows").hidden) showTab("shows");
  if (!active || active.id !== roomId) openRoom(roomId).catch(errorTo($("#room-error")));
}
window.addEventListener("hashchange", () => token && route());

// -- the open room ---------------------------------------------------------------------------------------

function closeRoom() {
  if (!active) return;
  active.socket.close();
  clearInterval(active.statsEvery);
  clearTimeout(active.statsTimer);
  stopCamera();
  closeRoomVideo();
  active = null;
  show($("#room"), false);
  renderObsServer();
}

async function openRoom(roomId) {
  closeRoom();
  const room = await call(`/api/rooms/${encodeURIComponent(roomId)}`);
  active = {
    id: room.id,
    room,
    cards: new Map(), // card id -> {card, node, update}
    orders: new Map(), // order id -> {order, node, update}
    samples: [],
    lastStatsAt: 0,
    statsTimer: null,
    statsInFlight: false,
    orderCount: "",
    camera: null,
  };
  fill($("#card-list"));
  fill($("#order-list"));
  fill($("#chat-log"));
  fill($("#sell-through"));
  fill($("#leaderboard"));
  fill($("#promoter-made"));
  show($("#promoter-made"), false);
  setText($("#room-error-line"), "");
  renderRoom(room);
  openRoomVideo(room.id, room.status);
  $("#invite-url").value = room.invite_url || "";
  $("#whip-url").value = whipUrl(room.id);
  renderObsServer();
  // A verified room's viewers are signed-in customers: a promoter joins with their own phone and shares
  // their page's link; only a guest room lets the console make a promoter (a nameless join) for them.
  show($("#promoter-form"), room.sign_in === "guest");
  show($("#promoter-verified-note"), room.sign_in !== "guest");
  show($("#room"));
  const current = active;
  current.socket = new RoomSocket(room.id, token, {
    onFrame: (frame) => current === active && onFrame(frame),
    onStatus: (status) => setText($("#socket-status"), t(`host.socket.${status}`)),
    onFatal: (code) => {
      if (code === CLOSE.UNAUTHORIZED) return sessionEnded();
      setText($("#room-error-line"), t("host.socket.refused", { code }));
    },
  });
  current.socket.connect();
  current.statsEvery = setInterval(() => refreshStats(), STATS_EVERY_MS);
  refreshStats();
  loadOrders().catch(errorTo($("#order-error")));
  loadInvites().catch(errorTo($("#room-error-line")));
}

function renderRoom(room) {
  active.room = { ...active.room, ...room };
  setText($("#room-title"), active.room.title);
  const status = $("#room-status");
  setText(status, t(`host.status.${active.room.status}`));
  status.className = `badge ${active.room.status}`;
  show($("#room-guest"), active.room.sign_in === "guest");
  $("#go-live").disabled = active.room.status !== "scheduled";
  $("#end-show").disabled = active.room.status === "ended";
  $("#camera-start").disabled = active.room.status === "ended";
  roomStatus(active.room.status);
}

async function lifecycle(action) {
  setText($("#room-error-line"), "");
  renderRoom(await call(`/api/rooms/${encodeURIComponent(active.id)}/${action}`, { method: "POST" }));
  if (action === "end") stopCamera();
  renderRooms().catch(errorTo($("#room-error")));
}
$("#go-live").addEventListener("click", () => lifecycle("live").catch(errorTo($("#room-error-line"))));
// Ending cannot be undone (every open card closes, nobody can join any more): the page asks first.
$("#end-show").addEventListener("click", () => {
  $("#end-dialog").returnValue = "";
  $("#end-dialog").showModal();
});
$("#end-dialog").addEventListener("close", () => {
  if ($("#end-dialog").returnValue === "end" && active) lifecycle("end").catch(errorTo($("#room-error-line")));
});

const onFrame = routeFrames(
  {
    snapshot(frame) {
      renderRoom(frame.room);
      setText($("#stat-viewers-now"), frame.viewers);
      for (const card of frame.cards) upsertCard(card);
    },
    card: upsertCard,
    stock(cardId, stockLeft) {
      const entry = active.cards.get(cardId);
      if (entry) entry.update({ ...entry.card, stock_left: stockLeft });
    },
    viewers: (count) => setText($("#stat-viewers-now"), count),
    room: renderRoom,
    chat: addChat,
    error: (error, frame) => notice(describe(new ApiError(429, error, error, frame))),
  },
  () => scheduleStats(),
);

// -- camera (WHIP) ---------------------------------------------------------------------------------------

async function startCamera() {
  const current = active;
  setText($("#camera-status"), t("host.camera.asking"));
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
  } catch {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } });
  }
  $("#preview").srcObject = stream;
  setText($("#camera-status"), t("host.camera.connecting"));
  let session;
  try {
    session = await publish(current.id, token, stream);
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    $("#preview").srcObject = null;
    throw error;
  }
  current.camera = { stream, session };
  const state = () => setText($("#camera-status"), t("host.camera.publishing", { state: session.pc.connectionState }));
  session.pc.addEventListener("connectionstatechange", state);
  state();
  show($("#camera-start"), false);
  show($("#camera-stop"));
  if (current.room.status === "scheduled") await lifecycle("live"); // going on camera starts the show
}

function stopCamera() {
  const camera = active && active.camera;
  if (!camera) return;
  active.camera = null;
  camera.session.stop();
  camera.stream.getTracks().forEach((track) => track.stop());
  $("#preview").srcObject = null;
  setText($("#camera-status"), t("host.camera.off"));
  show($("#camera-start"));
  show($("#camera-stop"), false);
}

$("#camera-start").addEventListener("click", () =>
  startCamera().catch((error) => {
    setText($("#camera-status"), t("host.camera.off"));
    setText($("#room-error-line"), describe(error));
  }),
);
$("#camera-stop").addEventListener("click", stopCamera);

// -- invites and promoter links --------------------------------------------------------------------------

function copyRow(url) {
  const field = h("input", { readonly: true, value: url });
  return h("span", { class: "copyline" }, field,
    h("button", { type: "button", class: "secondary", onclick: () => copyText(url, field) }, t("common.copy")));
}

async function loadInvites() {
  const roomId = active.id;
  const invites = await call(`/api/rooms/${encodeURIComponent(roomId)}/invites`);
  if (!active || active.id !== roomId) return;
  fill(
    $("#invite-list"),
    invites.map((inv) =>
      h("li", { dataset: { inviteId: inv.id } },
        h("span", { class: "title" }, inv.label || t("host.invites.unnamed")),
        h("span", { class: "muted" }, t(inv.revoked ? "host.invites.used_revoked" : "host.invites.used", { uses: inv.uses, max: inv.max_uses })),
        inv.revoked ? null : copyRow(inv.url),
        inv.revoked ? null : h("button", {
          type: "button", class: "secondary",
          onclick: () => call(`/api/rooms/${encodeURIComponent(roomId)}/invites/${encodeURIComponent(inv.id)}`,
            { method: "DELETE" }).then(loadInvites).catch(errorTo($("#room-error-line"))),
        }, t("host.invites.revoke"))),
    ),
  );
}

onSubmit($("#invite-form"), async (data) => {
  const body = { max_uses: Number(data.max_uses), expires_in_seconds: Math.round(Number(data.hours) * 3600) };
  if (data.label) body.label = data.label;
  await call(`/api/rooms/${encodeURIComponent(active.id)}/invites`, { method: "POST", body });
  await loadInvites();
}, errorTo($("#room-error-line")));

// A guest room's promoter is a member of the room like any viewer: their share code attributes whoever
// joins through it. The link is shown here to hand over, not kept: the leaderboard below (the room's
// stats) lists the promoters who brought someone, and the 团长 tab the host-wide leaders.
onSubmit($("#promoter-form"), async ({ name }, form) => {
  const joined = await api(`/api/rooms/${encodeURIComponent(active.id)}/join`, {
    method: "POST",
    body: { invite: active.room.invite_token, name },
  });
  form.reset();
  $("#promoter-made").prepend(
    h("li", { dataset: { viewerId: joined.viewer_id } }, h("span", { class: "title" }, joined.name), copyRow(joined.share_url)));
  show($("#promoter-made"));
}, errorTo($("#room-error-line")));

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-copy]");
  if (target) copyText($(`#${target.dataset.copy}`).value, $(`#${target.dataset.copy}`));
});

// -- cards -----------------------------------------------------------------------------------------------

onSubmit($("#card-form"), async (data) => {
  setText($("#card-error"), "");
  const price = toMinor(data.price);
  if (Number.isNaN(price)) throw new Error(t("host.bad_price"));
  const card = await call(`/api/rooms/${encodeURIComponent(active.id)}/cards`, {
    method: "POST",
    body: {
      product_id: data.product_id,
      price,
      stock: Number(data.stock),
      per_user_limit: Number(data.per_user_limit),
      reserve_seconds: Number(data.reserve_seconds),
    },
  });
  upsertCard(card);
}, errorTo($("#card-error")));

function cardAction(card, path, body, method = "POST") {
  return call(`/api/cards/${encodeURIComponent(card.id)}${path}`, { method, body })
    .then(upsertCard)
    .catch(errorTo($("#card-error")));
}

function smallForm(label, input, onsubmit) {
  const form = h("form", { class: "inline tight" }, input, h("button", { type: "submit", class: "secondary" }, label));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onsubmit(input.value);
  });
  return form;
}

function upsertCard(card) {
  const existing = active.cards.get(card.id);
  if (existing) {
    existing.update(card);
    return;
  }
  const title = h("h4", { class: "title" });
  const desc = h("p", { class: "desc muted" });
  const status = h("span", { class: "badge" });
  const price = h("span", { class: "price" });
  const stock = h("span", { class: "stock-left" });
  const total = h("span", { class: "muted" });
  const limit = h("span", { class: "muted" });
  const countdown = h("span", { class: "countdown muted" });
  const duration = h("input", { type: "number", min: 1, placeholder: t("host.card.duration"), name: "duration" });
  const newPrice = h("input", { inputmode: "decimal", placeholder: t("host.card.new_price"), name: "price" });
  const addStock = h("input", { type: "number", min: 1, placeholder: t("host.card.units"), name: "add_stock" });
  const entry = { card };
  const node = h("article", { class: "card", dataset: { cardId: card.id } },
    h("header", {}, title, status),
    desc,
    h("p", { class: "figures" }, price, " · ", stock, total, " · ", limit, " ", countdown),
    h("div", { class: "actions" },
      smallForm(t("host.card.open"), duration, (v) =>
        cardAction(entry.card, "/open", v ? { duration_seconds: Number(v) } : {})),
      h("button", { type: "button", class: "secondary", onclick: () => cardAction(entry.card, "/close") }, t("host.card.close")),
      smallForm(t("host.card.set_price"), newPrice, (v) => {
        const minor = toMinor(v);
        if (Number.isNaN(minor)) return setText($("#card-error"), t("host.bad_price"));
        cardAction(entry.card, "", { price: minor }, "PATCH").then(() => (newPrice.value = ""));
      }),
      smallForm(t("host.card.add_stock"), addStock, (v) =>
        cardAction(entry.card, "", { add_stock: Number(v) }, "PATCH").then(() => (addStock.value = ""))),
    ),
  );
  entry.node = node;
  entry.tick = () => {
    const c = entry.card;
    setText(countdown, c.status === "open" && c.closes_at ? t("host.card.closes_in", { time: remaining(c.closes_at) }) : "");
  };
  entry.update = (next) => {
    entry.card = { ...entry.card, ...next };
    const c = entry.card;
    setText(title, c.product.name);
    setText(desc, c.product.description || "");
    setText(status, t(`host.card.status.${c.status}`));
    status.className = `badge ${c.status}`;
    setText(price, money(c.price));
    setText(stock, c.stock_left);
    setText(total, t("card.of_total", { total: c.stock_total }));
    setText(limit, t("host.card.rules", { limit: c.per_user_limit, hold: c.reserve_seconds ?? "?" }));
    entry.tick();
  };
  entry.update(card);
  active.cards.set(card.id, entry);
  $("#card-list").prepend(node);
}

setInterval(() => {
  if (!active) return;
  for (const entry of active.cards.values()) entry.tick();
}, 1000);

// -- dashboard -------------------------------------------------------------------------------------------

function scheduleStats() {
  if (!active || active.statsTimer) return;
  const wait = Math.max(0, active.lastStatsAt + STATS_MIN_GAP_MS - Date.now());
  active.statsTimer = setTimeout(() => {
    active.statsTimer = null;
    refreshStats();
  }, wait);
}

async function refreshStats() {
  const current = active;
  if (!current || current.statsInFlight) return;
  current.statsInFlight = true;
  current.lastStatsAt = Date.now();
  try {
    const stats = await call(`/api/rooms/${encodeURIComponent(current.id)}/stats`);
    if (current === active) renderStats(stats);
  } catch (error) {
    if (current === active) setText($("#room-error-line"), t("host.stats.failed", { reason: describe(error) }));
  } finally {
    current.statsInFlight = false;
  }
}

function renderStats(s) {
  const cur = s.currency;
  setText($("#stat-viewers-now"), s.viewers_now);
  setText($("#stat-viewers-peak"), s.viewers_peak);
  setText($("#stat-viewers-unique"), s.viewers_unique);
  setText($("#stat-orders-paid"), s.orders_paid);
  setText($("#stat-orders-reserved"), s.orders_reserved);
  setText($("#stat-gmv"), money(s.gmv, cur));
  setText($("#stat-conversion"), percent(s.conversion));

  active.samples.push({ t: Date.now(), v: s.gmv });
  if (active.samples.length > MAX_SAMPLES) active.samples.splice(0, active.samples.length - MAX_SAMPLES);
  drawLine($("#gmv-chart"), active.samples, (v) => money(v, cur));

  fill(
    $("#sell-through"),
    s.cards.map((c) =>
      h("tr", { dataset: { cardId: c.card_id } },
        h("td", {}, c.product_name),
        h("td", {}, `${c.sold}/${c.stock_total}`),
        h("td", {}, c.reserved),
        h("td", {}, c.stock_left),
        h("td", {}, h("meter", { min: 0, max: 1, value: c.sell_through }), " ", percent(c.sell_through)),
        h("td", {}, money(c.gmv, cur))),
    ),
  );
  fill(
    $("#leaderboard"),
    s.promoters.length
      ? s.promoters.map((p) =>
          h("tr", { dataset: { promoterId: p.promoter_id } },
            h("td", {}, h("span", { class: "name" }, p.name),
              p.leader_id ? [" ", h("span", { class: "badge kind leader" }, t("host.leaders.badge"))] : null),
            h("td", {}, p.viewers),
            h("td", {}, p.orders_paid),
            h("td", { class: "gmv" }, money(p.gmv, cur)),
            h("td", { class: "commission" }, money(p.commission, cur))),
        )
      : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("host.stats.no_promoters")))],
  );
  // Any change of status (reserved -> paid keeps the total) means the orders table is out of date.
  const count = `${s.orders_reserved}/${s.orders_paid}/${s.orders_refunded}`;
  if (count !== active.orderCount) {
    active.orderCount = count;
    loadOrders().catch(errorTo($("#order-error")));
  }
}

// -- chat ------------------------------------------------------------------------------------------------

function addChat(from, text, role) {
  const log = $("#chat-log");
  log.append(chatLine(from, text, role, { time: true }));
  while (log.children.length > MAX_CHAT) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

onSubmit($("#chat-form"), async ({ text }, form) => {
  if (!active.socket.send({ type: "chat", text })) throw new Error(t("chat.not_connected"));
  form.reset();
}, (error) => notice(describe(error)));

// -- orders ----------------------------------------------------------------------------------------------

async function loadOrders() {
  const current = active;
  const orders = await call(`/api/rooms/${encodeURIComponent(current.id)}/orders`);
  if (current !== active) return;
  for (const order of orders) upsertOrder(order);
}

function productOf(order) {
  const entry = active.cards.get(order.card_id);
  return entry ? entry.card.product.name : order.card_id;
}

function orderAction(order, path, body) {
  setText($("#order-error"), "");
  return call(`/api/orders/${encodeURIComponent(order.id)}${path}`, { method: "POST", body })
    .then((o) => {
      upsertOrder(o);
      scheduleStats();
    })
    .catch(errorTo($("#order-error")));
}

const SOLD = new Set(["paid", "shipped", "delivered", "completed"]);
const ORDER_STATUS = {
  reserved: "order.status.reserved",
  paid: "order.status.paid",
  shipped: "order.status.shipped",
  delivered: "order.status.delivered",
  completed: "order.status.completed",
  expired: "order.status.expired",
  cancelled: "order.status.cancelled",
  refunded: "order.status.refunded",
};

/** Where the order ships, as the host ships from it: name, phone, region, street line. */
function addressCell(address) {
  if (!address) return [h("span", { class: "muted" }, t("host.order.no_address"))];
  return [
    h("span", { class: "ship-name" }, address.name), " ",
    h("span", { class: "ship-phone" }, address.phone), h("br"),
    h("span", { class: "ship-region" }, address.region), " ",
    h("span", { class: "ship-line" }, address.line),
  ];
}

/** The parcel's line: carrier and tracking number, when it was shipped or delivered. */
function parcelText(o) {
  const parcel = o.carrier ? `${o.carrier} ${o.tracking_number}` : o.tracking_number;
  if (o.status === "delivered") return t("host.order.delivered", { tracking: parcel });
  if (o.status === "completed") return t("host.order.completed", { tracking: parcel });
  return t("host.order.shipped", { tracking: parcel });
}

function upsertOrder(order) {
  const existing = active.orders.get(order.id);
  if (existing) return existing.update(order);
  const status = h("td", { class: "status" });
  const product = h("td", { class: "product" });
  const address = h("td", { class: "address" });
  const actions = h("td", { class: "actions" });
  const entry = { order };
  entry.node = h("tr", { dataset: { orderId: order.id } },
    h("td", { class: "muted" }, clock(new Date(order.created_at))),
    product,
    h("td", {}, order.quantity),
    h("td", {}, money(order.amount, order.currency)),
    address,
    status,
    actions);
  let shownState = null;
  entry.update = (next) => {
    entry.order = next;
    setText(product, productOf(next));
    const words = t(ORDER_STATUS[next.status] || next.status);
    setText(status, t(next.late_payment ? "host.order.status_late" : "host.order.status", { status: words }));
    status.className = `status ${next.status}`;
    fill(address, ...addressCell(next.address));
    const state = `${next.status}|${next.tracking_number || ""}|${next.carrier || ""}|${next.refunded_amount}`;
    if (state === shownState) return; // keep a half-typed tracking number
    shownState = state;
    fill(actions);
    if (next.status === "refunded") {
      actions.append(h("span", { class: "muted refund-note" }, t(next.restocked ? "host.order.refunded_restocked" : "host.order.refunded")));
    }
    if (!SOLD.has(next.status)) return;
    if (next.refunded_amount > 0) {
      actions.append(h("span", { class: "muted refund-note" }, t("host.order.partly_refunded", { amount: money(next.refunded_amount, next.currency) })), " ");
    }
    if (next.tracking_number && next.status !== "paid") {
      actions.append(h("span", { class: "tracking" }, parcelText(next)), " ");
    }
    if (next.status === "paid") {
      const carrier = h("input", { name: "carrier", placeholder: t("host.order.carrier"), maxlength: 40 });
      const tracking = h("input", { name: "tracking_number", placeholder: t("host.order.tracking"), maxlength: 100, required: true });
      const ship = h("form", { class: "inline tight ship-form" }, carrier, tracking,
        h("button", { type: "submit", class: "small" }, t("host.order.ship")));
      onSubmit(ship, async () => {
        const number = tracking.value.trim();
        if (!number) return;
        const body = { tracking_number: number };
        if (carrier.value.trim()) body.carrier = carrier.value.trim();
        await orderAction(next, "/ship", body);
      }, errorTo($("#order-error")));
      actions.append(ship);
    } else if (next.status === "shipped") {
      actions.append(h("button", {
        type: "button",
        class: "secondary small deliver",
        onclick: (event) => {
          event.currentTarget.disabled = true;
          orderAction(next, "/deliver");
        },
      }, t("host.order.deliver")), " ");
    }
    // Two clicks, no modal dialog: "Refund" arms it and offers to put the units back on sale (off unless
    // ticked: a returned parcel may not be sellable), "Confirm refund" sends it, "Keep" disarms it.
    const refund = h("button", { type: "button", class: "danger small refund" }, t("host.order.refund"));
    const restock = h("input", { type: "checkbox", name: "restock" });
    const confirmBox = h("span", { class: "refund-confirm", hidden: true },
      h("label", { class: "restock" }, restock, " ", t("host.order.restock")), " ",
      h("button", { type: "button", class: "secondary small", onclick: () => disarm() }, t("host.order.keep")));
    const disarm = () => {
      delete refund.dataset.armed;
      restock.checked = false;
      setText(refund, t("host.order.refund"));
      show(confirmBox, false);
    };
    refund.addEventListener("click", () => {
      if (refund.dataset.armed) {
        refund.disabled = true;
        return orderAction(next, "/refund", { restock: restock.checked }).finally(() => (refund.disabled = false));
      }
      refund.dataset.armed = "1";
      setText(refund, t("host.order.confirm_refund"));
      show(confirmBox);
    });
    actions.append(refund, " ", confirmBox);
  };
  entry.update(order);
  active.orders.set(order.id, entry);
  $("#order-list").prepend(entry.node);
}

$("#orders-refresh").addEventListener("click", () => loadOrders().catch(errorTo($("#order-error"))));

$("#orders-csv").addEventListener("click", () =>
  saveCsv(`/api/rooms/${encodeURIComponent(active.id)}/orders?format=csv`, `orders-${active.id}.csv`)
    .catch(errorTo($("#order-error"))));

// -- start -----------------------------------------------------------------------------------------------

languageSwitch($("#lang"));
initTeam(call);
initHostVideo(call);
// An after-sale approved in the 售后 tab refunds an order: the open show's table shows it afresh.
initAfterSale(call, { orderChanged: () => active && loadOrders().catch(errorTo($("#order-error"))) });
// Earlier consoles kept each room's promoters in this browser; the leaderboard is the server's now.
for (const key of Object.keys(localStorage)) {
  if (key.startsWith("livecart.host.promoters.")) localStorage.removeItem(key);
}
renderObsServer();
if (token) {
  signIn(token).catch((error) => {
    show($("#signin"));
    if (error instanceof ApiError && error.status === 401) {
      localStorage.removeItem(TOKEN_KEY);
      token = null;
      setText($("#signin-reason"), error.code === "token_expired" ? describe(error) : t("host.signin.saved_invalid"));
      show($("#signin-reason"));
    } else {
      setText($("#signin-error"), describe(error));
    }
  });
} else {
  show($("#signin"));
}
