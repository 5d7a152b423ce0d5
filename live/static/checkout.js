// The viewer page's checkout sheet (SPEC §10): after a buy, the buyer sees the amount, gives where it ships
// (收货人, 手机号, 所在地区, 详细地址 — offered again from the order or their last address) when the product
// ships, picks how to pay among the shop's providers (the first preselected) and taps 去支付. The server
// answers with what this browser needs, ONE of:
//   code_url     WeChat Pay Native: drawn here as a QR code (the vendored qrcode-generator, no service
//                outside LiveCart sees the link) to scan with WeChat; the sheet waits for the order's
//                `order` frame and asks GET /api/orders/{id} every few seconds besides;
//   h5_url       WeChat Pay H5: the page goes there, WeChat brings the buyer back;
//   jsapi        inside WeChat: WeixinJSBridge's getBrandWCPayRequest with the server's signed parameters;
//   redirect_url a provider's own page (Alipay, Stripe): the page goes there — except LiveCart's own dev
//                provider (/api/payments/dev/{payment}), whose 支付 / 失败 buttons stay in the sheet.
// The order's status arrives as the buyer's personal `order` frame (viewer.js hands it to orderChanged):
// paid closes the sheet. Every refusal is said in the sheet, in the page's language.

import { api, ApiError, describe, money } from "./api.js";
import { $, h, setText, show } from "./dom.js";
import { t } from "./i18n.js";
import qrcode from "./vendor/qrcode-generator/qrcode.mjs";

const POLL_MS = 3000;
const QR_SIDE_PX = 264; // at most, quiet zone included: big enough to scan off a screen, fits a phone
const QR_QUIET_MODULES = 4;
const PROVIDER_NAMES = {
  wechat: "checkout.provider.wechat",
  alipay: "checkout.provider.alipay",
  stripe: "checkout.provider.stripe",
  dev: "checkout.provider.dev",
};
/** Refusals the sheet says in its own words (the generic catalogue has others for some of these codes:
 * provider_failed is the SMS's there). */
const CHECKOUT_ERRORS = {
  address_required: "checkout.error.address_required",
  invalid_phone: "checkout.error.invalid_phone",
  unknown_provider: "checkout.error.unknown_provider",
  provider_failed: "checkout.error.provider_failed",
  order_expired: "checkout.error.order_expired",
  order_not_payable: "checkout.error.order_not_payable",
  not_in_wechat: "checkout.error.not_in_wechat",
  wechat_pay_failed: "checkout.error.wechat_pay_failed",
};

let current = null; // {order, token, onOrder, payment, poll}

function errorText(error) {
  const key = error instanceof ApiError && CHECKOUT_ERRORS[error.code];
  return key ? t(key) : describe(error);
}

function fail(error) {
  setText($("#checkout-error"), errorText(error));
}

function step(name) {
  for (const id of ["#checkout-form", "#checkout-qr", "#checkout-dev", "#checkout-wait"]) {
    show($(id), id === `#checkout-${name}`);
  }
}

/** Open the sheet for a reserved `order`; `onOrder` is told an order the sheet learnt of (a poll, a dev
 * payment that failed). `productName`: what the buyer bought, for the sheet's title line. */
export async function openCheckout(order, { token, productName, onOrder }) {
  stopPolling();
  current = { order, token, onOrder, payment: null, poll: null };
  setText($("#checkout-amount"), money(order.amount, order.currency));
  setText($("#checkout-product"), productName || t("checkout.your_order"));
  setText($("#checkout-error"), "");
  setText($("#checkout-status"), "");
  fillProviders([]);
  show($("#checkout-address"), false);
  $("#checkout-submit").disabled = true;
  step("form");
  if (!$("#checkout").open) $("#checkout").showModal();
  const mine = current;
  let options;
  try {
    options = await api(`/api/orders/${encodeURIComponent(order.id)}/checkout`, { token });
  } catch (error) {
    if (mine === current) fail(error);
    return;
  }
  if (mine !== current) return;
  setText($("#checkout-amount"), money(options.amount, options.currency));
  fillAddress(options.address_required, options.address);
  fillProviders(options.providers);
  if (!options.providers.length) setText($("#checkout-error"), t("checkout.no_providers"));
  $("#checkout-submit").disabled = options.providers.length === 0;
}

function fillAddress(required, address) {
  const box = $("#checkout-address");
  show(box, required);
  for (const input of box.querySelectorAll("input")) {
    input.required = required;
    input.disabled = !required;
    // The server's offer (this order's address, else the one given last time) replaces what is there;
    // with none, what the buyer typed on this page stays.
    if (address) input.value = address[input.name] || "";
  }
}

function fillProviders(providers) {
  const list = $("#checkout-provider-list");
  list.replaceChildren(...providers.map((p, i) =>
    h("label", { class: "choice", dataset: { provider: p.provider } },
      h("input", { type: "radio", name: "provider", value: p.provider, checked: i === 0, dataset: { channel: p.channel } }),
      " ", h("span", {}, PROVIDER_NAMES[p.provider] ? t(PROVIDER_NAMES[p.provider]) : p.provider))));
}

$("#checkout-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const form = event.currentTarget;
  const chosen = form.querySelector("input[name=provider]:checked");
  const body = { provider: chosen ? chosen.value : undefined };
  if (!$("#checkout-address").hidden) {
    const field = (name) => form.querySelector(`#checkout-address input[name=${name}]`).value.trim();
    body.address = { name: field("name"), phone: field("phone"), region: field("region"), line: field("line") };
  }
  setText($("#checkout-error"), "");
  $("#checkout-submit").disabled = true;
  const mine = current;
  try {
    const answer = await api(`/api/orders/${encodeURIComponent(mine.order.id)}/pay`, {
      method: "POST",
      token: mine.token,
      body,
    });
    if (mine === current) await render(answer);
  } catch (error) {
    if (mine === current) fail(error);
  } finally {
    $("#checkout-submit").disabled = false;
  }
});

