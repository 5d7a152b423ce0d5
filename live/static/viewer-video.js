// The viewer page's live video (SPEC §11): WHEP (实时, about half a second behind) while the room has a free
// slot, HLS (流畅, a few seconds behind, for any number of viewers) when it has none, when WHEP fails and the
// room has HLS, or when the viewer chooses it with the 实时/流畅 switch (remembered on this device). The badge
// under the picture says which it is and how far behind: WHEP from the peer's statistics (jitter buffer
// plus half the round trip), HLS from the playlists' wall-clock times (EXT-X-PROGRAM-DATE-TIME).

import { api, ApiError, describe } from "./api.js";
import { $, setText, show } from "./dom.js";
import { HlsPlayer, hlsSupport } from "./hls-player.js";
import { t } from "./i18n.js";
import { play, WhepDelay } from "./webrtc.js";

const CHOICE_KEY = "livecart.video.mode";
const MODES = { webrtc: "video.mode.webrtc", hls: "video.mode.hls" };

function storedChoice() {
  try {
    return localStorage.getItem(CHOICE_KEY) === "hls" ? "hls" : "webrtc";
  } catch {
    return "webrtc";
  }
}

/** "0.4" under ten seconds, "12" above: the delay as the badge says it. */
function seconds(value) {
  return value < 10 ? value.toFixed(1) : String(Math.round(value));
}

export class LiveVideo {
  /** `roomId`; `token()`: the viewer's token now; `canStart()`: whether the page wants video now (joined,
   * in the show, the room not ended); `message(text)`: the overlay's sentence ("" hides it); `onHls(ok)`:
   * whether the room has HLS that this browser plays, each time the page learns it. */
  constructor({ roomId, token, canStart, message, onHls = () => {} }) {
    this.roomId = roomId;
    this.token = token;
    this.canStart = canStart;
    this.message = message;
    this.onHls = onHls; // told whether the room has HLS this browser plays (so also a replay to catch up on)
    this.video = $("#video");
    this.wanted = storedChoice();
    this.mode = null; // what plays now: "webrtc" | "hls" | null
    this.session = null; // the WHEP session
    this.whepDelay = null;
    this.player = null; // the HlsPlayer
    this.hlsOk = false; // the room has HLS and this browser can play it
    this.connecting = false;
    this.switchAsked = false;
    this.retry = null;
    this.ticker = null;
    for (const button of document.querySelectorAll("#video-toggle button")) {
      button.addEventListener("click", () => this.choose(button.dataset.mode));
    }
    this.renderToggle();
  }

  get path() {
    return `/api/rooms/${encodeURIComponent(this.roomId)}`;
  }

  /** Start playing if nothing plays and the page wants video: WHEP first unless HLS was chosen. */
  async start() {
    clearTimeout(this.retry);
    if (this.mode || this.connecting || !this.canStart()) return;
    this.connecting = true;
    try {
      let config;
      try {
        config = await api(`${this.path}/video`, { token: this.token() });
      } catch (error) {
        this.message(t("video.unavailable", { reason: describe(error) }));
        return this.retryIn(8000);
      }
      this.hlsOk = Boolean(config.hls) && Boolean(hlsSupport(this.video));
      this.renderToggle();
      this.onHls(this.hlsOk);
      if (!this.canStart()) return;
      if (this.wanted === "hls" && this.hlsOk) return this.startHls();
      try {
        await this.startWhep(config.ice_servers);
      } catch (error) {
        if (!this.canStart()) return;
        const full = error instanceof ApiError && error.code === "viewer_cap";
        const waiting = error instanceof ApiError && error.status === 409 && !full;
        if (full && this.hlsOk) {
          this.note(t("video.full"));
          return this.startHls();
        }
        if (!waiting && this.hlsOk) return this.startHls(); // WHEP is broken here (a proxy, UDP blocked…)
        this.message(waiting ? t("video.waiting_host") : full ? t("video.full_no_hls") : t("video.unavailable", { reason: describe(error) }));
        this.retryIn(waiting ? 3000 : 8000);
      }
    } finally {
      this.connecting = false;
      if (this.switchAsked) {
        this.switchAsked = false; // the switch was used while this was connecting: honour it now
        if (this.mode && this.mode !== this.wanted) this.choose(this.wanted);
      }
    }
  }

