// HLS playback of a room's signed playlist (SPEC §11): the live window (viewers past the WHEP cap, or who
// chose 流畅) and the replay. hls.js (vendored, loaded only when HLS is played) where the browser has Media
// Source Extensions; Safari's own HLS where it has not; nothing else is asked of the browser.
//
// The playlist URL carries a grant (`/api/rooms/{room}/hls/{EXPIRES.SIG}/live.m3u8`) that expires: the
// player asks its `source` (GET /video or /replay) for a fresh one before it does, and again whenever the
// server answers 403. hls.js's requests are rewritten to the newest grant as they go out (its `xhrSetup`),
// so segments named relative to an old playlist still load. Until the first segment exists the playlist is
// a 404 (the encoder has not written one yet): the player asks again every 2 s.

import { errorOf } from "./api.js";

const VENDOR = "/static/vendor/hls.js";
const RETRY_MS = 2000;
const FAILED_RETRY_MS = 5000;
const REFRESH_BEFORE_MS = 120_000; // ask for a new grant this long before the old one expires
const STALL_MS = 3000; // waiting this long for data: the overlay says so
const GRANT = /\/hls\/[^/]+\//;

let hlsModule = null;

/** Whether hls.js can play here: Media Source Extensions (or Safari's ManagedMediaSource) that take H.264
 * and AAC, as its own `isSupported()` checks; asked without loading it. */
function mediaSourceWorks() {
  const Source = self.ManagedMediaSource || self.MediaSource || self.WebKitMediaSource;
  return Boolean(Source && Source.isTypeSupported && Source.isTypeSupported('video/mp4; codecs="avc1.42E01E,mp4a.40.2"'));
}

/** The hls.js class, loaded on first use; null when it cannot be loaded or used. */
async function loadHlsJs() {
  if (!hlsModule) hlsModule = import(`${VENDOR}/hls.light.min.mjs`).then((m) => m.default).catch(() => null);
  const Hls = await hlsModule;
  return Hls && Hls.isSupported() ? Hls : null;
}

/** How this browser plays HLS in `video`: "hls.js" (Media Source Extensions), "native" (Safari without
 * them) or null (it cannot). hls.js first: Chrome answers canPlayType "maybe" too, but plays no EXT-X-
 * PROGRAM-DATE-TIME to measure the delay with. */
