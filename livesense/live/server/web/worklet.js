// AudioWorklet processors of the livesense browser client (the AudioContext runs at 48 kHz).
//
// "capture": microphone -> 480-sample (10 ms) Float32 packets posted to the page.
// "playback": binaural packets from the page -> an adaptive jitter buffer -> the speakers.
//   Playout starts once `target` samples are buffered; an underrun plays silence and raises
//   the target by 10 ms (up to 300 ms); a buffer that stays 100 ms above target is trimmed
//   back to it (latency shedding). Counters go back to the page every ~100 ms.

const PACKET = 480;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new Float32Array(PACKET);
    this.n = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        this.buf[this.n++] = ch[i];
        if (this.n === PACKET) {
          this.port.postMessage(this.buf, [this.buf.buffer]);
          this.buf = new Float32Array(PACKET);
          this.n = 0;
        }
      }
    }
    return true;
  }
}

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.cap = 2 * sampleRate; // 2 s ring per channel
    this.left = new Float32Array(this.cap);
    this.right = new Float32Array(this.cap);
    this.w = 0; // samples written (absolute)
    this.r = 0; // samples read (absolute)
    this.target = Math.round(0.04 * sampleRate);
    this.minTarget = Math.round(0.02 * sampleRate);
    this.maxTarget = Math.round(0.3 * sampleRate);
    this.started = false;
    this.played = 0;
    this.underruns = 0;
    this.trimmed = 0;
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.push(e.data);
  }

  push(stereo) {
    // stereo: interleaved Float32Array [l0, r0, l1, r1, ...]
    const n = stereo.length >> 1;
    for (let i = 0; i < n; i++) {
      const k = (this.w + i) % this.cap;
      this.left[k] = stereo[2 * i];
      this.right[k] = stereo[2 * i + 1];
    }
    this.w += n;
    if (this.w - this.r > this.cap) {
      this.trimmed += this.w - this.r - this.cap;
      this.r = this.w - this.cap;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const L = out[0];
    const R = out[1] || out[0];
    const frames = L.length;
    let avail = this.w - this.r;
    if (!this.started && avail >= this.target) this.started = true;
    if (this.started && avail > this.target + 0.1 * sampleRate) {
      this.trimmed += avail - this.target; // shed latency
      this.r = this.w - this.target;
      avail = this.target;
    }
    let n = 0;
    if (this.started) {
      n = Math.min(frames, avail);
      for (let i = 0; i < n; i++) {
        const k = (this.r + i) % this.cap;
        L[i] = this.left[k];
        R[i] = this.right[k];
      }
      this.r += n;
      this.played += n;
      if (n < frames) {
        this.underruns += 1;
        this.started = false;
        this.target = Math.min(this.maxTarget, this.target + Math.round(0.01 * sampleRate));
      }
    }
    for (let i = n; i < frames; i++) {
      L[i] = 0;
      R[i] = 0;
    }
    this.sinceReport += frames;
    if (this.sinceReport >= 0.1 * sampleRate) {
      this.sinceReport = 0;
      this.port.postMessage({
        played: this.played,
        underruns: this.underruns,
        trimmed: this.trimmed,
        buffered: this.w - this.r,
        target: this.target,
      });
    }
    return true;
  }
}

registerProcessor("capture", CaptureProcessor);
registerProcessor("playback", PlaybackProcessor);
