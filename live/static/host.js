// The host console (/host): sign in with the host token; products; shows, invites and promoter links; the
// camera over WHIP; cards (pin, open, close, cut the price, add stock); the live dashboard over the room's
// websocket and /stats; orders (ship, refund, CSV). All user text is rendered with textContent (dom.js).

import { api, ApiError, describe, money, percent, toMinor } from "./api.js";
import { drawLine } from "./chart.js";
import { $, clock, copyText, fill, h, onSubmit, remaining, setText, show } from "./dom.js";
import { RoomSocket, routeFrames } from "./hub.js";
import { publish } from "./webrtc.js";

const TOKEN_KEY = "livecart.host.token";
const NAME_KEY = "livecart.host.name";
const ROOMS_PAGE = 50;
const promotersKey = (roomId) => `livecart.host.promoters.${roomId}`;
const STATS_EVERY_MS = 4000;
const STATS_MIN_GAP_MS = 1000;
const MAX_SAMPLES = 3000;
const MAX_CHAT = 200;

let token = localStorage.getItem(TOKEN_KEY);
let products = [];
let active = null; // the open room: see openRoom()
let roomsLoad = 0; // bumped by each (re)load of the room list: an older answer that arrives late is dropped

const call = (path, options = {}) => api(path, { token, ...options });
const readJSON = (key, fallback) => {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
};
const errorTo = (node) => (error) => setText(node, describe(error));

function notice(text) {
  const box = $("#notice");
  setText(box, text);
  show(box, Boolean(text));
}

// -- signing in ------------------------------------------------------------------------------------------

async function signIn(candidate) {
  token = candidate.trim();
  try {
    products = await call("/api/products"); // proves the token
  } catch (error) {
    token = null;
    if (error instanceof ApiError && error.status === 401) {
      throw new ApiError(401, "unauthorized", "This is not a valid host token.");
    }
    throw error;
  }
  localStorage.setItem(TOKEN_KEY, token);
  enterConsole();
}

function signOut() {
  closeRoom();
  roomsLoad++;
  fill($("#room-list"));
  show($("#rooms-more"), false);
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(NAME_KEY);
  token = null;
  location.hash = "";
  show($("#token-box"), false);
  show($("#console"), false);
  show($("#sign-out"), false);
  setText($("#signed-in"), "");
  show($("#signin"));
}

function enterConsole() {
  show($("#signin"), false);
  show($("#console"));
  show($("#sign-out"));
  setText($("#signed-in"), `Signed in${localStorage.getItem(NAME_KEY) ? " as " + localStorage.getItem(NAME_KEY) : ""}`);
  renderProducts();
  renderRooms().catch(errorTo($("#room-error")));
  route();
}

onSubmit($("#signin-form"), async ({ token: value }) => {
  setText($("#signin-error"), "");
  await signIn(value);
}, errorTo($("#signin-error")));

onSubmit($("#signup-form"), async ({ name }) => {
  setText($("#signin-error"), "");
  const host = await api("/api/hosts", { method: "POST", body: { name } });
  localStorage.setItem(NAME_KEY, host.name);
  await signIn(host.token);
  $("#token-value").value = host.token;
  show($("#token-box"));
}, errorTo($("#signin-error")));

$("#sign-out").addEventListener("click", signOut);
$("#token-copy").addEventListener("click", () => copyText($("#token-value").value, $("#token-value")));

// -- products --------------------------------------------------------------------------------------------

