// The room websocket (SPEC §5): a snapshot, then events numbered by `seq`. After a drop it reconnects with
// backoff and asks for the events after the last `seq` it saw, in the same `epoch`: the hub replays exactly
// what was missed, or sends a fresh snapshot when it cannot. Which close codes are final (the token or the
// room is wrong: reconnecting cannot help) is the server's table, served as close-codes.js
// (realtime/close_codes.py); every other close is retried.

import { CLOSE, FINAL } from "./close-codes.js";

// What a frame of each type hands its handler (the frames of SPEC §5; the snapshot goes whole).
const PAYLOAD = {
  snapshot: (frame) => [frame],
  card: (frame) => [frame.card],
  stock: (frame) => [frame.card_id, frame.stock_left],
  viewers: (frame) => [frame.count],
  room: (frame) => [frame.room],
  // role: "host" on the host's lines (the server's word, never the name's): the pages badge those
  chat: (frame) => [frame.from, frame.text, frame.role],
  order: (frame) => [frame.order],
  error: (frame) => [frame.error, frame], // the frame too: retry_after with rate_limited
};

/**
 * A RoomSocket `onFrame` that hands each frame to the page's handler of its type (a page leaves out the
 * types it ignores; unknown types are ignored), then calls `after` with the frame.
 * @param {{[type: string]: (...payload: any[]) => void}} handlers
 * @param {(frame: object) => void} [after]
 */
export function routeFrames(handlers, after = () => {}) {
  return (frame) => {
    const handle = Object.hasOwn(handlers, frame.type) ? handlers[frame.type] : null;
    if (handle && Object.hasOwn(PAYLOAD, frame.type)) handle(...PAYLOAD[frame.type](frame));
    after(frame);
  };
}

export class RoomSocket {
  /**
   * @param {string} roomId
   * @param {string} token  a host or viewer token
   * @param {{onFrame: (frame: object) => void, onStatus?: (status: string) => void,
   *          onFatal?: (code: number, reason: string) => void}} handlers
   * `onStatus(status, code)`: "connecting", "live", "reconnecting" (with the close code that caused it),
   * "closed"; `onFatal(code)`: a final close: the socket stays closed until the page makes a new one.
   */
  constructor(roomId, token, { onFrame, onStatus = () => {}, onFatal = () => {} }) {
    this.roomId = roomId;
    this.token = token;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onFatal = onFatal;
    this.seq = null;
    this.epoch = null;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
    this.online = () => this.reconnectNow();
    window.addEventListener("online", this.online);
  }

  url() {
    const url = new URL(`/ws/rooms/${encodeURIComponent(this.roomId)}`, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token);
    if (this.seq !== null && this.epoch) {
      url.searchParams.set("since", String(this.seq));
      url.searchParams.set("epoch", this.epoch);
    }
    return url.href;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.onStatus(this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("message", (event) => this.receive(ws, event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event));
  }

  receive(ws, data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "snapshot") {
      this.seq = frame.seq;
      this.epoch = frame.epoch || null;
    } else if (typeof frame.seq === "number") {
      if (this.seq !== null && frame.seq <= this.seq) return; // already seen (a replay overlapping)
      if (this.seq !== null && frame.seq > this.seq + 1) {
        ws.close(CLOSE.GAP, "gap"); // missed some: reconnect and have them replayed after this.seq
        return;
      }
      this.seq = frame.seq;
    }
    if (this.attempt) this.attempt = 0;
    this.onStatus("live");
    this.onFrame(frame);
  }

  closed(ws, event) {
    if (ws !== this.ws || this.stopped) return;
    this.ws = null;
    if (FINAL.has(event.code)) {
      this.stopped = true;
      this.onStatus("closed");
      this.onFatal(event.code, event.reason);
      return;
    }
    this.attempt += 1;
    const delay = Math.min(15_000, 300 * 2 ** Math.min(this.attempt - 1, 6)) * (0.75 + Math.random() / 2);
    this.onStatus("reconnecting", event.code);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    this.connect();
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.online);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
  }
}
