// The host console's 售后 tab (SPEC §10): the buyers' after-sale requests, newest first — which order (its
// amount, what was refunded already, its status, where it ships), 仅退款 or 退货退款, the buyer's reason and
// the amount they ask — each with 同意 (an amount, all that is left unless changed; whether the units go
// back on sale; a note) or 拒绝 (a reason, which the buyer reads). Below, the refunds at the payment
// providers: every refund is sent until the provider takes it, and one the provider refused or could not
// be reached for is shown (highlighted, with its attempts and last error) with 重试, which sends it now.
// Money is integer minor units (money() of api.js); all user text is rendered with textContent (dom.js).

import { describe, money, toMinor } from "./api.js";
import { $, fill, h, setText, show } from "./dom.js";
import { registerTab } from "./host-leaders.js";
import { t } from "./i18n.js";

let call = null; // host.js's authenticated call (a 401 ends the session)
let onOrderChanged = () => {}; // host.js redraws the open show's orders
let requestsLoad = 0; // bumped by each (re)load: a late answer of an older one is dropped
let refundsLoad = 0;

const KIND = {
  refund: "after_sale.kind.refund",
  return_refund: "after_sale.kind.return_refund",
  order: "host.refunds.kind.order",
  payment: "host.refunds.kind.payment",
};
const REQUEST_STATUS = {
  requested: "host.after_sale.status.requested",
  approved: "host.after_sale.status.approved",
  rejected: "host.after_sale.status.rejected",
  withdrawn: "host.after_sale.status.withdrawn",
};
const REFUND_STATUS = {
  pending: "host.refunds.status.pending",
  processing: "host.refunds.status.processing",
  succeeded: "host.refunds.status.succeeded",
  failed: "host.refunds.status.failed",
};
const ORDER_STATUS = {
  paid: "order.status.paid",
  shipped: "order.status.shipped",
  delivered: "order.status.delivered",
  completed: "order.status.completed",
  refunded: "order.status.refunded",
};

const errorTo = (node) => (error) => setText(node, describe(error));

// -- the payment providers the shop offers (收款方式) --------------------------------------------------------
// Every provider this server is configured for, as a checkbox, in the order buyers see them; checked: the
// ones the shop offers now (all of them while the shop has not chosen). Saving sends the checked ones.

const PROVIDER_NAME = {
  wechat: "checkout.provider.wechat",
  alipay: "checkout.provider.alipay",
  stripe: "checkout.provider.stripe",
  dev: "checkout.provider.dev",
};

async function loadProviders() {
  renderProviders(await call("/api/shop"));
}

function renderProviders(shop) {
  const offered = new Set(shop.offered_providers);
  fill($("#provider-choices"), shop.server_providers.map((name) =>
    h("label", { class: "check provider" },
      h("input", { type: "checkbox", name: "provider", value: name, checked: offered.has(name) }),
      " ", t(PROVIDER_NAME[name] ?? name))));
  if (!shop.server_providers.length) setText($("#provider-choices"), t("host.providers.none"));
}

$("#provider-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setText($("#provider-error"), "");
  const chosen = [...$("#provider-choices").querySelectorAll("input:checked")].map((box) => box.value);
  if (!chosen.length) return setText($("#provider-error"), t("host.providers.pick_one"));
  try {
    renderProviders(await call("/api/shop", { method: "PATCH", body: { payment_providers: chosen } }));
  } catch (error) {
    setText($("#provider-error"), describe(error));
  }
});

function when(iso) {
  return iso ? new Date(iso).toLocaleString(document.documentElement.lang) : "";
}

export function initAfterSale(authenticatedCall, { orderChanged }) {
  call = authenticatedCall;
  onOrderChanged = orderChanged;
  registerTab("aftersale", () => Promise.all([
    loadProviders().catch(errorTo($("#provider-error"))),
    loadRequests().catch(errorTo($("#after-sale-error"))),
    loadRefunds().catch(errorTo($("#refund-error"))),
  ]));
}

