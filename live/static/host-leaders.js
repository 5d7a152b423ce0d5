// The host console's shop-wide sections (SPEC §9, docs/leaders.md), each behind its tab: 团长 (the roster of
// leaders with their codes, QR images, rates and figures; the shop's own rate), 结算 (the commission report
// by period, a payout per promoter, the payouts and both CSVs) and 客户 (the customer list a page at a time,
// a customer's orders across every show, "make a leader"). The shows tab is host.js's; switching tabs only
// hides and shows, so an open show (its socket, the camera) keeps running behind another tab.
// Money is integer minor units (money() of api.js); all user text is rendered with textContent (dom.js).

import { ApiError, describe, money } from "./api.js";
import { $, copyText, fill, h, onSubmit, setText, show } from "./dom.js";
import { t } from "./i18n.js";

const CUSTOMERS_PAGE = 50;
const PICK_LIMIT = 200; // the customers offered by the "add a leader" form: the newest, the API's largest page

let call = null; // host.js's authenticated call (a 401 ends the session)
let shop = null; // GET /api/shop: the rate and the after-sale window
let report = { upTo: null, query: "" }; // the report on screen: the instant it was loaded at, its period
let reportLoad = 0; // bumped by each (re)load of the report: a late answer for another period is dropped
let customersLoad = 0; // bumped by each (re)load of the customer list: a late answer of an older one is dropped
let customersSeen = new Map(); // customer id -> its row's update function (a row made a leader in place)

const errorTo = (node) => (error) => setText(node, describe(error));

/** Basis points as a percentage: 1000 → "10%", 1250 → "12.5%". */
export function rateText(bps) {
  return `${Number((bps / 100).toFixed(2))}%`;
}

/** "12.5" (percent) → 1250 basis points; null for an empty field; NaN for anything outside 0–100 %. */
function toBps(text) {
  const value = String(text ?? "").trim();
  if (!value) return null;
  const number = Number(value);
  return Number.isFinite(number) && number >= 0 && number <= 100 ? Math.round(number * 100) : NaN;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(document.documentElement.lang) : "";
}

function kindText(kind) {
  const words = {
    leader: t("host.settlement.kind.leader"),
    customer: t("host.settlement.kind.customer"),
    guest: t("host.settlement.kind.guest"),
  };
  return words[kind] || kind;
}