export function hlsSupport(video) {
  if (mediaSourceWorks()) return "hls.js";
  return video.canPlayType("application/vnd.apple.mpegurl") ? "native" : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const grantOf = (url) => (GRANT.exec(url) || [""])[0];

/** Plays the HLS playlist that `source()` gives in `video` until `stop()`. `source`: an async function
 * answering `{url, expiresAt}` (a signed playlist path and its ISO expiry), asked at the start, before the
 * grant expires and after a 403 (`initial`: such an answer the caller already has). `live`: a live window (the delay is shown; it starts at the live edge) or
 * a recording (`startAt` seconds, 0 by default). `onState(state, detail)`: "waiting" (no segment yet),
 * "playing", "stalled" (no picture for a while: the live stream stopped growing, the host's camera is off),
 * "retrying" (lost, trying again), "unsupported". */
export class HlsPlayer {
  constructor(video, { source, initial = null, live = true, startAt = 0, onState = () => {} }) {
    this.video = video;
    this.source = source;
    this.live = live;
    this.startAt = startAt;
    this.onState = onState;
    this.url = initial ? initial.url : null; // a URL the caller has just been given: no need to ask again
    this.expiresAt = initial ? Date.parse(initial.expiresAt) || 0 : 0;
    this.hls = null;
    this.kind = null; // "hls.js" | "native"
    this.run = 0; // bumped by stop() and each restart: a late step of an older run does nothing
    this.refreshTimer = null;
    this.restartTimer = null;
    this.recovered = 0;
  }

  /** Start (or restart) playing; resolves once the player is attached or has been stopped. */
  async start() {
    const run = ++this.run;
    this.stopped = false;
    this.detach();
    this.kind = hlsSupport(this.video);
    const Hls = this.kind === "hls.js" ? await loadHlsJs() : null;
    if (run !== this.run) return;
    if (!this.kind || (this.kind === "hls.js" && !Hls)) return this.onState("unsupported");
    try {
      if (!this.url) await this.refresh();
      else if (!this.refreshTimer) this.scheduleRefresh();
      await this.untilPlaylist(run);
    } catch (error) {
      if (run !== this.run) return;
      this.onState("retrying", error);
      return this.restartIn(FAILED_RETRY_MS);
    }
    if (run !== this.run) return;
    this.watch(run);
    if (this.kind === "hls.js") this.attachHlsJs(Hls, run);
    else this.attachNative(run);
  }

  /** Stop playing and forget the video element's source. */
  stop() {
    this.run++;
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    clearTimeout(this.restartTimer);
    this.detach();
  }

  /** Seconds the picture is behind the wall clock (live), from the playlists' EXT-X-PROGRAM-DATE-TIME,
   * else hls.js's latency estimate; null when not known. */
  delay() {
    if (this.hls) {
      const date = this.hls.playingDate;
      if (date && Number.isFinite(date.getTime())) return Math.max(0, (Date.now() - date.getTime()) / 1000);
      const latency = this.hls.latency;
      return Number.isFinite(latency) && latency > 0 ? latency : null;
    }
    if (this.kind === "native" && typeof this.video.getStartDate === "function") {
      const start = this.video.getStartDate().getTime();
      if (Number.isFinite(start)) return Math.max(0, (Date.now() - start) / 1000 - this.video.currentTime);
    }
    return null;
  }

  seek(seconds) {
    this.video.currentTime = seconds;
    this.video.play().catch(() => {});
  }

  // -- internals ------------------------------------------------------------------------------------------

  detach() {
    if (this.watching) this.watching.abort();
    this.watching = null;
    clearTimeout(this.stallTimer);
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.video.getAttribute("src")) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  /** "playing" whenever the picture moves, "stalled" once it has waited STALL_MS for data. */
  watch(run) {
    this.watching = new AbortController();
    const { signal } = this.watching;
    const video = this.video;
    video.addEventListener("playing", () => {
      clearTimeout(this.stallTimer);
      if (run === this.run) this.onState("playing");
    }, { signal });
    video.addEventListener("waiting", () => {
      clearTimeout(this.stallTimer);
      this.stallTimer = setTimeout(() => run === this.run && !video.paused && this.onState("stalled"), STALL_MS);
    }, { signal });
  }

  restartIn(ms) {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.live && this.video.currentTime > 0) this.startAt = this.video.currentTime; // carry on there
      this.start();
    }, ms);
  }

  /** A fresh signed URL from the source; the next one is asked for before it expires. */
  async refresh() {
    const { url, expiresAt } = await this.source();
    this.url = url;
    this.expiresAt = Date.parse(expiresAt) || 0;
    this.scheduleRefresh();
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (this.expiresAt && !this.stopped) {
      const wait = Math.max(10_000, this.expiresAt - Date.now() - REFRESH_BEFORE_MS);
      this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), wait);
    }
  }

  /** Wait until the playlist answers (a 404 until the encoder's first segment); a 403 asks for a new URL. */
  async untilPlaylist(run) {
    for (;;) {
      const response = await fetch(this.url, { cache: "no-store" });
      if (run !== this.run) return;
      if (response.ok) return;
      if (response.status === 404) {
        this.onState("waiting");
        await sleep(RETRY_MS);
      } else if (response.status === 403) {
        await this.refresh();
      } else {
        throw await errorOf(response);
      }
      if (run !== this.run) return;
    }
  }

  /** The URL hls.js asks for, with its grant replaced by the newest one. */
  current(url) {
    const old = grantOf(url);
    const now = grantOf(this.url);
    return old && now && old !== now ? url.replace(old, now) : url;
  }

  attachHlsJs(Hls, run) {
    const hls = new Hls({
      workerPath: `${VENDOR}/hls.worker.js`,
      startPosition: this.live ? -1 : this.startAt,
      lowLatencyMode: false,
      // Two segments behind the live edge (hls.js's default is three): about 5 s behind the camera
      // instead of 7-8 (docs/benchmarks.md, issue 14); a player that fell further behind catches up by
      // playing up to 10% faster, and jumps back once it is five segments behind.
      liveSyncDurationCount: 2,
      liveMaxLatencyDurationCount: 5,
      maxLiveSyncPlaybackRate: 1.1,
      backBufferLength: this.live ? 30 : 90,
      xhrSetup: (xhr, url) => {
        const fixed = this.current(url);
        if (fixed !== url) xhr.open("GET", fixed, true);
      },
    });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => this.video.play().catch(() => {}));
    hls.on(Hls.Events.FRAG_BUFFERED, () => {
      this.recovered = 0;
    });
    hls.on(Hls.Events.ERROR, (event, data) => {
      if (run !== this.run) return;
      if (data.response && data.response.code === 403) {
        // The grant expired (watching longer than it lasts, and its refresh failed): a new one first; the
        // requests after it carry it (xhrSetup), and a player that gave up starts again with it.
        const refreshed = this.refresh().catch(() => {});
        if (data.fatal) {
          this.onState("retrying", data);
          refreshed.then(() => run === this.run && this.restartIn(0));
        }
        return;
      }
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && this.recovered++ < 2) return hls.recoverMediaError();
      this.onState("retrying", data);
      this.restartIn(RETRY_MS);
    });
    hls.attachMedia(this.video);
    hls.loadSource(this.url);
  }

  attachNative(run) {
    const video = this.video;
    const failed = () => {
      video.removeEventListener("error", failed);
      if (run !== this.run) return;
      this.onState("retrying", video.error);
      this.url = null; // a native player says nothing of why: ask for a fresh URL too
      this.restartIn(RETRY_MS);
    };
    video.addEventListener("error", failed);
    if (!this.live && this.startAt) {
      video.addEventListener("loadedmetadata", () => (video.currentTime = this.startAt), { once: true });
    }
    video.src = this.url;
    video.play().catch(() => {});
  }
}
