// A buyer's own orders, drawn the same way wherever they are shown: the viewer page's orders of this show
// (its viewer token) and its 我的订单 across every show of the shop (GET /api/me, the shop's cookie with
// `?shop=`), and the leader page's list. Each order says where it is in words — 待支付, 已支付, 已发货 with
// the carrier and tracking number, 已送达, 已完成, 已退款 or 部分退款 — and, on the viewer page, lets the
// buyer act on it (SPEC §10): 确认收货 once it is shipped or delivered, 申请售后 (仅退款 / 退货退款, a
// reason, an amount or all that is left) while it is sold, and follow the request: 处理中 (with 撤销),
// 已同意 — 退款 x, 已拒绝 — the host's reason, 已撤销. The order's `order` frames (and a refund's) redraw it.

import { api, ApiError, describe, money, toMinor } from "./api.js";
import { h, setText, show } from "./dom.js";
import { lang, t } from "./i18n.js";

/** Statuses of an order that was paid for and not (wholly) refunded: the after-sale window's. */
export const SOLD = new Set(["paid", "shipped", "delivered", "completed"]);
const STATUS = {
  reserved: "order.status.reserved",
  paid: "order.status.paid",
  shipped: "order.status.shipped",
  delivered: "order.status.delivered",
  completed: "order.status.completed",
  expired: "order.status.expired",
  cancelled: "order.status.cancelled",
  refunded: "order.status.refunded",
};
const KIND = { refund: "after_sale.kind.refund", return_refund: "after_sale.kind.return_refund" };
/** A request's state as the buyer reads it (its refund's amount and the host's note filled in). */
const REQUEST = {
  requested: "after_sale.status.requested",
  approved: "after_sale.status.approved",
  rejected: "after_sale.status.rejected",
  withdrawn: "after_sale.status.withdrawn",
};
const REQUEST_POLL_MS = 15_000;
const ERRORS = {
  after_sale_refused: "after_sale.error.refused",
  after_sale_open: "after_sale.error.open",
  invalid_refund: "after_sale.error.invalid_amount",
};

/** "2024年5月3日 20:00" in the page's language, or "" for no time. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
}

/** The signed-in customer's own page of this shop (`/api/me?shop=HOST`); ApiError 401 when signed out. */
export function fetchMe(hostId, suffix = "") {
  return api(`/api/me${suffix}?${new URLSearchParams({ shop: hostId })}`);
}

/** The order's status in words. */
export function statusText(order) {
  return STATUS[order.status] ? t(STATUS[order.status]) : order.status;
}

/** What the status does not say: the parcel (carrier, tracking number, when), a partial refund. */
export function detailText(order) {
  const parts = [];
  if (order.status === "shipped" || order.status === "delivered" || order.status === "completed") {
    if (order.tracking_number) {
      parts.push(order.carrier
        ? t("order.parcel", { carrier: order.carrier, tracking: order.tracking_number })
        : t("order.parcel_tracking", { tracking: order.tracking_number }));
    }
    if (order.status === "delivered" && order.delivered_at) parts.push(t("order.delivered_at", { time: when(order.delivered_at) }));
    if (order.status === "completed" && order.completed_at) parts.push(t("order.completed_at", { time: when(order.completed_at) }));
  }
  if (order.refunded_amount > 0) {
    parts.push(order.status === "refunded"
      ? t("order.refunded_amount", { amount: money(order.refunded_amount, order.currency) })
      : t("order.partly_refunded", { amount: money(order.refunded_amount, order.currency) }));
  }
  return parts.join(" · ");
}

/** One order as a plain list line (the leader page): show, product × quantity · amount, status, when. */
export function orderItem(order) {
  return h("li", { dataset: { orderId: order.id } },
    h("span", { class: "title" }, t("mine.line", {
      product: order.product_name,
      quantity: order.quantity,
      amount: money(order.amount),
    })),
    h("span", { class: `status ${order.status}` }, statusText(order)),
    detailText(order) ? h("span", { class: "detail muted" }, detailText(order)) : null,
    h("span", { class: "desc muted" },
      h("span", { class: "room" }, order.room_title), " · ",
      order.paid_at ? t("mine.paid_at", { time: when(order.paid_at) }) : t("mine.ordered_at", { time: when(order.created_at) })));
}

function errorText(error) {
  const key = error instanceof ApiError && ERRORS[error.code];
  return key ? t(key) : describe(error);
}

/**
 * One of the buyer's orders with what they can do about it: {node, order, update(order), reload()}.
 * `auth`: `{token}` (the viewer's, for an order of this show) or `{shop}` (the shop's cookie, 我的订单).
 * `title(order)`: the order's first line; `extra`: nodes the caller adds (the show's pay / cancel).
 */
