// The HTTP side of the pages: JSON calls with a bearer token, errors as ApiError {status, code, detail,
// body}; describe() says what went wrong in the page's language (the catalogue's error.CODE), falling back
// to the server's own sentence for a code the catalogue does not know.

import { has, t, waitText } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, detail, body = {}) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.body = body; // the whole error body: retry_after, attempts_left…
  }

  /** Seconds until a refused request may be sent again (429), or null. */
  get retryAfter() {
    const value = Number(this.body.retry_after);
    return Number.isFinite(value) && value > 0 ? value : null;
  }
}

export async function errorOf(response) {
  let code = `http_${response.status}`;
  let detail = response.statusText;
  let body = {};
  try {
    body = (await response.json()) || {};
    code = body.error || code;
    detail = body.detail || detail;
  } catch {
    // not JSON: keep the status line
  }
  if (body.retry_after === undefined && response.headers.get("Retry-After")) {
    body = { ...body, retry_after: Number(response.headers.get("Retry-After")) };
  }
  return new ApiError(response.status, code, detail, body);
}

/** `api("/api/products", {token, method: "POST", body: {...}})` → the parsed JSON (null for 204). */
export async function api(path, { method = "GET", token, body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network_error", error.message);
  }
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

const formats = new Map();

/** Minor units as money: 1990 → "¥19.90". */
export function money(minor, currency = "CNY") {
  if (!formats.has(currency)) {
    formats.set(currency, new Intl.NumberFormat("zh-CN", { style: "currency", currency }));
  }
  return formats.get(currency).format((minor || 0) / 100);
}

/** "19.9" → 1990; NaN for anything that is not a non-negative amount. */
export function toMinor(text) {
  const value = Number(String(text).trim());
  return Number.isFinite(value) && value >= 0 ? Math.round(value * 100) : NaN;
}

export function percent(ratio) {
  return `${(100 * (ratio || 0)).toFixed(1)}%`;
}

/** A fresh random key (Idempotency-Key); works on plain-http LAN pages where randomUUID is missing. */
export function randomKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The catalogue's key for an error: error.CODE, with a variant where the body says more. */
function errorKey(error) {
  if (error.code === "invalid_code") {
    const left = error.body.attempts_left;
    if (left === undefined) return "error.invalid_code.none";
    return left > 0 ? "error.invalid_code" : "error.invalid_code.locked";
  }
  return `error.${error.code}`;
}

/** What went wrong, for a person, in the page's language. */
export function describe(error) {
  if (error instanceof ApiError) {
    const key = errorKey(error);
    if (has(key)) {
      return t(key, { ...error.body, wait: waitText(error.retryAfter), detail: error.detail || error.code });
    }
    return error.detail || error.code;
  }
  return error && error.message ? error.message : String(error);
}