/** A bearer-token download: a link cannot carry the token, so the file is fetched and handed over as a blob. */
export async function saveCsv(path, filename) {
  const response = await call(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function copyLine(value) {
  const field = h("input", { readonly: true, value, class: "link" });
  return h("span", { class: "copyline" }, field,
    h("button", { type: "button", class: "secondary", onclick: () => copyText(value, field) }, t("common.copy")));
}

// -- tabs ------------------------------------------------------------------------------------------------

const loaders = {
  shows: () => {},
  leaders: () => loadShop()
    .then(() => Promise.all([loadLeaders(), loadCustomerChoices()]))
    .catch(errorTo($("#leader-error"))),
  settlement: () => Promise.all([loadShop(), loadReport(), loadPayouts()]).catch(errorTo($("#settlement-error"))),
  customers: () => loadCustomers().catch(errorTo($("#customer-error"))),
};

/** Another section's tab (the 售后 tab of host-after-sale.js): `load` runs each time it is shown. */
export function registerTab(name, load) {
  loaders[name] = load;
}

/** Show one tab's panel (and load it afresh: the figures move with every order). */
export function showTab(name) {
  for (const tab of document.querySelectorAll("#tabs [data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("[data-tab-panel]")) show(panel, panel.dataset.tabPanel === name);
  loaders[name]();
}

/** The console closed (signed out): forget what the sections showed. */
export function resetTeam() {
  shop = null;
  report = { upTo: null, query: "" };
  reportLoad++;
  customersLoad++;
  customersSeen = new Map();
  for (const id of ["#leader-list", "#report-list", "#payout-list", "#customer-list", "#customer-orders"]) fill($(id));
  show($("#customer-page"), false);
  show($("#customers-more"), false);
  show($("#payout-result"), false);
}

export function initTeam(authenticatedCall) {
  call = authenticatedCall;
  for (const tab of document.querySelectorAll("#tabs [data-tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
}

// -- the shop's rate -------------------------------------------------------------------------------------

async function loadShop() {
  shop = await call("/api/shop");
  renderShop();
}

function renderShop() {
  const own = shop.commission_bps;
  const input = $("#shop-rate-form input[name=rate]");
  if (document.activeElement !== input) input.value = own === null ? "" : String(own / 100);
  input.placeholder = String(shop.default_commission_bps / 100);
  setText($("#shop-rate-note"), own === null
    ? t("host.leaders.shop_rate_default", { rate: rateText(shop.default_commission_bps) })
    : t("host.leaders.shop_rate_own", { rate: rateText(own), default: rateText(shop.default_commission_bps) }));
  $("#leader-form input[name=rate]").placeholder = t("host.leaders.rate_placeholder", { rate: rateText(shopRate()) });
  setText($("#settlement-note"), t("host.settlement.note", { days: shop.after_sale_days }));
}

function shopRate() {
  return shop.commission_bps ?? shop.default_commission_bps;
}

onSubmit($("#shop-rate-form"), async ({ rate }) => {
  setText($("#leader-error"), "");
  const bps = toBps(rate);
  if (Number.isNaN(bps)) throw new Error(t("host.leaders.bad_rate"));
  shop = await call("/api/shop", { method: "PATCH", body: { commission_bps: bps } });
  $("#shop-rate-form input[name=rate]").blur();
  renderShop();
  await loadLeaders();
}, errorTo($("#leader-error")));

// -- leaders ---------------------------------------------------------------------------------------------

const LEADER_FIGURES = [
  ["customers", "host.leaders.fig.customers", String],
  ["orders_paid", "host.leaders.fig.orders_paid", String],
  ["gmv", "host.leaders.fig.gmv", money],
  ["accrued", "host.leaders.fig.accrued", money],
  ["clawed_back", "host.leaders.fig.clawed_back", money],
  ["paid_out", "host.leaders.fig.paid_out", money],
  ["owed", "host.leaders.fig.owed", money],
  ["payable", "host.leaders.fig.payable", money],
];

async function loadLeaders() {
  const leaders = await call("/api/leaders");
  fill($("#leader-list"), leaders.length
    ? leaders.map(leaderCard)
    : [h("p", { class: "muted empty" }, t("host.leaders.none"))]);
}

function leaderCard(leader) {
  const name = h("input", { name: "name", value: leader.name, maxlength: 64, required: true });
  const rate = h("input", {
    name: "rate", inputmode: "decimal", maxlength: 6,
    value: leader.commission_bps === null ? "" : String(leader.commission_bps / 100),
    placeholder: shop ? t("host.leaders.rate_placeholder", { rate: rateText(shopRate()) }) : "",
  });
  const error = h("p", { class: "error", role: "alert" });
  const edit = h("form", { class: "inline edit" },
    h("label", {}, h("span", {}, t("host.leaders.name")), " ", name),
    h("label", {}, h("span", {}, t("host.leaders.rate")), " ", rate),
    h("button", { type: "submit", class: "secondary small" }, t("host.leaders.save")));
  onSubmit(edit, async () => {
    setText(error, "");
    const bps = toBps(rate.value);
    if (Number.isNaN(bps)) throw new Error(t("host.leaders.bad_rate"));
    const body = {};
    if (name.value.trim() && name.value.trim() !== leader.name) body.name = name.value.trim();
    if (bps !== leader.commission_bps) body.commission_bps = bps;
    if (!Object.keys(body).length) return;
    await patchLeader(leader, body);
  }, errorTo(error));
  const suspend = h("button", {
    type: "button", class: leader.suspended ? "secondary small suspend" : "danger small suspend",
    onclick: () => {
      suspend.disabled = true;
      patchLeader(leader, { suspended: !leader.suspended }).catch(errorTo(error)).finally(() => (suspend.disabled = false));
    },
  }, t(leader.suspended ? "host.leaders.resume" : "host.leaders.suspend"));

  return h("article", { class: `leader-card${leader.suspended ? " suspended" : ""}`, dataset: { leaderId: leader.id } },
    h("header", {},
      h("strong", { class: "name" }, leader.name),
      leader.phone_masked ? h("span", { class: "muted phone" }, leader.phone_masked) : null,
      h("span", { class: "badge rate" }, leader.commission_bps !== null
        ? rateText(leader.commission_bps)
        : t("host.leaders.rate_shop", { rate: shop ? rateText(shopRate()) : "" })),
      leader.suspended ? h("span", { class: "badge suspended" }, t("host.leaders.suspended")) : null),
    h("div", { class: "code" },
      h("a", { href: leader.qr_url, target: "_blank", rel: "noopener", class: "qr" },
        h("img", { src: leader.qr_url, alt: t("host.leaders.qr_alt", { name: leader.name }), width: 88, height: 88 })),
      h("div", { class: "stack" },
        h("span", { class: "muted" }, t("host.leaders.code", { code: leader.code })),
        copyLine(leader.url))),
    h("div", { class: "tiles small" }, LEADER_FIGURES.map(([key, label, format]) =>
      h("div", { class: `tile ${key}` }, h("span", {}, t(label)), h("strong", {}, format(leader[key]))))),
    h("div", { class: "row" }, edit, suspend),
    error);
}

async function patchLeader(leader, body) {
  const changed = await call(`/api/leaders/${encodeURIComponent(leader.id)}`, { method: "PATCH", body });
  const node = $(`#leader-list article[data-leader-id="${CSS.escape(leader.id)}"]`);
  if (node) node.replaceWith(leaderCard(changed));
}

/** The "add a leader" form's customers to pick from: the newest who are not leaders yet. */
async function loadCustomerChoices() {
  const customers = await call(`/api/customers?limit=${PICK_LIMIT}`);
  const select = $("#leader-form select[name=customer_id]");
  const chosen = select.value;
  fill(select, h("option", { value: "" }, t("host.leaders.by_phone")),
    customers.filter((c) => !c.is_leader).map((c) =>
      h("option", { value: c.id }, c.phone_masked ? `${c.name} · ${c.phone_masked}` : c.name)));
  select.value = chosen;
  if (select.value !== chosen) select.value = "";
}

onSubmit($("#leader-form"), async ({ phone, customer_id: customerId, name, rate }, form) => {
  setText($("#leader-error"), "");
  const body = {};
  if (customerId) body.customer_id = customerId;
  else if (phone && phone.trim()) body.phone = phone.trim();
  else throw new Error(t("host.leaders.who_missing"));
  if (name && name.trim()) body.name = name.trim();
  const bps = toBps(rate);
  if (Number.isNaN(bps)) throw new Error(t("host.leaders.bad_rate"));
  if (bps !== null) body.commission_bps = bps;
  await call("/api/leaders", { method: "POST", body });
  form.reset();
  await Promise.all([loadLeaders(), loadCustomerChoices()]);
}, errorTo($("#leader-error")));

$("#leaders-refresh").addEventListener("click", () => loaders.leaders());

// -- settlement ------------------------------------------------------------------------------------------

/** The period picked, as the report's query: [from, to) in ISO times, the ends the pick leaves open absent. */
function period() {
  const form = $("#period-form");
  const now = new Date();
  const monthStart = (offset) => new Date(now.getFullYear(), now.getMonth() + offset, 1);
  const day = (value, plus = 0) => {
    const [y, m, d] = value.split("-").map(Number);
    return new Date(y, m - 1, d + plus);
  };
  const pick = form.elements.period.value;
  if (pick === "this_month") return { from: monthStart(0) };
  if (pick === "last_month") return { from: monthStart(-1), to: monthStart(0) };
  if (pick === "custom") {
    const { from, to } = form.elements;
    return { from: from.value ? day(from.value) : null, to: to.value ? day(to.value, 1) : null };
  }
  return {};
}

async function loadReport() {
  const { from, to } = period();
  const query = new URLSearchParams();
  if (from) query.set("from", from.toISOString());
  if (to) query.set("to", to.toISOString());
  const load = ++reportLoad;
  const loadedAt = new Date();
  const lines = await call(`/api/commissions?${query}`);
  if (load !== reportLoad) return;
  // A payout pays what was payable when the report was loaded (and, for a past period, up to its end):
  // the same instant for every click on this report, so a double click or a retry is the same payout.
  const upTo = to && to < loadedAt ? to : loadedAt;
  report = { upTo: upTo.toISOString(), query: query.toString() };
  setText($("#report-as-of"), t("host.settlement.as_of", { time: when(report.upTo) }));
  fill($("#report-list"), lines.length
    ? lines.map(reportLine)
    : [h("tr", {}, h("td", { colspan: 10, class: "muted" }, t("host.settlement.none")))]);
}

function reportLine(line) {
  const pay = line.payable > 0
    ? h("button", { type: "button", class: "small pay", onclick: () => payOut(line, pay) },
      t("host.settlement.pay", { amount: money(line.payable) }))
    : null;
  return h("tr", { dataset: { promoterId: line.promoter_id } },
    h("td", {}, h("span", { class: "name" }, line.name), " ",
      h("span", { class: `badge kind ${line.kind}` }, kindText(line.kind))),
    h("td", { class: "orders_paid" }, line.orders_paid),
    h("td", { class: "gmv" }, money(line.gmv)),
    h("td", { class: "accrued" }, money(line.accrued)),
    h("td", { class: "clawed_back" }, money(line.clawed_back)),
    h("td", { class: "net" }, money(line.net)),
    h("td", { class: "paid_out" }, money(line.paid_out)),
    h("td", { class: "owed" }, money(line.owed)),
    h("td", { class: "payable" }, money(line.payable)),
    h("td", { class: "pay" }, pay));
}

async function payOut(line, button) {
  if (button.disabled) return;
  button.disabled = true; // one request per click; the same up_to makes any repeat the same payout anyway
  setText($("#settlement-error"), "");
  try {
    const response = await call("/api/payouts", {
      method: "POST", raw: true, body: { promoter_id: line.promoter_id, up_to: report.upTo },
    });
    const payout = await response.json();
    const words = { name: payout.name || line.name, amount: money(payout.amount), rows: payout.rows };
    const result = $("#payout-result");
    setText(result, t(response.status === 201 ? "host.settlement.paid" : "host.settlement.paid_already", words));
    show(result);
    await Promise.all([loadReport(), loadPayouts()]);
  } catch (error) {
    button.disabled = false;
    setText($("#settlement-error"), describe(error));
    // Paid meanwhile (another device), say: what is on screen is out of date.
    if (error instanceof ApiError && error.status === 409) {
      await Promise.all([loadReport(), loadPayouts()]).catch(() => {});
    }
  }
}

async function loadPayouts() {
  const payouts = await call("/api/payouts");
  fill($("#payout-list"), payouts.length
    ? payouts.map((p) => h("tr", { dataset: { payoutId: p.id } },
      h("td", { class: "muted" }, when(p.created_at)),
      h("td", {}, h("span", { class: "name" }, p.name || p.promoter_id), " ",
        h("span", { class: `badge kind ${p.kind}` }, kindText(p.kind))),
      h("td", { class: "amount" }, money(p.amount)),
      h("td", {}, p.rows),
      h("td", { class: "muted" }, when(p.up_to))))
    : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("host.settlement.no_payouts")))]);
}

$("#period-form select[name=period]").addEventListener("change", (event) => {
  const custom = event.target.value === "custom";
  for (const label of document.querySelectorAll("#period-form .period-custom")) show(label, custom);
  if (!custom) loadReport().catch(errorTo($("#settlement-error")));
});
onSubmit($("#period-form"), async () => {
  setText($("#settlement-error"), "");
  show($("#payout-result"), false);
  await loadReport();
}, errorTo($("#settlement-error")));
$("#payouts-refresh").addEventListener("click", () => loadPayouts().catch(errorTo($("#settlement-error"))));
$("#report-csv").addEventListener("click", () => {
  const query = new URLSearchParams(report.query);
  query.set("format", "csv");
  saveCsv(`/api/commissions?${query}`, "commissions.csv").catch(errorTo($("#settlement-error")));
});
$("#payouts-csv").addEventListener("click", () =>
  saveCsv("/api/payouts?format=csv", "payouts.csv").catch(errorTo($("#settlement-error"))));

// -- customers -------------------------------------------------------------------------------------------

function customersPage(before) {
  const query = new URLSearchParams({ limit: String(CUSTOMERS_PAGE) });
  if (before) query.set("before", before);
  return call(`/api/customers?${query}`);
}

function customerRow(customer) {
  const entry = { customer };
  const leaderCell = h("td", { class: "leader" });
  const promoter = customer.promoter_name
    ? h("td", {}, h("span", { class: "promoter" }, customer.promoter_name),
      customer.leader_id ? [" ", h("span", { class: "badge kind leader" }, t("host.settlement.kind.leader"))] : null)
    : h("td", {}, h("span", { class: "muted" }, t("host.customers.no_promoter")));
  const row = h("tr", { dataset: { customerId: customer.id } },
    h("td", {}, h("button", { type: "button", class: "link name", onclick: () => openCustomer(customer.id) }, customer.name)),
    h("td", { class: "muted" }, customer.phone_masked || ""),
    h("td", { class: "muted" }, when(customer.first_seen)),
    h("td", { class: "muted" }, when(customer.last_seen)),
    h("td", { class: "orders_paid" }, customer.orders_paid),
    h("td", { class: "spent" }, money(customer.spent)),
    promoter,
    leaderCell);
  entry.update = (next) => {
    entry.customer = next;
    if (next.is_leader) {
      fill(leaderCell, h("span", { class: "badge kind leader" }, t("host.customers.is_leader")));
      return;
    }
    const make = h("button", { type: "button", class: "secondary small make-leader" }, t("host.customers.make_leader"));
    make.addEventListener("click", async () => {
      make.disabled = true;
      setText($("#customer-error"), "");
      try {
        await call("/api/leaders", { method: "POST", body: { customer_id: next.id } });
        entry.update({ ...next, is_leader: true });
      } catch (error) {
        make.disabled = false;
        setText($("#customer-error"), describe(error));
      }
    });
    fill(leaderCell, make);
  };
  entry.update(customer);
  customersSeen.set(customer.id, entry);
  return row;
}

function showMoreCustomers(page) {
  const more = $("#customers-more");
  more.dataset.before = page.length ? page[page.length - 1].id : "";
  show(more, page.length === CUSTOMERS_PAGE);
}

async function loadCustomers() {
  const load = ++customersLoad;
  const customers = await customersPage();
  if (load !== customersLoad) return;
  customersSeen = new Map();
  fill($("#customer-list"), customers.length
    ? customers.map(customerRow)
    : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, t("host.customers.none")))]);
  showMoreCustomers(customers);
}