/** The console closed (signed out): forget what the tab showed. */
export function resetAfterSale() {
  requestsLoad++;
  refundsLoad++;
  fill($("#after-sale-list"));
  fill($("#refund-list"));
}

// -- requests --------------------------------------------------------------------------------------------

async function loadRequests() {
  const load = ++requestsLoad;
  setText($("#after-sale-error"), "");
  const status = $("#after-sale-filter select[name=status]").value;
  const requests = await call(`/api/after-sales?${new URLSearchParams({ status })}`);
  if (load !== requestsLoad) return;
  fill($("#after-sale-list"), requests.map(requestRow));
  show($("#after-sale-none"), requests.length === 0);
}

function orderCell(order) {
  if (!order) return [];
  const left = order.amount - (order.refunded_amount || 0);
  return [
    h("span", { class: "order-id muted" }, order.id), h("br"),
    h("span", { class: "order-amount" }, money(order.amount)), " · ",
    h("span", { class: `status ${order.status}` }, ORDER_STATUS[order.status] ? t(ORDER_STATUS[order.status]) : order.status),
    order.refunded_amount > 0 ? [" · ", h("span", { class: "muted" }, t("host.after_sale.left", { amount: money(left) }))] : null,
  ];
}

function addressCell(address) {
  if (!address) return [h("span", { class: "muted" }, t("host.order.no_address"))];
  return [address.name, " ", address.phone, h("br"), address.region, " ", address.line];
}

function requestRow(request) {
  const order = request.order || null;
  const left = order ? order.amount - (order.refunded_amount || 0) : null;
  const decision = h("td", { class: "decision" });
  const orderBox = h("td", { class: "order" }, orderCell(order));
  const row = h("tr", { dataset: { afterSaleId: request.id, orderId: request.order_id } },
    h("td", { class: "muted" }, when(request.created_at)),
    orderBox,
    h("td", { class: "kind" }, KIND[request.kind] ? t(KIND[request.kind]) : request.kind),
    h("td", { class: "reason" }, request.reason),
    h("td", { class: "asked" }, request.amount ? money(request.amount) : t("host.after_sale.all_left", { amount: left === null ? "" : money(left) })),
    h("td", { class: "address" }, addressCell(order && order.address)),
    decision);
  drawDecision(request, decision, left, orderBox);
  return row;
}

function drawDecision(request, cell, left, orderBox) {
  fill(cell);
  if (request.status !== "requested") {
    const refund = request.refund;
    cell.append(h("span", { class: `after-sale-state ${request.status}` }, t(REQUEST_STATUS[request.status] || request.status, {
      amount: refund ? money(refund.amount) : "",
      note: request.host_note || "",
    })));
    return;
  }
  const error = h("p", { class: "error", role: "alert" });
  const amount = h("input", {
    name: "amount",
    inputmode: "decimal",
    maxlength: 12,
    value: ((request.amount ?? left ?? 0) / 100).toFixed(2),
  });
  const restock = h("input", { type: "checkbox", name: "restock" });
  const note = h("input", { name: "note", maxlength: 500, placeholder: t("host.after_sale.note_placeholder") });
  const approve = h("button", { type: "submit", class: "small approve" }, t("host.after_sale.approve"));
  const approveForm = h("form", { class: "inline tight approve-form" },
    h("label", {}, h("span", {}, t("host.after_sale.amount")), " ", amount),
    h("label", { class: "restock" }, restock, " ", t("host.order.restock")),
    note, approve);
  const reason = h("input", { name: "reason", maxlength: 500, required: true, placeholder: t("host.after_sale.reject_placeholder") });
  const reject = h("button", { type: "submit", class: "danger small reject" }, t("host.after_sale.reject"));
  const rejectForm = h("form", { class: "inline tight reject-form" }, reason, reject);

  approveForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    setText(error, "");
    const minor = toMinor(amount.value);
    if (!Number.isFinite(minor) || minor < 1) return setText(error, t("after_sale.error.invalid_amount"));
    const body = { amount: minor, restock: restock.checked };
    if (note.value.trim()) body.note = note.value.trim();
    approve.disabled = true;
    try {
      const decided = await call(`/api/after-sales/${encodeURIComponent(request.id)}/approve`, { method: "POST", body });
      drawDecision({ ...request, ...decided }, cell, left, orderBox);
      onOrderChanged(request.order_id);
      // The order now shows the refund (refunded, or what is left of it).
      call(`/api/orders/${encodeURIComponent(request.order_id)}`)
        .then((order) => fill(orderBox, orderCell(order)))
        .catch(() => {});
      loadRefunds().catch(errorTo($("#refund-error")));
    } catch (e) {
      setText(error, describe(e));
    } finally {
      approve.disabled = false;
    }
  });
  rejectForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    setText(error, "");
    if (!reason.value.trim()) return;
    reject.disabled = true;
    try {
      const decided = await call(`/api/after-sales/${encodeURIComponent(request.id)}/reject`, {
        method: "POST",
        body: { reason: reason.value.trim() },
      });
      drawDecision({ ...request, ...decided }, cell, left, orderBox);
    } catch (e) {
      setText(error, describe(e));
    } finally {
      reject.disabled = false;
    }
  });
  cell.append(approveForm, rejectForm, error);
}

