// livesense browser client: microphone + webcam -> ws(s)://HOST/v1/session -> binaural audio,
// notes and answers back. Protocol: docs/protocol.md (binary header: kind u8, flags u8,
// reserved u16, seq u32, pts i64, little-endian). Audio goes both ways as f32le at 48 kHz.
"use strict";

const RATE = 48000;
const KIND_AUDIO_IN = 1;
const KIND_VIDEO_IN = 2;
const KIND_AUDIO_OUT = 3;
const ROOM_M = 4; // metres from the centre to the edge of the room view

// Counters the tests read.
const stats = {
  state: "idle",
  samplesSent: 0,
  samplesReceived: 0,
  samplesPlayed: 0,
  framesSent: 0,
  eventsShown: 0,
  notes: 0,
  answers: 0,
  errors: 0,
  underruns: 0,
  latencyMs: null,
  server: null,
};
window.livesense = stats;

const $ = (id) => document.getElementById(id);
let ws = null;
let ctx = null;
let media = null;
let capture = null;
let playback = null;
let videoTimer = null;
let seq = 0;
let vseq = 0;
let t0 = 0;
let asks = 0;
const sentAt = new Map(); // input packet end sample -> performance.now()
const speaker = { x: 1.5, y: 0.0 };
let lastPoseSent = 0;

function frame(kind, seqNo, pts, payload) {
  const body = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const buf = new ArrayBuffer(16 + body.byteLength);
  const dv = new DataView(buf);
  dv.setUint8(0, kind);
  dv.setUint8(1, 0);
  dv.setUint16(2, 0, true);
  dv.setUint32(4, seqNo >>> 0, true);
  dv.setBigInt64(8, BigInt(Math.round(pts)), true);
  new Uint8Array(buf, 16).set(body);
  return buf;
}

function setStatus(text) {
  stats.state = text;
  $("status").textContent = text;
}

function showEvent(ev) {
  const li = document.createElement("li");
  li.className = ev.type;
  if (ev.type === "note") {
    li.textContent = `[${ev.t1.toFixed(1)} s] ${ev.text}`;
    stats.notes += 1;
  } else if (ev.type === "answer") {
    li.textContent = `Q: ${ev.question || ev.id} — A: ${ev.text}`;
    stats.answers += 1;
  } else {
    li.textContent = `error ${ev.code}: ${ev.message}`;
    stats.errors += 1;
  }
  $("events").appendChild(li);
  li.scrollIntoView({ block: "nearest" });
  stats.eventsShown += 1;
}

function showStats() {
  const s = stats.server || {};
  const lat = s.latency_ms || {};
  const rows = {
    "state": stats.state,
    "end-to-end latency": stats.latencyMs == null ? "–" : `${stats.latencyMs.toFixed(1)} ms`,
    "server latency p50/p99": lat.p50 == null ? "–" : `${lat.p50} / ${lat.p99} ms`,
    "renderer": s.renderer ? `${s.renderer}${s.degraded ? " (degraded)" : ""}` : "–",
    "RTF": s.rtf == null ? "–" : s.rtf,
    "audio sent / played": `${(stats.samplesSent / RATE).toFixed(1)} s / ${(stats.samplesPlayed / RATE).toFixed(1)} s`,
    "underruns": stats.underruns,
    "video frames sent / dropped": `${stats.framesSent} / ${s.frames_dropped ?? 0}`,
    "evaluations": s.evaluations ?? 0,
  };
  const dl = $("stats");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(rows)) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dl.append(dt, dd);
  }
}

// ---------------------------------------------------------------- room view

function roomToCanvas(x, y, c) {
  // x forward = up on screen, y right = right on screen; listener at the centre.
  const s = c.width / (2 * ROOM_M);
  return [c.width / 2 + y * s, c.height / 2 - x * s];
}

function drawRoom() {
  const c = $("room");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#dde";
  for (let m = -ROOM_M; m <= ROOM_M; m++) {
    const [a] = roomToCanvas(0, m, c);
    const [, b] = roomToCanvas(m, 0, c);
    g.beginPath(); g.moveTo(a, 0); g.lineTo(a, c.height); g.stroke();
    g.beginPath(); g.moveTo(0, b); g.lineTo(c.width, b); g.stroke();
  }
  const [lx, ly] = roomToCanvas(0, 0, c);
  g.fillStyle = "#1d2330";
  g.beginPath(); g.arc(lx, ly, 10, 0, 2 * Math.PI); g.fill();
  g.beginPath(); g.moveTo(lx - 5, ly - 8); g.lineTo(lx, ly - 18); g.lineTo(lx + 5, ly - 8); g.fill();
  const [sx, sy] = roomToCanvas(speaker.x, speaker.y, c);
  g.fillStyle = "#e0662b";
  g.beginPath(); g.arc(sx, sy, 9, 0, 2 * Math.PI); g.fill();
  g.fillStyle = "#555";
  g.fillText(`speaker (${speaker.x.toFixed(1)}, ${speaker.y.toFixed(1)}) m`, 6, 14);
}

function sendPose(force) {
  const now = performance.now();
  if (!ws || ws.readyState !== WebSocket.OPEN || (!force && now - lastPoseSent < 50)) return;
  lastPoseSent = now;
  ws.send(JSON.stringify({ type: "pose", speaker: { position: [speaker.x, speaker.y, 0] } }));
}