  /** Stop whatever plays; `text` is what the overlay says instead. */
  stop(text = "") {
    clearTimeout(this.retry);
    this.note("");
    this.stopWhep();
    this.stopHls();
    this.setMode(null);
    this.video.srcObject = null;
    this.message(text);
  }

  /** The page goes away: end the WHEP session on the server (its slot frees at once). */
  leave() {
    if (this.session) this.session.stop();
  }

  /** The viewer's choice on the switch: remembered, and played now. */
  async choose(mode) {
    if (!MODES[mode]) return;
    this.wanted = mode;
    try {
      localStorage.setItem(CHOICE_KEY, mode);
    } catch {
      // private mode: the choice holds for this page only
    }
    this.renderToggle();
    if (this.connecting) {
      this.switchAsked = true;
      return;
    }
    if (this.mode === mode) return;
    this.note("");
    this.stopWhep();
    this.stopHls();
    this.setMode(null);
    await this.start();
  }

  // -- internals ------------------------------------------------------------------------------------------

  retryIn(ms) {
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.start(), ms);
  }

  async startWhep(servers) {
    const session = await play(this.roomId, this.token(), this.video, servers);
    if (!this.canStart() || this.mode) {
      session.stop(); // the show ended, or the viewer switched, while it was negotiated
      return;
    }
    this.session = session;
    this.whepDelay = new WhepDelay(session.pc);
    this.setMode("webrtc");
    const lost = () => {
      if (this.session !== session) return;
      this.stopWhep();
      this.setMode(null);
      this.message(t("video.reconnecting"));
      this.retryIn(1000);
    };
    session.pc.addEventListener("connectionstatechange", () => {
      const s = session.pc.connectionState;
      if (s === "failed" || s === "closed") lost();
      if (s === "disconnected") setTimeout(() => session.pc.connectionState === "disconnected" && lost(), 4000);
    });
  }

  stopWhep() {
    const session = this.session;
    this.session = null;
    this.whepDelay = null;
    if (session) session.stop();
  }

  startHls() {
    this.video.srcObject = null;
    const player = new HlsPlayer(this.video, {
      live: true,
      source: async () => {
        const config = await api(`${this.path}/video`, { token: this.token() });
        if (!config.hls) throw new ApiError(404, "no_hls", "HLS is off");
        return { url: config.hls, expiresAt: config.hls_expires_at };
      },
      onState: (state) => {
        if (this.player !== player) return;
        if (state === "waiting" || state === "stalled") this.message(t("video.hls_waiting"));
        else if (state === "retrying") this.message(t("video.reconnecting"));
        else if (state === "unsupported") this.message(t("video.hls_unsupported"));
        else if (state === "playing") this.message("");
      },
    });
    this.player = player;
    this.setMode("hls");
    player.start();
  }

  stopHls() {
    const player = this.player;
    this.player = null;
    if (player) player.stop();
  }

  setMode(mode) {
    this.mode = mode;
    this.renderToggle();
    const badge = $("#video-mode");
    badge.dataset.mode = mode || "";
    show(badge, Boolean(mode));
    clearInterval(this.ticker);
    this.ticker = null;
    this.renderMode(null);
    if (mode) this.ticker = setInterval(() => this.tick(), 1000);
  }

  async tick() {
    let delay = null;
    if (this.mode === "hls" && this.player) delay = this.player.delay();
    if (this.mode === "webrtc" && this.whepDelay) delay = await this.whepDelay.sample().catch(() => null);
    this.renderMode(delay);
  }

  renderMode(delay) {
    if (!this.mode) return setText($("#video-mode"), "");
    const name = t(MODES[this.mode]);
    const text = delay === null || !Number.isFinite(delay) ? name : `${name} · ${t("video.delay", { seconds: seconds(delay) })}`;
    setText($("#video-mode"), text);
  }

  /** A line under the picture about the mode (the real-time slots are full…); "" clears it. */
  note(text) {
    setText($("#video-note"), text);
    show($("#video-note"), Boolean(text));
  }

  /** The switch shows what plays (HLS while the real-time slots are full, whatever was chosen), else the
   * choice. */
  renderToggle() {
    show($("#video-toggle"), this.hlsOk);
    const pressed = this.mode || this.wanted;
    for (const button of document.querySelectorAll("#video-toggle button")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === pressed));
    }
  }
}
