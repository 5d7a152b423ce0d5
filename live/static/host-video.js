// The host console's video beyond the camera (SPEC §11): for the open show, the HLS encoder's state (GET
// /api/rooms/{room}/hls, asked every 3 s while the show is live: state, segments, the last segment's age,
// restarts, size on disk, picture size, dropped frames) and its replay (回放: recording or ready, how long,
// until when it is kept; 公开/隐藏 for viewers, 删除 after a confirmation); for the shop, how long replays are
// kept and how long a show's open sales stay open after it ends (回放带货), saved with PATCH /api/shop.
// host.js tells this module which show is open and when its status changes.

import { ApiError, describe } from "./api.js";
import { $, clock, onSubmit, setText, show } from "./dom.js";
import { registerTab } from "./host-leaders.js";
import { t } from "./i18n.js";

const HLS_EVERY_MS = 3000;
const HLS_STATE = {
  off: "host.hls.state.off",
  waiting: "host.hls.state.waiting",
  encoding: "host.hls.state.encoding",
  restarting: "host.hls.state.restarting",
  ended: "host.hls.state.ended",
};
const REPLAY_STATE = { recording: "host.replay.state.recording", ready: "host.replay.state.ready" };

let call = null; // host.js's authenticated call (a 401 ends the session)
let room = null; // {id, status, timer, load}: the open show

const errorTo = (node) => (error) => setText(node, describe(error));
const path = (roomId, suffix) => `/api/rooms/${encodeURIComponent(roomId)}${suffix}`;

function when(iso) {
  return iso ? new Date(iso).toLocaleString(document.documentElement.lang) : "";
}

