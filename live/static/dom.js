// DOM building without HTML parsing: every string given here ends up as a text node or an attribute value,
// never as markup, so product titles, names and chat lines are shown exactly as typed.

/** `h("li", {class: "x", onclick: fn}, "text", child)`: an element with attributes, listeners and children. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked" || key === "disabled") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function setText(node, text) {
  if (node.textContent !== String(text)) node.textContent = String(text);
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

/** Replace a node's children (with `h` nodes or plain strings). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function formData(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** Runs `action` on submit, with the form's buttons disabled until it settles; errors go to `onError`. */
export function onSubmit(form, action, onError) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await action(formData(form), form);
    } catch (error) {
      onError(error);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}

export function clock(date = new Date()) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

/** "1:05" or "1:02:05" until `iso` (an ISO 8601 time), or null when there is none; never negative. */
export function remaining(iso, now = Date.now()) {
  if (!iso) return null;
  const s = Math.max(0, Math.round((Date.parse(iso) - now) / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** Copy text: the Clipboard API where the page may use it, else a selected field and execCommand. */
export async function copyText(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (!field) return false;
    field.focus();
    field.select();
    return document.execCommand("copy");
  }
}