function renderProducts() {
  fill(
    $("#product-list"),
    products.map((p) =>
      h("li", { dataset: { productId: p.id } },
        h("span", { class: "title" }, p.name),
        h("span", { class: "muted" }, money(p.price)),
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
  if (Number.isNaN(price)) throw new Error("The price must be an amount like 19.90.");
  const body = { name: data.name, price };
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
    h("span", { class: `badge ${room.status}` }, room.status),
    h("a", { href: `#room=${encodeURIComponent(room.id)}`, class: "button secondary" }, "Open"));
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
    : [h("li", { class: "muted empty" }, "No shows yet: create one above.")]);
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
  const body = { title: data.title };
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
  active = null;
  show($("#room"), false);
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
  setText($("#room-error-line"), "");
  renderRoom(room);
  $("#invite-url").value = room.invite_url || "";
  show($("#room"));
  const current = active;
  current.socket = new RoomSocket(room.id, token, {
    onFrame: (frame) => current === active && onFrame(frame),
    onStatus: (status) => setText($("#socket-status"), status === "live" ? "hub connected" : status),
    onFatal: (code, reason) => setText($("#room-error-line"), `The live connection was refused (${code} ${reason}).`),
  });
  current.socket.connect();
  current.statsEvery = setInterval(() => refreshStats(), STATS_EVERY_MS);
  refreshStats();
  loadOrders().catch(errorTo($("#order-error")));
  loadInvites().catch(errorTo($("#room-error-line")));
  renderPromoters();
}

function renderRoom(room) {
  active.room = { ...active.room, ...room };
  setText($("#room-title"), active.room.title);
  const status = $("#room-status");
  setText(status, active.room.status);
  status.className = `badge ${active.room.status}`;
  $("#go-live").disabled = active.room.status !== "scheduled";
  $("#end-show").disabled = active.room.status === "ended";
  $("#camera-start").disabled = active.room.status === "ended";
}

async function lifecycle(action) {
  setText($("#room-error-line"), "");
  renderRoom(await call(`/api/rooms/${encodeURIComponent(active.id)}/${action}`, { method: "POST" }));
  if (action === "end") stopCamera();
  renderRooms().catch(errorTo($("#room-error")));
}
$("#go-live").addEventListener("click", () => lifecycle("live").catch(errorTo($("#room-error-line"))));
$("#end-show").addEventListener("click", () => lifecycle("end").catch(errorTo($("#room-error-line"))));

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
    error: (error) => notice(`The live connection says: ${error}`),
  },
  () => scheduleStats(),
);

// -- camera (WHIP) ---------------------------------------------------------------------------------------

async function startCamera() {
  const current = active;
  setText($("#camera-status"), "asking for the camera…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
  } catch {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } });
  }
  $("#preview").srcObject = stream;
  setText($("#camera-status"), "connecting…");
  let session;
  try {
    session = await publish(current.id, token, stream);
  } catch (error) {
    stream.getTracks().forEach((t) => t.stop());
    $("#preview").srcObject = null;
    throw error;
  }
  current.camera = { stream, session };
  const state = () => setText($("#camera-status"), `publishing: ${session.pc.connectionState}`);
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
  camera.stream.getTracks().forEach((t) => t.stop());
  $("#preview").srcObject = null;
  setText($("#camera-status"), "camera off");
  show($("#camera-start"));
  show($("#camera-stop"), false);
}

$("#camera-start").addEventListener("click", () =>
  startCamera().catch((error) => {
    setText($("#camera-status"), "camera off");
    setText($("#room-error-line"), describe(error));
  }),
);
$("#camera-stop").addEventListener("click", stopCamera);

// -- invites and promoter links --------------------------------------------------------------------------

function copyRow(url) {
  const field = h("input", { readonly: true, value: url });
  return h("span", { class: "copyline" }, field,
    h("button", { type: "button", class: "secondary", onclick: () => copyText(url, field) }, "Copy"));
}

async function loadInvites() {
  const roomId = active.id;
  const invites = await call(`/api/rooms/${encodeURIComponent(roomId)}/invites`);
  if (!active || active.id !== roomId) return;
  fill(
    $("#invite-list"),
    invites.map((inv) =>
      h("li", { dataset: { inviteId: inv.id } },
        h("span", { class: "title" }, inv.label || "invite"),
        h("span", { class: "muted" }, `${inv.uses}/${inv.max_uses} used${inv.revoked ? " · revoked" : ""}`),
        inv.revoked ? null : copyRow(inv.url),
        inv.revoked ? null : h("button", {
          type: "button", class: "secondary",
          onclick: () => call(`/api/rooms/${encodeURIComponent(roomId)}/invites/${encodeURIComponent(inv.id)}`,
            { method: "DELETE" }).then(loadInvites).catch(errorTo($("#room-error-line"))),
        }, "Revoke")),
    ),
  );
}

onSubmit($("#invite-form"), async (data) => {
  const body = { max_uses: Number(data.max_uses), expires_in_seconds: Math.round(Number(data.hours) * 3600) };
  if (data.label) body.label = data.label;
  await call(`/api/rooms/${encodeURIComponent(active.id)}/invites`, { method: "POST", body });
  await loadInvites();
}, errorTo($("#room-error-line")));

