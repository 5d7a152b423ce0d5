// A customer's own orders across every show of a shop (GET /api/me): the viewer page's 我的订单 and the
// leader page draw them the same way. The shop's cookie says who; `?shop=` names which shop's cookie.

import { api, money } from "./api.js";
import { h } from "./dom.js";
import { lang, t } from "./i18n.js";

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

/** One order as a list line: show, product × quantity · amount, status, refunds, when paid. */
export function orderItem(order) {
  const refunded = order.refunded_amount > 0;
  return h("li", { dataset: { orderId: order.id } },
    h("span", { class: "title" }, t("mine.line", {
      product: order.product_name,
      quantity: order.quantity,
      amount: money(order.amount),
    })),
    h("span", { class: `status ${order.status}` }, t(`order.status.${order.status}`)),
    refunded ? h("span", { class: "refunded muted" }, t("mine.refunded", { amount: money(order.refunded_amount) })) : null,
    h("span", { class: "desc muted" },
      h("span", { class: "room" }, order.room_title), " · ",
      order.paid_at ? t("mine.paid_at", { time: when(order.paid_at) }) : t("mine.ordered_at", { time: when(order.created_at) })));
}