export function buyerOrder(order, { auth, title, extra = [] }) {
  const query = auth.shop ? `?${new URLSearchParams({ shop: auth.shop })}` : "";
  const call = (suffix, options = {}) =>
    api(`/api/orders/${encodeURIComponent(entry.order.id)}${suffix}${query}`, { token: auth.token, ...options });

  const heading = h("span", { class: "title" });
  const status = h("span", { class: "status" });
  const detail = h("span", { class: "detail muted" });
  const receive = h("button", { type: "button", class: "small receive" }, t("order.receive"));
  const ask = h("button", { type: "button", class: "secondary small after-sale-open" }, t("after_sale.ask"));
  const request = h("span", { class: "after-sale-status" });
  const withdraw = h("button", { type: "button", class: "secondary small after-sale-withdraw" }, t("after_sale.withdraw"));
  const error = h("p", { class: "error order-error", role: "alert" });

  const kind = h("select", { name: "kind" },
    h("option", { value: "refund" }, t(KIND.refund)),
    h("option", { value: "return_refund" }, t(KIND.return_refund)));
  const reason = h("input", { name: "reason", required: true, maxlength: 500, placeholder: t("after_sale.reason_placeholder") });
  const amount = h("input", { name: "amount", inputmode: "decimal", maxlength: 12, placeholder: t("after_sale.amount_placeholder") });
  const form = h("form", { class: "after-sale-form inline", hidden: true },
    h("label", {}, h("span", {}, t("after_sale.kind")), " ", kind),
    h("label", { class: "wide" }, h("span", {}, t("after_sale.reason")), " ", reason),
    h("label", {}, h("span", {}, t("after_sale.amount")), " ", amount),
    h("button", { type: "submit", class: "small" }, t("after_sale.submit")),
    h("button", { type: "button", class: "secondary small", onclick: () => show(form, false) }, t("after_sale.cancel")));

  const entry = { order, requests: [], loaded: false };
  entry.node = h("li", { class: "buyer-order", dataset: { orderId: order.id } },
    heading, status, detail, ...extra, receive, ask, request, withdraw, form, error);

  const latest = () => entry.requests[entry.requests.length - 1] || null;

  function draw() {
    const o = entry.order;
    setText(heading, title(o));
    setText(status, statusText(o));
    status.className = `status ${o.status}`;
    setText(detail, detailText(o));
    show(detail, Boolean(detail.textContent));
    show(receive, o.status === "shipped" || o.status === "delivered");
    const last = latest();
    const open = last && last.status === "requested";
    const left = o.amount - (o.refunded_amount || 0);
    show(ask, entry.loaded && SOLD.has(o.status) && !open && left > 0 && form.hidden);
    kind.querySelector("option[value=return_refund]").disabled = o.status === "paid";
    if (o.status === "paid") kind.value = "refund";
    amount.placeholder = t("after_sale.amount_placeholder", { amount: money(left, o.currency) });
    if (!last) {
      setText(request, "");
    } else {
      const refunded = last.refund ? last.refund.amount : last.amount;
      setText(request, t(REQUEST[last.status] || last.status, {
        kind: t(KIND[last.kind] || last.kind),
        amount: money(refunded ?? left, o.currency),
        note: last.host_note || "",
      }));
      request.className = `after-sale-status ${last.status}`;
    }
    show(request, Boolean(last));
    show(withdraw, Boolean(open));
    if (!SOLD.has(o.status)) show(form, false);
  }

  // A host's decision on a request that moves no money (a rejection) sends no `order` frame: while one is
  // open, ask now and then.
  let watching = null;
  function watchOpenRequest() {
    const last = latest();
    const open = Boolean(last && last.status === "requested");
    if (open && !watching) {
      watching = setInterval(() => {
        if (!entry.node.isConnected) {
          clearInterval(watching);
          watching = null;
          return;
        }
        entry.reload();
      }, REQUEST_POLL_MS);
    } else if (!open && watching) {
      clearInterval(watching);
      watching = null;
    }
  }

  entry.reload = async () => {
    const o = entry.order;
    if (!SOLD.has(o.status) && !(o.status === "refunded")) {
      entry.loaded = true;
      return draw();
    }
    try {
      entry.requests = await call("/after-sales");
      entry.loaded = true;
    } catch {
      // not reachable now: the request line stays as it was, the next change asks again
    }
    draw();
    watchOpenRequest();
  };

  entry.update = (next) => {
    const before = entry.order;
    entry.order = next;
    draw();
    // A decision on a request shows in the order (a refund, a status): ask for the requests again.
    if (before.status !== next.status || before.refunded_amount !== next.refunded_amount || !entry.loaded) entry.reload();
  };

  const act = (promise) => {
    setText(error, "");
    return promise.catch((e) => setText(error, errorText(e)));
  };

  receive.addEventListener("click", () => act((async () => {
    receive.disabled = true;
    try {
      entry.update(await call("/receive", { method: "POST" }));
    } finally {
      receive.disabled = false;
    }
  })()));

  ask.addEventListener("click", () => {
    setText(error, "");
    show(form);
    show(ask, false);
    reason.focus();
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act((async () => {
      const body = { kind: kind.value, reason: reason.value.trim() };
      const text = amount.value.trim();
      if (text) {
        const minor = toMinor(text);
        if (!Number.isFinite(minor) || minor < 1) throw new Error(t("after_sale.error.invalid_amount"));
        body.amount = minor;
      }
      const made = await call("/after-sale", { method: "POST", body });
      entry.requests = [...entry.requests, made];
      form.reset();
      show(form, false);
      draw();
      watchOpenRequest();
    })());
  });

  withdraw.addEventListener("click", () => act((async () => {
    const last = latest();
    if (!last) return;
    const withdrawn = await api(`/api/after-sales/${encodeURIComponent(last.id)}/withdraw${query}`, {
      method: "POST",
      token: auth.token,
    });
    entry.requests = [...entry.requests.slice(0, -1), withdrawn];
    draw();
    watchOpenRequest();
  })()));

  draw();
  entry.reload();
  return entry;
}