/** "35 MB", "1.2 GB": a size on disk. */
export function sizeText(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes || 0;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value < 10 && unit ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** "1:02:05" or "2:05": a duration in seconds. */
function durationText(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

export function initHostVideo(authenticatedCall) {
  call = authenticatedCall;
  registerTab("shows", () => loadReplaySettings().catch(errorTo($("#replay-settings-error"))));
}

// -- the open show ---------------------------------------------------------------------------------------

/** host.js opened a show: its HLS state and replay, the HLS state asked again every 3 s while it is live. */
export function openRoomVideo(roomId, status) {
  closeRoomVideo();
  room = { id: roomId, status, timer: null, shown: false };
  setText($("#hls-error"), "");
  setText($("#host-replay-error"), "");
  renderHls(null);
  renderReplay(null);
  roomStatus(status);
}

/** The open show's status changed (went live, ended). */
export function roomStatus(status) {
  if (!room || (room.shown && status === room.status)) return; // a frame that changed nothing here
  room.shown = true;
  room.status = status;
  clearInterval(room.timer);
  room.timer = null;
  const current = room;
  const load = () => loadHls(current).catch(errorTo($("#hls-error")));
  load();
  if (status === "live") current.timer = setInterval(load, HLS_EVERY_MS);
  loadReplay(current).catch(errorTo($("#host-replay-error")));
}

/** The show was closed (another opened, signed out). */
export function closeRoomVideo() {
  if (room) {
    clearInterval(room.timer);
    clearTimeout(room.replayTimer);
  }
  room = null;
}

async function loadHls(current) {
  const status = await call(path(current.id, "/hls"));
  if (current !== room) return;
  setText($("#hls-error"), "");
  renderHls(status);
}

function renderHls(s) {
  const badge = $("#hls-state");
  const state = s ? s.state : "off";
  badge.dataset.state = s ? state : "";
  badge.className = `badge hls ${state}`;
  setText(badge, s ? t(HLS_STATE[state] || state) : "…");
  setText($("#hls-segments"), s ? s.segments : "–");
  setText($("#hls-duration"), s ? durationText(s.duration_seconds) : "–");
  // While it encodes, how long ago (a stalled encoder shows at once); afterwards, when.
  const last = s && s.last_segment_at ? new Date(s.last_segment_at) : null;
  const running = s && (s.state === "encoding" || s.state === "restarting");
  const age = last ? Math.max(0, Math.round((Date.now() - last.getTime()) / 1000)) : 0;
  setText($("#hls-last"), !last ? "–" : running ? t("host.hls.ago", { seconds: age }) : clock(last));
  setText($("#hls-restarts"), s ? s.restarts : "–");
  setText($("#hls-size"), s ? sizeText(s.bytes) : "–");
  setText($("#hls-picture"), s && s.width ? `${s.width}×${s.height}` : "–");
  setText($("#hls-dropped"), s ? s.dropped_frames : "–");
}

// -- its replay ------------------------------------------------------------------------------------------

async function loadReplay(current) {
  try {
    const replay = await call(path(current.id, "/replay"));
    if (current !== room) return;
    renderReplay(replay);
    // The show has ended and the encoder is finishing the recording: ready within seconds.
    if (replay.state === "recording" && current.status === "ended") {
      clearTimeout(current.replayTimer);
      current.replayTimer = setTimeout(() => loadReplay(current).catch(() => {}), 5000);
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "no_replay")) throw error;
    if (current === room) renderReplay(null);
  }
}

function renderReplay(replay) {
  show($("#host-replay-none"), !replay);
  show($("#host-replay-box"), Boolean(replay));
  if (!replay) return;
  const state = $("#host-replay-state");
  setText(state, t(REPLAY_STATE[replay.state] || replay.state));
  state.className = `badge ${replay.state === "recording" ? "live" : "ended"}`;
  const visibility = $("#host-replay-visibility");
  visibility.dataset.visible = String(replay.visible);
  setText(visibility, t(replay.visible ? "host.replay.visible" : "host.replay.hidden"));
  visibility.className = `badge ${replay.visible ? "open" : "closed"}`;
  const facts = [t("host.replay.duration", { time: durationText(replay.duration_seconds) })];
  if (replay.delete_at) facts.push(t("host.replay.delete_at", { time: when(replay.delete_at) }));
  setText($("#host-replay-facts"), facts.join(" · "));
  show($("#host-replay-show"), !replay.visible);
  show($("#host-replay-hide"), replay.visible);
}

async function setVisible(visible) {
  const current = room;
  setText($("#host-replay-error"), "");
  try {
    const replay = await call(path(current.id, "/replay"), { method: "PATCH", body: { visible } });
    if (current === room) renderReplay(replay);
  } catch (error) {
    setText($("#host-replay-error"), describe(error));
  }
}

$("#host-replay-show").addEventListener("click", () => room && setVisible(true));
$("#host-replay-hide").addEventListener("click", () => room && setVisible(false));
// Deleting cannot be undone (the files are gone): the console asks first.
$("#host-replay-delete").addEventListener("click", () => {
  $("#replay-delete-dialog").returnValue = "";
  $("#replay-delete-dialog").showModal();
});
$("#replay-delete-dialog").addEventListener("close", async () => {
  const current = room;
  if ($("#replay-delete-dialog").returnValue !== "delete" || !current) return;
  setText($("#host-replay-error"), "");
  try {
    await call(path(current.id, "/replay"), { method: "DELETE" });
    if (current === room) renderReplay(null);
  } catch (error) {
    setText($("#host-replay-error"), describe(error));
  }
});

// -- the shop's replay settings --------------------------------------------------------------------------

async function loadReplaySettings() {
  renderReplaySettings(await call("/api/shop"));
}

function renderReplaySettings(shop) {
  const form = $("#replay-settings-form");
  const keep = shop.replay_keep_days;
  form.querySelector("input[name=keep_days]").value = keep === null || keep === undefined ? "" : String(keep);
  form.querySelector("input[name=sales_hours]").value = String(shop.replay_sales_hours ?? 0);
  const days = shop.default_replay_keep_days;
  if (Number.isInteger(days)) form.querySelector("input[name=keep_days]").placeholder = String(days);
  setText($("#replay-settings-note"), keep === null || keep === undefined
    ? t("host.replay_settings.keep_default", { days: days ?? "?" })
    : keep === 0 ? t("host.replay_settings.keep_none") : t("host.replay_settings.keep_days", { days: keep }));
}

/** A whole number in [min, max] from a field; null for an empty one (where `empty` allows it). */
function wholeNumber(text, { min, max }) {
  const value = String(text ?? "").trim();
  if (!value) return null;
  const number = Number(value);
  return Number.isInteger(number) && number >= min && number <= max ? number : NaN;
}

onSubmit($("#replay-settings-form"), async ({ keep_days: keepText, sales_hours: hoursText }) => {
  setText($("#replay-settings-error"), "");
  const keep = wholeNumber(keepText, { min: 0, max: 3650 });
  const hours = wholeNumber(hoursText, { min: 0, max: 720 });
  if (Number.isNaN(keep)) throw new Error(t("host.replay_settings.bad_days"));
  if (Number.isNaN(hours)) throw new Error(t("host.replay_settings.bad_hours"));
  const body = { replay_keep_days: keep, replay_sales_hours: hours ?? 0 };
  renderReplaySettings(await call("/api/shop", { method: "PATCH", body }));
  setText($("#replay-settings-status"), t("host.replay_settings.saved"));
}, errorTo($("#replay-settings-error")));