function renderPromoters() {
  const promoters = readJSON(promotersKey(active.id), []);
  fill(
    $("#promoter-list"),
    promoters.map((p) =>
      h("li", { dataset: { promoterId: p.viewer_id } }, h("span", { class: "title" }, p.name), copyRow(p.share_url)),
    ),
  );
}

// A promoter is a member of the room like any viewer: their share code attributes whoever joins through it.
onSubmit($("#promoter-form"), async ({ name }, form) => {
  const joined = await api(`/api/rooms/${encodeURIComponent(active.id)}/join`, {
    method: "POST",
    body: { invite: active.room.invite_token, name },
  });
  const list = readJSON(promotersKey(active.id), []);
  list.push({ name: joined.name, viewer_id: joined.viewer_id, share_url: joined.share_url });
  localStorage.setItem(promotersKey(active.id), JSON.stringify(list));
  form.reset();
  renderPromoters();
}, errorTo($("#room-error-line")));

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-copy]");
  if (target) copyText($(`#${target.dataset.copy}`).value, $(`#${target.dataset.copy}`));
});

// -- cards -----------------------------------------------------------------------------------------------

onSubmit($("#card-form"), async (data) => {
  setText($("#card-error"), "");
  const price = toMinor(data.price);
  if (Number.isNaN(price)) throw new Error("The price must be an amount like 19.90.");
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
  const duration = h("input", { type: "number", min: 1, placeholder: "seconds (none: until closed)", name: "duration" });
  const newPrice = h("input", { inputmode: "decimal", placeholder: "new price", name: "price" });
  const addStock = h("input", { type: "number", min: 1, placeholder: "units", name: "add_stock" });
  const entry = { card };
  const node = h("article", { class: "card", dataset: { cardId: card.id } },
    h("header", {}, title, status),
    desc,
    h("p", { class: "figures" }, price, " · ", stock, total, " · ", limit, " ", countdown),
    h("div", { class: "actions" },
      smallForm("Open", duration, (v) =>
        cardAction(entry.card, "/open", v ? { duration_seconds: Number(v) } : {})),
      h("button", { type: "button", class: "secondary", onclick: () => cardAction(entry.card, "/close") }, "Close"),
      smallForm("Set price", newPrice, (v) => {
        const minor = toMinor(v);
        if (Number.isNaN(minor)) return setText($("#card-error"), "The price must be an amount like 15.90.");
        cardAction(entry.card, "", { price: minor }, "PATCH").then(() => (newPrice.value = ""));
      }),
      smallForm("Add stock", addStock, (v) =>
        cardAction(entry.card, "", { add_stock: Number(v) }, "PATCH").then(() => (addStock.value = ""))),
    ),
  );
  entry.node = node;
  entry.tick = () => {
    const c = entry.card;
    setText(countdown, c.status === "open" && c.closes_at ? `closes in ${remaining(c.closes_at)}` : "");
  };
  entry.update = (next) => {
    entry.card = { ...entry.card, ...next };
    const c = entry.card;
    setText(title, c.product.name);
    setText(desc, c.product.description || "");
    setText(status, c.status);
    status.className = `badge ${c.status}`;
    setText(price, money(c.price));
    setText(stock, c.stock_left);
    setText(total, ` of ${c.stock_total} left`);
    setText(limit, `≤${c.per_user_limit} per buyer · hold ${c.reserve_seconds ?? "?"}s`);
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
    if (current === active) setText($("#room-error-line"), `Statistics: ${describe(error)}`);
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
          h("tr", { dataset: { promoterId: p.viewer_id } },
            h("td", { class: "name" }, p.name),
            h("td", {}, p.viewers),
            h("td", {}, p.orders_paid),
            h("td", { class: "gmv" }, money(p.gmv, cur)),
            h("td", { class: "commission" }, money(p.commission, cur))),
        )
      : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No promoter has brought anyone yet."))],
  );
  // Any change of status (reserved -> paid keeps the total) means the orders table is out of date.
  const count = `${s.orders_reserved}/${s.orders_paid}/${s.orders_refunded}`;
  if (count !== active.orderCount) {
    active.orderCount = count;
    loadOrders().catch(errorTo($("#order-error")));
  }
}

