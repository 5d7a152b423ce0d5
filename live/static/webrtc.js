// WHIP (publish) and WHEP (watch) from the browser, non-trickle: the offer is sent once ICE gathering is
// complete, so it carries every candidate, and the answer comes back with all of the server's.
// fetch follows a 307 to an external video engine by itself (same method, same body). The peer uses the
// server's STUN/TURN servers (LIVECART_ICE_SERVERS), asked for with the token before each offer: they may
// carry TURN credentials, so no page embeds them.

import { api, errorOf } from "./api.js";

/** The room's ICE servers for `new RTCPeerConnection({iceServers})` (GET /api/rooms/{room}/video). */
async function iceServers(roomId, token) {
  const config = await api(`/api/rooms/${encodeURIComponent(roomId)}/video`, { token });
  return config.ice_servers;
}

function gathered(pc, timeoutMs = 5000) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const check = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, timeoutMs); // send what we have rather than hang on a slow interface
  });
}

async function negotiate(pc, endpoint, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  if (response.status !== 201) throw await errorOf(response);
  const answer = await response.text();
  const location = new URL(response.headers.get("Location"), response.url).href;
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  return location;
}

/** A WebRTC session with the server; `stop()` closes the peer and DELETEs the session's Location. */
class Session {
  constructor(pc, location, token) {
    this.pc = pc;
    this.location = location;
    this.token = token;
  }

  async stop() {
    this.pc.close();
    try {
      await fetch(this.location, { method: "DELETE", headers: { Authorization: `Bearer ${this.token}` } });
    } catch {
      // the server is gone too: nothing left to stop
    }
  }
}

/** WHIP: publish `stream` (camera and microphone) to the room, with the host token as the stream key. */
export async function publish(roomId, token, stream) {
  const pc = new RTCPeerConnection({ iceServers: await iceServers(roomId, token) });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  try {
    return new Session(pc, await negotiate(pc, `/api/rooms/${encodeURIComponent(roomId)}/whip`, token), token);
  } catch (error) {
    pc.close();
    throw error;
  }
}

/** WHEP: watch the room's video in `video` (a viewer token, or the host's). `servers`: the room's ICE
 * servers when the caller has just asked for them (GET /video), else they are asked for here. */
export async function play(roomId, token, video, servers = null) {
  const pc = new RTCPeerConnection({ iceServers: servers || (await iceServers(roomId, token)) });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (event) => {
    stream.addTrack(event.track);
    if (video.srcObject !== stream) video.srcObject = stream;
  });
  try {
    return new Session(pc, await negotiate(pc, `/api/rooms/${encodeURIComponent(roomId)}/whep`, token), token);
  } catch (error) {
    pc.close();
    throw error;
  }
}

/** How far behind the sender a WHEP picture is, from the peer's statistics: the video's jitter buffer
 * delay over the last interval (`jitterBufferDelay` / `jitterBufferEmittedCount`, both cumulative) plus
 * half the round trip of the selected candidate pair. `sample()` answers seconds, or null before frames. */
export class WhepDelay {
  constructor(pc) {
    this.pc = pc;
    this.last = null; // {delay, count} at the previous sample
  }

  async sample() {
    const stats = await this.pc.getStats();
    let buffer = null;
    let rtt = 0;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video" && report.jitterBufferEmittedCount > 0) {
        const now = { delay: report.jitterBufferDelay, count: report.jitterBufferEmittedCount };
        const last = this.last && now.count > this.last.count ? this.last : { delay: 0, count: 0 };
        buffer = (now.delay - last.delay) / (now.count - last.count);
        this.last = now;
      }
      if (report.type === "candidate-pair" && report.nominated && Number.isFinite(report.currentRoundTripTime)) {
        rtt = report.currentRoundTripTime;
      }
    });
    return buffer === null ? null : buffer + rtt / 2;
  }
}
