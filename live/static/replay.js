// The replay (回放) on the viewer page (SPEC §11): once the show has ended, or during it to watch from the
// start. GET /api/rooms/{room}/replay gives the recording's signed playlist and the timeline of the show's
// card events at their offsets in the video; the page plays it (hls-player.js) and, as the video passes
// an event, shows that card as it was at that moment (pinned, on sale at its price then, sold out,
// closed), newest change first. Every event is also a moment in a list that seeks there when tapped. A card
// whose sale is open *now* (the shop keeps sales open after the show: 回放带货) has a buy button, which
// goes through the page's own buy flow (viewer.js).

import { api, money } from "./api.js";
import { $, fill, h, remaining, setText, show } from "./dom.js";
import { HlsPlayer } from "./hls-player.js";
import { t } from "./i18n.js";

const REFRESH_RECORDING_MS = 15_000; // a recording still growing: its timeline is asked for again
const EVENTS = {
  pinned: "replay.event.pinned",
  opened: "replay.event.opened",
  price_cut: "replay.event.price_cut",
  price_raised: "replay.event.price_raised",
  sold_out: "replay.event.sold_out",
  closed: "replay.event.closed",
};
const MOMENT_STATUS = {
  pinned: "card.status.pinned",
  open: "card.status.open",
  sold_out: "card.status.sold_out",
  closed: "card.status.closed",
};