$("#customers-more").addEventListener("click", async () => {
  const more = $("#customers-more");
  const load = customersLoad;
  more.disabled = true; // one page at a time: a double click must not append the same page twice
  try {
    const customers = await customersPage(more.dataset.before);
    if (load !== customersLoad) return;
    $("#customer-list").append(...customers.filter((c) => !customersSeen.has(c.id)).map(customerRow));
    showMoreCustomers(customers);
  } catch (error) {
    setText($("#customer-error"), describe(error));
  } finally {
    more.disabled = false;
  }
});

async function openCustomer(customerId) {
  setText($("#customer-error"), "");
  try {
    const customer = await call(`/api/customers/${encodeURIComponent(customerId)}`);
    setText($("#customer-name"), customer.name);
    setText($("#customer-meta"), t("host.customers.meta", {
      phone: customer.phone_masked || "—",
      orders: customer.orders_paid,
      spent: money(customer.spent),
      promoter: customer.promoter_name || t("host.customers.no_promoter"),
      referred: customer.referred_customers,
    }));
    fill($("#customer-orders"), customer.orders.length
      ? customer.orders.map((o) => h("tr", { dataset: { orderId: o.id } },
        h("td", { class: "muted" }, when(o.created_at)),
        h("td", { class: "room" }, o.room_title),
        h("td", { class: "product" }, o.product_name),
        h("td", {}, o.quantity),
        h("td", { class: "amount" }, money(o.amount)),
        h("td", { class: "refunded" }, o.refunded_amount ? money(o.refunded_amount) : ""),
        h("td", { class: `status ${o.status}` }, t(`order.status.${o.status}`))))
      : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, t("host.customers.no_orders")))]);
    show($("#customer-page"));
    $("#customer-page").scrollIntoView({ block: "nearest" });
  } catch (error) {
    setText($("#customer-error"), describe(error));
  }
}

$("#customer-close").addEventListener("click", () => show($("#customer-page"), false));
$("#customers-refresh").addEventListener("click", () => loaders.customers());
$("#customers-csv").addEventListener("click", () =>
  saveCsv("/api/customers?format=csv", "customers.csv").catch(errorTo($("#customer-error"))));