/** What the server answered: draw it, go there, or ask WeChat. */
async function render(answer) {
  current.payment = answer;
  const checkout = answer.checkout || {};
  if (checkout.code_url) {
    drawQr(checkout.code_url);
    step("qr");
    startPolling();
    return;
  }
  if (checkout.jsapi) return wechatJsapi(checkout.jsapi);
  const url = checkout.h5_url || checkout.redirect_url || answer.checkout_url;
  if (!url) return fail(new Error(t("checkout.error.nothing")));
  const target = new URL(url, location.href);
  if (target.origin === location.origin && target.pathname.startsWith("/api/payments/dev/")) {
    step("dev");
    return;
  }
  location.assign(target.href); // the provider's page; it brings the buyer back to the show
}

function drawQr(text) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const count = qr.getModuleCount();
  // Whole pixels per module (a blurred edge between two modules is what makes a scan fail).
  const cell = Math.max(3, Math.floor(QR_SIDE_PX / (count + 2 * QR_QUIET_MODULES)));
  const side = (count + 2 * QR_QUIET_MODULES) * cell;
  const canvas = $("#checkout-qr-code");
  canvas.width = side;
  canvas.height = side;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, side, side);
  context.fillStyle = "#000";
  for (let row = 0; row < count; row++) {
    for (let col = 0; col < count; col++) {
      if (qr.isDark(row, col)) {
        context.fillRect((col + QR_QUIET_MODULES) * cell, (row + QR_QUIET_MODULES) * cell, cell, cell);
      }
    }
  }
}

// -- inside WeChat: JSAPI --------------------------------------------------------------------------------

function bridge() {
  if (window.WeixinJSBridge) return Promise.resolve(window.WeixinJSBridge);
  if (!/MicroMessenger/i.test(navigator.userAgent)) return Promise.reject(new ApiError(0, "not_in_wechat"));
  return new Promise((resolve) =>
    document.addEventListener("WeixinJSBridgeReady", () => resolve(window.WeixinJSBridge), { once: true }));
}

async function wechatJsapi(parameters) {
  const mine = current;
  let jsBridge;
  try {
    jsBridge = await bridge();
  } catch (error) {
    return fail(error);
  }
  jsBridge.invoke("getBrandWCPayRequest", parameters, (result) => {
    if (mine !== current) return;
    const outcome = String((result && result.err_msg) || "");
    if (outcome.endsWith(":ok")) {
      // WeChat says it went through; the order is paid when WeChat's notification reaches the server.
      setText($("#checkout-status"), t("checkout.confirming"));
      step("wait");
      startPolling();
    } else if (outcome.endsWith(":cancel")) {
      setText($("#checkout-status"), t("checkout.cancelled"));
      step("form");
    } else {
      fail(new ApiError(0, "wechat_pay_failed"));
      step("form");
    }
  });
}

// -- the dev provider ------------------------------------------------------------------------------------

async function completeDev(outcome) {
  if (!current || !current.payment) return;
  const mine = current;
  try {
    const result = await api(`/api/payments/dev/${encodeURIComponent(mine.payment.payment_id)}/complete`, {
      method: "POST",
      body: { outcome },
    });
    if (mine !== current) return;
    if (result && result.order) mine.onOrder(result.order);
    if (outcome === "paid") {
      // The order's new status arrives as a personal `order` frame; ask once more if that frame is lost.
      setTimeout(() => askOnce(mine), POLL_MS);
      closeCheckout();
    } else {
      setText($("#checkout-status"), t("checkout.failed"));
      step("form");
    }
  } catch (error) {
    if (mine === current) fail(error);
  }
}

$("#checkout-pay").addEventListener("click", () => completeDev("paid"));
$("#checkout-fail").addEventListener("click", () => completeDev("failed"));

// -- waiting for the order -------------------------------------------------------------------------------

function startPolling() {
  const mine = current;
  if (!mine || mine.poll) return;
  mine.poll = setInterval(async () => {
    try {
      const order = await api(`/api/orders/${encodeURIComponent(mine.order.id)}`, { token: mine.token });
      mine.onOrder(order);
      if (order.status !== "reserved") clearInterval(mine.poll);
    } catch {
      // the frame may still come; the next poll asks again
    }
  }, POLL_MS);
}

async function askOnce(mine) {
  try {
    mine.onOrder(await api(`/api/orders/${encodeURIComponent(mine.order.id)}`, { token: mine.token }));
  } catch {
    // gone or not ours any more: nothing to show
  }
}

function stopPolling() {
  if (current && current.poll) clearInterval(current.poll);
}

/** An order's new state (its `order` frame, a poll): the sheet for it closes once it is paid, and says why
 * it cannot be paid any more when it expired or was cancelled. */
export function orderChanged(order) {
  if (!current || current.order.id !== order.id || order.status === "reserved") return;
  stopPolling();
  if (order.status === "expired" || order.status === "cancelled") {
    setText($("#checkout-error"), t(order.status === "expired" ? "checkout.error.order_expired" : "checkout.error.order_not_payable"));
    show($("#checkout-form"), false);
    show($("#checkout-qr"), false);
    show($("#checkout-dev"), false);
    return;
  }
  closeCheckout();
}

export function closeCheckout() {
  stopPolling();
  current = null;
  if ($("#checkout").open) $("#checkout").close();
}

$("#checkout-close").addEventListener("click", () => closeCheckout());
$("#checkout").addEventListener("close", () => {
  stopPolling();
  current = null;
});