/** "1:05" or "1:02:05": a position in the video. */
export function position(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** Each card as it was at `time` seconds into the replay, from the timeline's events up to then: `[{card_id,
 * status, price, at}]`, the most recently changed first (a card no event has reached yet is absent). */
export function cardsAt(timeline, time) {
  const state = new Map();
  for (const event of timeline) {
    if (event.t > time) break; // the timeline is in order
    const was = state.get(event.card_id) || { card_id: event.card_id, status: "pinned", price: null };
    const next = { ...was, at: event.t };
    if (event.price !== null && event.price !== undefined) next.price = event.price;
    if (event.event === "opened") next.status = "open";
    else if (event.event === "sold_out") next.status = "sold_out";
    else if (event.event === "closed") next.status = "closed";
    else if (event.event === "pinned") next.status = "pinned";
    state.set(event.card_id, next);
  }
  return [...state.values()].sort((a, b) => b.at - a.at);
}

/** Whether `card` (as GET /cards gives it, now) can be bought now. */
function openNow(card) {
  const closes = card.closes_at ? Date.parse(card.closes_at) : Infinity;
  return card.status === "open" && card.stock_left > 0 && closes > Date.now();
}

export class ReplayView {
  /** `roomId`; `token()`: the viewer's token; `buy(card, {message, busy})`: the page's buy flow. */
  constructor({ roomId, token, buy }) {
    this.roomId = roomId;
    this.token = token;
    this.buy = buy;
    this.video = $("#replay-video");
    this.data = null; // the last GET /replay
    this.cards = new Map(); // card id -> card JSON (now)
    this.shown = new Map(); // card id -> {node, update}
    this.player = null;
    this.passed = -1; // how many timeline events the video has passed (redraw only when it changes)
    this.poll = null;
    const redraw = () => this.renderMoment();
    this.video.addEventListener("timeupdate", redraw);
    this.video.addEventListener("seeked", redraw);
    this.video.addEventListener("playing", () => this.status(""));
    setInterval(() => {
      for (const entry of this.shown.values()) entry.tick();
    }, 1000);
  }

  get path() {
    return `/api/rooms/${encodeURIComponent(this.roomId)}/replay`;
  }

  /** The card JSON (now) of a card of this replay, or undefined. */
  card(id) {
    return this.cards.get(id);
  }

  /** Load the replay and play it from the start; throws the API's error (404 `no_replay`: none to see). */
  async open() {
    if (this.player) this.player.stop(); // 从头看 was on when the show ended: start again, as the replay
    this.player = null;
    const data = await this.load();
    show($("#replay"));
    this.status(t("replay.loading"));
    this.player = new HlsPlayer(this.video, {
      live: false,
      startAt: 0,
      initial: { url: data.hls, expiresAt: data.hls_expires_at },
      source: async () => {
        const again = await this.load();
        return { url: again.hls, expiresAt: again.hls_expires_at };
      },
      onState: (state) => {
        if (state === "waiting") this.status(t("replay.waiting"));
        else if (state === "retrying" || state === "stalled") this.status(t("video.reconnecting"));
        else if (state === "unsupported") this.status(t("video.hls_unsupported"));
        else if (state === "playing") this.status("");
      },
    });
    this.player.start();
    return data;
  }

  /** Stop playing and hide the replay. */
  close() {
    clearTimeout(this.poll);
    if (this.player) this.player.stop();
    this.player = null;
    show($("#replay"), false);
  }

  /** Ask for the replay again (the stock after a buy, a recording's new events). */
  async load() {
    clearTimeout(this.poll);
    const data = await api(this.path, { token: this.token() });
    this.data = data;
    this.cards = new Map(data.cards.map((card) => [card.id, card]));
    this.render();
    if (data.state === "recording") {
      this.poll = setTimeout(() => this.load().catch(() => {}), REFRESH_RECORDING_MS);
    }
    return data;
  }

  status(text) {
    setText($("#replay-status"), text);
    show($("#replay-status"), Boolean(text));
  }

  // -- rendering ------------------------------------------------------------------------------------------

  render() {
    const data = this.data;
    const badge = $("#replay-state");
    badge.dataset.state = data.state;
    badge.className = `badge ${data.state === "recording" ? "live" : "ended"}`;
    setText(badge, t(data.state === "recording" ? "replay.state.recording" : "replay.state.ready"));
    const notes = [];
    if (data.duration_seconds) notes.push(t("replay.duration", { time: position(data.duration_seconds) }));
    if (data.delete_at) notes.push(t("replay.kept_until", { time: new Date(data.delete_at).toLocaleString(document.documentElement.lang) }));
    setText($("#replay-note"), notes.join(" · "));
    const prices = new Map(); // card id -> its price as of the event (an opening carries none of its own)
    fill($("#replay-moments"), data.timeline.map((event) => {
      if (event.price !== null && event.price !== undefined) prices.set(event.card_id, event.price);
      const card = this.cards.get(event.card_id);
      return this.moment(event, prices.get(event.card_id) ?? (card ? card.price : null));
    }));
    show($("#replay-no-moments"), data.timeline.length === 0);
    for (const [id, entry] of this.shown) if (this.cards.has(id)) entry.refresh();
    this.passed = -1;
    this.renderMoment();
  }

  moment(event, price) {
    const card = this.cards.get(event.card_id);
    const name = card ? card.product.name : t("order.unknown_product");
    const what = t(EVENTS[event.event] || event.event, { price: price === null ? "" : money(price) });
    return h("li", { dataset: { cardId: event.card_id, event: event.event, t: event.t } },
      h("button", { type: "button", class: "link", onclick: () => this.seek(event.t) },
        h("span", { class: "time" }, position(event.t)), " ", h("span", { class: "name" }, name), " · ", what));
  }

  seek(time) {
    if (!this.player) return;
    this.player.seek(time);
    this.renderMoment();
  }

  /** The cards as they were at the video's position (only when the video passed another event). */
  renderMoment() {
    if (!this.data) return;
    const time = this.video.currentTime || 0;
    const passed = this.data.timeline.filter((event) => event.t <= time).length;
    if (passed === this.passed) return;
    this.passed = passed;
    const states = cardsAt(this.data.timeline, time);
    const present = new Set(states.map((s) => s.card_id));
    for (const [id, entry] of this.shown) {
      if (!present.has(id)) {
        entry.node.remove();
        this.shown.delete(id);
      }
    }
    const list = $("#replay-cards");
    for (const state of states) {
      const card = this.cards.get(state.card_id);
      if (!card) continue;
      let entry = this.shown.get(state.card_id);
      if (!entry) {
        entry = this.cardNode(card);
        this.shown.set(state.card_id, entry);
      }
      entry.at(state);
      list.append(entry.node); // in the order of cardsAt: the latest change first
    }
    show($("#replay-no-cards"), this.shown.size === 0);
  }

  /** A card of the replay: as it was at the moment (status, price then), and what can be done now. */
  cardNode(card) {
    const image = h("img", { class: "thumb", alt: "", loading: "lazy" });
    const title = h("h3", { class: "title" });
    const badge = h("span", { class: "badge" });
    const then = h("strong", { class: "price-now" });
    const was = h("s", { class: "price-was muted" });
    const countdown = h("p", { class: "countdown" });
    const button = h("button", { type: "button", class: "buy" });
    const over = h("p", { class: "muted now" });
    const message = h("p", { class: "card-message", role: "alert" });
    const entry = { state: null, buying: false };
    entry.node = h("article", { class: "card replay-card", dataset: { cardId: card.id } },
      image,
      h("div", { class: "body" },
        h("header", {}, title, badge),
        h("p", { class: "price" }, then, " ", was),
        countdown, button, over, message));
    const now = () => this.cards.get(card.id) || card;
    entry.tick = () => {
      const c = now();
      const open = openNow(c);
      show(button, open);
      show(over, !open);
      button.disabled = entry.buying;
      setText(button, entry.buying ? t("card.reserving") : t("card.buy", { price: money(c.price) }));
      setText(countdown, open && c.closes_at ? t("card.ends_in", { time: remaining(c.closes_at) }) : "");
      setText(over, c.status === "pinned" ? t("card.coming_soon")
        : c.status === "sold_out" || c.stock_left === 0 ? t("replay.sold_out_now") : t("replay.sale_over"));
    };
    entry.refresh = () => {
      const c = now();
      if (c.product.image_url) image.src = c.product.image_url;
      show(image, Boolean(c.product.image_url));
      setText(title, c.product.name);
      entry.tick();
    };
    entry.at = (state) => {
      entry.state = state;
      const price = state.price === null ? now().price : state.price;
      const first = this.data.timeline.find((e) => e.card_id === card.id && e.price !== null);
      setText(then, money(price));
      setText(was, first && price < first.price ? money(first.price) : "");
      setText(badge, t(MOMENT_STATUS[state.status]));
      badge.className = `badge ${state.status}`;
      entry.node.className = `card replay-card ${state.status}`;
      entry.node.dataset.status = state.status;
    };
    button.addEventListener("click", async () => {
      setText(message, "");
      await this.buy(now(), {
        message,
        busy: (flag) => {
          entry.buying = flag;
          entry.tick();
        },
      });
      this.load().catch(() => {}); // the stock after the buy
    });
    entry.refresh();
    return entry;
  }
}
