// The leader page (/l/{host}): a shop's 团长 signs in with their phone and a one-time code (the shop's
// sign-in; the answer sets the shop's HttpOnly cookie, which signs every later call in), then sees their
// one link to every show and its QR code, the next show, their earnings, the customers bound to them and
// their commission rows. A customer who is not a leader is told so and sees what their own share links
// earned and their orders. Everything comes from /api/me (and /api/me/customers, /api/me/commissions) with
// ?shop=HOST: the cookie says who, so the page can only ever show its own person's data. All user text is
// rendered with textContent (dom.js).

import { api, ApiError, describe, money } from "./api.js";
import { $, copyText, fill, h, onSubmit, setText, show } from "./dom.js";
import { languageSwitch, pageConfig, t } from "./i18n.js";
import { codeRequest, hideDevCode } from "./code-sign-in.js";
import { fetchMe, orderItem, when } from "./mine.js";

const config = pageConfig();
const hostId = config.host_id || decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const shopPath = (suffix) => `/api/shops/${encodeURIComponent(hostId)}${suffix}`;
const EARNINGS = ["accrued", "clawed_back", "net", "paid_out", "owed", "payable"];

let signedIn = false; // the page has shown someone's data: "switch account" may go back to it

function notice(text) {
  setText($("#notice"), text || "");
  show($("#notice"), Boolean(text));
}

const rate = (bps) => `${(bps / 100).toFixed(bps % 100 ? 2 : 0)}%`;

// -- signing in ------------------------------------------------------------------------------------------

function askSignIn(message = "") {
  show($("#loading"), false);
  show($("#page"), false);
  show($("#signin"));
  show($("#signin-cancel"), signedIn);
  setText($("#signin-error"), message);
  $("#code-form input[name=phone]").focus();
}

codeRequest({
  path: () => shopPath("/sign-in/code"),
  keys: {
    send_code: "leader.signin.send_code",
    resend_in: "leader.signin.resend_in",
    send_again: "leader.signin.send_again",
    dev_code: "leader.signin.dev_code",
  },
});

onSubmit($("#signin-form"), async ({ code }, form) => {
  setText($("#signin-error"), "");
  const phone = $("#code-form input[name=phone]").value;
  // The answer sets the shop's cookie; the token in its body is not kept (the cookie is the sign-in).
  await api(shopPath("/sign-in"), { method: "POST", body: { phone, code } });
  form.reset();
  show($("#signin-form"), false);
  hideDevCode();
  await load();
}, (error) => setText($("#signin-error"), describe(error)));

$("#switch").addEventListener("click", () => askSignIn());
$("#signin-cancel").addEventListener("click", () => {
  show($("#signin"), false);
  show($("#page"));
});

// -- the page --------------------------------------------------------------------------------------------

async function load() {
  notice("");
  let me;
  try {
    me = await fetchMe(hostId);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return askSignIn();
    show($("#loading"), false);
    return notice(describe(error));
  }
  signedIn = true;
  show($("#loading"), false);
  show($("#signin"), false);
  show($("#page"));
  // A customer with no name of their own is named by their masked phone: say it once.
  setText($("#who"), me.phone_masked && me.name !== me.phone_masked
    ? t("leader.signed_in_as", { name: me.name, phone: me.phone_masked })
    : t("leader.signed_in", { name: me.name }));
  const leader = me.leader;
  show($("#not-leader"), !leader);
  show($("#suspended"), Boolean(leader && leader.suspended));
  show($("#link-panel"), Boolean(leader));
  show($("#next-panel"), Boolean(leader));
  show($("#customers-panel"), Boolean(leader));
  show($("#commissions-panel"), Boolean(leader));
  setText($("#earnings-title"), t(leader ? "leader.earnings.title" : "leader.earnings.sharer_title"));
  renderEarnings(me.earnings);
  renderOrders(me.orders);
  if (!leader) return;
  renderLink(leader);
  renderNext(me.next_show);
  const query = `?${new URLSearchParams({ shop: hostId })}`;
  const [customers, rows] = await Promise.all([
    api(`/api/me/customers${query}`),
    api(`/api/me/commissions${query}`),
  ]).catch((error) => {
    notice(describe(error));
    return [[], []];
  });
  renderCustomers(customers);
  renderCommissions(rows);
}

function renderLink(leader) {
  $("#leader-url").value = leader.url;
  const qr = $("#leader-qr");
  if (qr.getAttribute("src") !== leader.qr_url) qr.src = leader.qr_url;
  setText($("#leader-rate"), leader.commission_bps === null
    ? t("leader.link.rate_shop")
    : t("leader.link.rate", { rate: rate(leader.commission_bps) }));
}

$("#copy-link").addEventListener("click", async () => {
  const copied = await copyText($("#leader-url").value, $("#leader-url"));
  setText($("#copy-status"), copied ? t("leader.link.copied") : t("leader.link.copy_it"));
});

function renderNext(next) {
  show($("#next-show"), Boolean(next));
  show($("#next-none"), !next);
  if (!next) return;
  setText($("#next-title"), next.title);
  const badge = $("#next-status");
  setText(badge, t(`room.status.${next.status}`));
  badge.className = `badge ${next.status}`;
  setText($("#next-at"), next.scheduled_at ? t("leader.next.at", { time: when(next.scheduled_at) }) : "");
  $("#next-open").href = next.url;
}

function renderEarnings(earnings) {
  fill($("#earnings"), EARNINGS.map((name) =>
    h("div", { class: "tile", dataset: { figure: name } },
      h("span", {}, t(`leader.earnings.${name}`)),
      h("strong", {}, money(earnings[name])))));
}

function renderCustomers(customers) {
  setText($("#customers-count"), customers.length ? t("leader.customers.count", { n: customers.length }) : "");
  show($("#customers-none"), customers.length === 0);
  fill($("#customers"), customers.map((c) =>
    h("li", { dataset: { customerId: c.id } },
      h("span", { class: "title" }, c.name),
      h("span", { class: "phone muted" }, c.phone_masked || ""),
      h("span", { class: "desc muted" }, t("leader.customers.since", { time: when(c.bound_at) })),
      h("span", { class: "figures" }, t("leader.customers.figures", {
        orders: c.orders_paid,
        spent: money(c.spent),
        commission: money(c.commission),
      })))));
}

function renderCommissions(rows) {
  show($("#commissions-none"), rows.length === 0);
  fill($("#commissions"), rows.map((row) =>
    h("li", { class: row.kind, dataset: { commissionId: row.id, kind: row.kind } },
      h("span", { class: "title" }, row.room_title),
      h("span", { class: "kind" }, t(`leader.commissions.kind.${row.kind}`)),
      h("strong", { class: "amount" }, money(row.amount)),
      row.rate_bps === null ? null : h("span", { class: "muted" }, t("leader.commissions.rate", { rate: rate(row.rate_bps) })),
      h("span", { class: `paid ${row.payout_id ? "status paid" : "muted"}` },
        t(row.payout_id ? "leader.commissions.paid" : "leader.commissions.unpaid")),
      h("span", { class: "desc muted" }, when(row.created_at),
        row.payable_at && !row.payout_id ? ` · ${t("leader.commissions.payable_at", { time: when(row.payable_at) })}` : ""))));
}

function renderOrders(orders) {
  show($("#orders-none"), orders.length === 0);
  fill($("#orders"), orders.map(orderItem));
}

setText($("#shop-name"), config.shop || "");
languageSwitch($("#lang"));
load().catch((error) => notice(describe(error)));