function setupRoom() {
  const c = $("room");
  let dragging = false;
  const move = (e) => {
    const r = c.getBoundingClientRect();
    const s = c.width / (2 * ROOM_M);
    let y = ((e.clientX - r.left) * (c.width / r.width) - c.width / 2) / s;
    let x = (c.height / 2 - (e.clientY - r.top) * (c.height / r.height)) / s;
    const d = Math.hypot(x, y);
    if (d < 0.3) { x = (x / (d || 1)) * 0.3; y = (y / (d || 1)) * 0.3; } // not inside the head
    speaker.x = Math.max(-ROOM_M, Math.min(ROOM_M, x));
    speaker.y = Math.max(-ROOM_M, Math.min(ROOM_M, y));
    drawRoom();
    sendPose(false);
  };
  c.addEventListener("pointerdown", (e) => { dragging = true; c.setPointerCapture(e.pointerId); move(e); });
  c.addEventListener("pointermove", (e) => { if (dragging) move(e); });
  c.addEventListener("pointerup", () => { dragging = false; sendPose(true); });
  drawRoom();
}

// ---------------------------------------------------------------- session

function onBinary(data) {
  const dv = new DataView(data);
  if (dv.getUint8(0) !== KIND_AUDIO_OUT) return;
  const pts = Number(dv.getBigInt64(8, true));
  const stereo = new Float32Array(data.slice(16));
  const n = stereo.length >> 1;
  stats.samplesReceived += n;
  playback.port.postMessage(stereo, [stereo.buffer]);
  const end = pts + n;
  const t = sentAt.get(end);
  if (t !== undefined) {
    sentAt.delete(end);
    stats.latencyMs = performance.now() - t;
  }
}

function onText(text) {
  const ev = JSON.parse(text);
  if (ev.type === "ready") {
    setStatus(`live (session ${ev.session}, ${ev.renderer})`);
    startStreaming();
  } else if (ev.type === "stats") {
    stats.server = ev;
    showStats();
  } else if (ev.type === "done") {
    setStatus("done");
  } else if (ev.type === "note" || ev.type === "answer" || ev.type === "error") {
    showEvent(ev);
  }
}

function startStreaming() {
  t0 = performance.now();
  capture.port.onmessage = (e) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const pkt = e.data; // Float32Array(480)
    ws.send(frame(KIND_AUDIO_IN, seq++, stats.samplesSent, pkt));
    stats.samplesSent += pkt.length;
    sentAt.set(stats.samplesSent, performance.now());
    if (sentAt.size > 2000) sentAt.delete(sentAt.keys().next().value);
  };
  const fps = Number($("fps").value);
  if ($("video").checked && fps > 0 && media.getVideoTracks().length) {
    const canvas = document.createElement("canvas");
    const video = $("preview");
    videoTimer = setInterval(() => {
      if (!ws || ws.readyState !== WebSocket.OPEN || video.videoWidth === 0) return;
      const scale = Math.min(1, 320 / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      const pts = (performance.now() - t0) * 1000; // microseconds
      canvas.toBlob(async (blob) => {
        if (!blob || !ws || ws.readyState !== WebSocket.OPEN) return;
        const bytes = new Uint8Array(await blob.arrayBuffer());
        ws.send(frame(KIND_VIDEO_IN, vseq++, pts, bytes));
        stats.framesSent += 1;
      }, "image/jpeg", 0.7);
    }, 1000 / fps);
  }
}

async function start() {
  $("start").disabled = true;
  setStatus("starting…");
  const wantVideo = $("video").checked;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: wantVideo ? { width: 320, height: 240 } : false,
    });
  } catch (err) {
    setStatus(`camera/microphone unavailable: ${err.name}`);
    $("start").disabled = false;
    return;
  }
  $("preview").srcObject = media;
  ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  await ctx.audioWorklet.addModule("worklet.js");
  capture = new AudioWorkletNode(ctx, "capture", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit" });
  playback = new AudioWorkletNode(ctx, "playback", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [2] });
  playback.port.onmessage = (e) => {
    stats.samplesPlayed = e.data.played;
    stats.underruns = e.data.underruns;
  };
  const mute = new GainNode(ctx, { gain: 0 });
  ctx.createMediaStreamSource(media).connect(capture).connect(mute).connect(ctx.destination);
  playback.connect(ctx.destination);
  await ctx.resume();

  const token = new URLSearchParams(location.search).get("token") || "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/v1/session?token=${encodeURIComponent(token)}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: "start",
      audio: { sample_rate: RATE, format: "f32le", channels: 1 },
      video: { enabled: wantVideo },
      speaker: { position: [speaker.x, speaker.y, 0], orientation: [0, 0, 0, 1] },
      listener: { position: [0, 0, 0], orientation: [0, 0, 0, 1] },
      renderer: "dsp",
      reasoning: { enabled: true },
    }));
  };
  ws.onmessage = (e) => (typeof e.data === "string" ? onText(e.data) : onBinary(e.data));
  ws.onclose = (e) => {
    if (stats.state !== "done") setStatus(`closed (${e.code}${e.reason ? ": " + e.reason : ""})`);
    teardown();
  };
  $("stop").disabled = false;
}

function stop() {
  $("stop").disabled = true;
  if (videoTimer) clearInterval(videoTimer);
  videoTimer = null;
  if (capture) capture.port.onmessage = null;
  if (ws && ws.readyState === WebSocket.OPEN) {
    setStatus("finishing…");
    ws.send(JSON.stringify({ type: "stop" }));
  }
}

function teardown() {
  if (videoTimer) clearInterval(videoTimer);
  videoTimer = null;
  if (media) media.getTracks().forEach((t) => t.stop());
  $("start").disabled = false;
  $("stop").disabled = true;
  ws = null;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("askform").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("ask").value.trim();
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type: "ask", text, id: `web${++asks}` }));
  $("ask").value = "";
});
setupRoom();
showStats();
setInterval(showStats, 500);
