// A chat line as both pages show it. The host's lines (the server says so: the frame's `role`, never the
// name) carry a badge that is an element of its own before the name; a viewer's name is only ever text in
// `.from`, so no name, "Host" or "主播" included, can look like it.

import { clock, h } from "./dom.js";
import { t } from "./i18n.js";

export function chatLine(from, text, role, { time = false } = {}) {
  const host = role === "host";
  return h("li", { class: host ? "by-host" : null },
    time ? h("span", { class: "time muted" }, clock()) : null,
    host ? h("span", { class: "role-badge" }, t("chat.host_badge")) : null,
    h("b", { class: "from" }, from), " ", h("span", { class: "text" }, text));
}