$("#after-sale-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadRequests().catch(errorTo($("#after-sale-error")));
});
$("#after-sale-filter select[name=status]").addEventListener("change", () =>
  loadRequests().catch(errorTo($("#after-sale-error"))));

// -- refunds at the providers ----------------------------------------------------------------------------

async function loadRefunds() {
  const load = ++refundsLoad;
  setText($("#refund-error"), "");
  const status = $("#refund-filter select[name=status]").value;
  const query = status ? `?${new URLSearchParams({ status })}` : "";
  const refunds = await call(`/api/refunds${query}`);
  if (load !== refundsLoad) return;
  fill($("#refund-list"), refunds.map(refundRow));
  show($("#refund-none"), refunds.length === 0);
}

function refundRow(refund) {
  // A refund the provider has not taken yet after a try: it failed (refused, unreachable) and waits to be
  // sent again; the host sees it and may send it now.
  const failing = refund.status !== "succeeded" && Boolean(refund.last_error);
  const action = h("td", { class: "action" });
  if (refund.status === "pending") {
    const retry = h("button", { type: "button", class: "secondary small retry" }, t("host.refunds.retry"));
    retry.addEventListener("click", async () => {
      retry.disabled = true;
      setText($("#refund-error"), "");
      try {
        await call(`/api/refunds/${encodeURIComponent(refund.id)}/retry`, { method: "POST" });
        await loadRefunds();
      } catch (e) {
        setText($("#refund-error"), describe(e));
      } finally {
        retry.disabled = false;
      }
    });
    action.append(retry);
  }
  return h("tr", { class: failing ? "refund failing" : "refund", dataset: { refundId: refund.id, orderId: refund.order_id } },
    h("td", { class: "muted" }, when(refund.created_at)),
    h("td", { class: "order-id" }, refund.order_id),
    h("td", {}, KIND[refund.kind] ? t(KIND[refund.kind]) : refund.kind),
    h("td", { class: "amount" }, money(refund.amount)),
    h("td", { class: `refund-status ${refund.status}` }, REFUND_STATUS[refund.status] ? t(REFUND_STATUS[refund.status]) : refund.status,
      refund.status === "pending" && refund.next_try_at ? [h("br"), h("span", { class: "muted" }, t("host.refunds.next_try", { time: when(refund.next_try_at) }))] : null),
    h("td", { class: "attempts" }, refund.attempts),
    h("td", { class: "last-error" }, refund.last_error || ""),
    action);
}

$("#refund-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadRefunds().catch(errorTo($("#refund-error")));
});
$("#refund-filter select[name=status]").addEventListener("change", () =>
  loadRefunds().catch(errorTo($("#refund-error"))));