// -- chat ------------------------------------------------------------------------------------------------

function addChat(from, text) {
  const log = $("#chat-log");
  log.append(h("li", {}, h("span", { class: "time muted" }, clock()), h("b", { class: "from" }, from), h("span", { class: "text" }, text)));
  while (log.children.length > MAX_CHAT) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

onSubmit($("#chat-form"), async ({ text }, form) => {
  if (!active.socket.send({ type: "chat", text })) throw new Error("Not connected; try again in a moment.");
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

function upsertOrder(order) {
  const existing = active.orders.get(order.id);
  if (existing) return existing.update(order);
  const status = h("td", { class: "status" });
  const product = h("td", { class: "product" });
  const actions = h("td", { class: "actions" });
  const entry = { order };
  entry.node = h("tr", { dataset: { orderId: order.id } },
    h("td", { class: "muted" }, clock(new Date(order.created_at))),
    product,
    h("td", {}, order.quantity),
    h("td", {}, money(order.amount, order.currency)),
    status,
    actions);
  let shownState = null;
  entry.update = (next) => {
    entry.order = next;
    setText(product, productOf(next));
    setText(status, next.status + (next.late_payment ? " (late)" : ""));
    status.className = `status ${next.status}`;
    const state = `${next.status}|${next.tracking_number || ""}`;
    if (state === shownState) return; // keep a half-typed tracking number
    shownState = state;
    fill(actions);
    if (next.status !== "paid") {
      if (next.status === "refunded") {
        actions.append(h("span", { class: "muted refund-note" }, next.restocked ? "refunded · restocked" : "refunded"));
      }
      return;
    }
    if (next.tracking_number) {
      actions.append(h("span", { class: "tracking" }, `shipped · ${next.tracking_number}`), " ");
    } else {
      const tracking = h("input", { name: "tracking_number", placeholder: "tracking no.", maxlength: 100, required: true });
      actions.append(smallForm("Ship", tracking, (v) => v.trim() && orderAction(next, "/ship", { tracking_number: v.trim() })));
    }
    // Two clicks, no modal dialog: "Refund" arms it and offers to put the units back on sale (off unless
    // ticked: a returned parcel may not be sellable), "Confirm refund" sends it, "Keep" disarms it.
    const refund = h("button", { type: "button", class: "danger small refund" }, "Refund");
    const restock = h("input", { type: "checkbox", name: "restock" });
    const confirmBox = h("span", { class: "refund-confirm", hidden: true },
      h("label", { class: "restock" }, restock, " put back in stock"), " ",
      h("button", { type: "button", class: "secondary small", onclick: () => disarm() }, "Keep"));
    const disarm = () => {
      delete refund.dataset.armed;
      restock.checked = false;
      setText(refund, "Refund");
      show(confirmBox, false);
    };
    refund.addEventListener("click", () => {
      if (refund.dataset.armed) {
        refund.disabled = true;
        return orderAction(next, "/refund", { restock: restock.checked }).finally(() => (refund.disabled = false));
      }
      refund.dataset.armed = "1";
      setText(refund, "Confirm refund");
      show(confirmBox);
    });
    actions.append(refund, " ", confirmBox);
  };
  entry.update(order);
  active.orders.set(order.id, entry);
  $("#order-list").prepend(entry.node);
}

$("#orders-refresh").addEventListener("click", () => loadOrders().catch(errorTo($("#order-error"))));

// A link cannot carry the bearer token: fetch the CSV and hand it over as a download.
$("#orders-csv").addEventListener("click", async () => {
  try {
    const response = await call(`/api/rooms/${encodeURIComponent(active.id)}/orders?format=csv`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `orders-${active.id}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    setText($("#order-error"), describe(error));
  }
});

// -- start -----------------------------------------------------------------------------------------------

if (token) {
  signIn(token).catch((error) => {
    show($("#signin"));
    if (error instanceof ApiError && error.status === 401) {
      localStorage.removeItem(TOKEN_KEY);
      setText($("#signin-error"), "Your saved token is no longer valid; sign in again.");
    } else {
      setText($("#signin-error"), describe(error));
    }
  });
} else {
  show($("#signin"));
}
