// facecast Web SDK: shows a facecast avatar session in a page and sends the user's microphone.
// An ES module with no dependencies and no build step. Served at `/sdk/facecast.js`.
//
//   import { FacecastAvatar } from "https://avatars.example.com/sdk/facecast.js";
//   const avatar = new FacecastAvatar(document.getElementById("avatar"),
//                                     { sessionToken, apiHost: "https://avatars.example.com" });
//   avatar.on("avatar_started_speaking", (e) => ...);
//   await avatar.init();            // resolves when the avatar video plays
//   ...
//   await avatar.dispose();         // leaves (the server session ends by timeout or DELETE)
//
// Signalling contract (docs/webrtc.md): POST {apiHost}/_sdk/v0/webrtc with header
// X-Session-Token and {sdp, type:"offer"} → {sdp, type:"answer", peer_id, session_id, video};
// DELETE {apiHost}/_sdk/v0/webrtc/{peer_id} to leave. Events travel as JSON on the "events"
// data channel.

/**
 * @typedef {Object} FacecastOptions
 * @property {string} sessionToken   The short-lived token your backend got from POST /api/v1/sessions.
 * @property {string} [apiHost]      Base URL of the facecast server (default: this page's origin).
 * @property {MediaStream|MediaStreamTrack|false} [audioSource]
 *   The microphone: a stream or track you captured, `false` for none, or omitted to let the SDK
 *   call getUserMedia (echo cancellation, noise suppression and auto gain on).
 * @property {RTCIceServer[]} [iceServers] STUN/TURN servers for the browser (default: the
 *   server's own `FACECAST_ICE_SERVERS`, fetched from `GET /_sdk/v0/config`).
 * @property {boolean} [reconnect]    Rejoin automatically after a network drop (default: true).
 * @property {"contain"|"cover"} [fit] How the avatar fills the element (default: "contain").
 */

/**
 * @typedef {Object} FacecastError
 * @property {"error"} type
 * @property {"invalid_token"|"session_ended"|"media_error"|"engine_error"|"internal_error"|"limits_exceeded"|"connection_error"|string} code
 * @property {string} message
 * @property {string|null} session_id
 * @property {string} [request_id]  set on the rejection of a `task()` call
 */

/**
 * @typedef {"avatar_started_speaking"|"avatar_ended_speaking"|"local_mic_state_change"|
 *   "connection_state_change"|"error"|"session_ended"|"idle"|"message"|"task_state"} FacecastEvent
 *
 * Payloads: avatar_started_speaking {segment_id}; avatar_ended_speaking {segment_id, interrupted};
 * local_mic_state_change {enabled}; connection_state_change {state: "connecting"|"connected"|
 * "reconnecting"|"disconnected"|"closed"}; error FacecastError; session_ended {reason};
 * idle {}; message {data} (a custom message from the conversation engine); task_state
 * {task_id, state: "queued"|"speaking"|"done"|"cancelled"|"recorded"}.
 */

const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const DISCONNECT_GRACE_MS = 2500;
const GATHER_TIMEOUT_MS = 3000;
const INIT_TIMEOUT_MS = 20000;
const BARGE_IN_MUTE_MS = 150;   // covers what the browser buffered of an interrupted reply
const TASK_TIMEOUT_MS = 10000;

export class FacecastAvatar {
  /**
   * @param {HTMLElement} element  The container; the SDK adds a <video> (and a <canvas> for
   *   transparent avatars) that fill it.
   * @param {FacecastOptions} options
   */
  constructor(element, options) {
    if (!element) throw new Error("FacecastAvatar needs a DOM element");
    if (!options || !options.sessionToken) throw new Error("FacecastAvatar needs a sessionToken");
    this.element = element;
    this.token = options.sessionToken;
    this.apiHost = (options.apiHost || window.location.origin).replace(/\/+$/, "");
    this.audioSource = options.audioSource;
    /** @type {RTCIceServer[]|null} null: ask the server (init) */
    this.iceServers = options.iceServers || null;
    this.autoReconnect = options.reconnect !== false;
    this.fit = options.fit || "contain";
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {RTCDataChannel|null} */
    this.channel = null;
    this.peerId = null;
    this.sessionId = null;
    this.layout = { width: 512, height: 512, fps: 25, alpha: "none" };
    this.state = "new";
    this.speaking = false;
    this.ended = false;
    this.disposed = false;
    /** @type {MediaStreamTrack|null} */
    this.micTrack = null;
    this._ownsMic = false;
    this._micEnabled = true;
    this._remote = new MediaStream();
    this._disconnectTimer = null;
    this._reconnecting = false;
    this._compositor = null;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
    this._requests = new Map();
    this._requestSeq = 0;

    this.video = document.createElement("video");
    this.video.playsInline = true;
    this.video.autoplay = true;
    this.video.setAttribute("data-facecast", "video");
    Object.assign(this.video.style, { width: "100%", height: "100%", objectFit: this.fit,
                                      display: "block", background: "transparent" });
    this.video.srcObject = this._remote;
    // leave promptly when the tab closes or navigates away (the server would notice later)
    this._onPageHide = () => { if (this.peerId && !this.ended) this._deletePeer(this.peerId); };
    window.addEventListener("pagehide", this._onPageHide);
  }

  // -- events ------------------------------------------------------------------------------
  /** @param {FacecastEvent} event @param {(payload: any) => void} cb */
  on(event, cb) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(cb);
    return this;
  }

  /** @param {FacecastEvent} event @param {(payload: any) => void} cb */
  off(event, cb) {
    const set = this._handlers.get(event);
    if (set) set.delete(cb);
    return this;
  }

  _emit(event, payload) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const cb of [...set]) {
      try { cb(payload); } catch (err) { console.error(`facecast: ${event} handler failed`, err); }
    }
  }

  _error(code, message) {
    /** @type {FacecastError} */
    const err = { type: "error", code, message, session_id: this.sessionId };
    this._emit("error", err);
    return err;
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("connection_state_change", { state });
  }

  // -- lifecycle ---------------------------------------------------------------------------
  /**
   * Capture the mic (unless given), join the session and wait until the avatar video plays.
   * Rejects with a FacecastError (also emitted as "error").
   * @returns {Promise<void>}
   */
  async init() {
    if (this.disposed) throw this._error("internal_error", "this avatar was disposed");
    this.element.appendChild(this.video);
    this._setState("connecting");
    try {
      await this._openMic();
    } catch (err) {
      this._error("media_error", `microphone unavailable: ${err && err.message || err}`);
      this.micTrack = null;   // go on without a mic: the avatar still plays
    }
    if (this.iceServers === null) this.iceServers = await this._serverIceServers();
    await this._connect();
    await this._waitPlaying();
    this._emit("idle", {});
  }

  /** The STUN/TURN servers the server is configured with; none if it cannot say. */
  async _serverIceServers() {
    try {
      const res = await fetch(`${this.apiHost}/_sdk/v0/config`,
                              { headers: { "X-Session-Token": this.token } });
      if (!res.ok) return [];   // the offer that follows reports a bad token properly
      const body = await res.json();
      return Array.isArray(body.ice_servers) ? body.ice_servers : [];
    } catch (err) {
      return [];
    }
  }

  /** Leave the session from this page (the server session lives on until DELETE or timeout). */
  async dispose() {
    if (this.disposed) return;
    this.disposed = true;
    window.removeEventListener("pagehide", this._onPageHide);
    clearTimeout(this._disconnectTimer);
    const peerId = this.peerId;
    this._closePc();
    if (peerId && !this.ended) await this._deletePeer(peerId);
    if (this._ownsMic && this.micTrack) this.micTrack.stop();
    this.micTrack = null;
    if (this._compositor) this._compositor.stop();
    this.video.srcObject = null;
    this.video.remove();
    this._setState("closed");
  }

  // -- microphone --------------------------------------------------------------------------
  /** Mute/unmute the microphone. @returns {boolean} whether the mic is now on. */
  toggleLocalAudio() {
    this._micEnabled = !this._micEnabled;
    if (this.micTrack) this.micTrack.enabled = this._micEnabled;
    this._emit("local_mic_state_change", { enabled: this._micEnabled });
    return this._micEnabled;
  }

  /** @returns {boolean} */
  get micEnabled() { return this._micEnabled; }

  /**
   * Ask for mic permission if needed and list the audio inputs.
   * @returns {Promise<{audioInputs: MediaDeviceInfo[]}>}
   */
  async requestMediaDevices() {
    let devices = await navigator.mediaDevices.enumerateDevices();
    if (!devices.some((d) => d.kind === "audioinput" && d.label)) {
      const probe = await navigator.mediaDevices.getUserMedia({ audio: true });
      probe.getTracks().forEach((t) => t.stop());
      devices = await navigator.mediaDevices.enumerateDevices();
    }
    return { audioInputs: devices.filter((d) => d.kind === "audioinput") };
  }

  /**
   * Switch the microphone without reconnecting.
   * @param {{audioDeviceId?: string}} devices
   */
  async setInputDevices({ audioDeviceId } = {}) {
    if (!audioDeviceId) return;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { deviceId: { exact: audioDeviceId }, echoCancellation: true,
               noiseSuppression: true, autoGainControl: true },
    });
    const track = stream.getAudioTracks()[0];
    track.enabled = this._micEnabled;
    const old = this.micTrack;
    const sender = this._audioSender();
    if (sender) await sender.replaceTrack(track);
    this.micTrack = track;
    if (old && this._ownsMic) old.stop();
    this._ownsMic = true;
  }

  async _openMic() {
    const src = this.audioSource;
    if (src === false || src === null) return;
    if (src instanceof MediaStreamTrack) { this.micTrack = src; return; }
    if (src instanceof MediaStream) { this.micTrack = src.getAudioTracks()[0] || null; return; }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.micTrack = stream.getAudioTracks()[0];
    this._ownsMic = true;
  }

  _audioSender() {
    if (!this.pc) return null;
    const t = this.pc.getTransceivers().find((x) => x.receiver.track.kind === "audio");
    return t ? t.sender : null;
  }

  // -- custom messages ---------------------------------------------------------------------
  /** Send a custom message to the conversation engine. @param {any} data */
  sendMessage(data) {
    if (!this.channel || this.channel.readyState !== "open") return false;
    this.channel.send(JSON.stringify({ type: "sdk.message", data }));
    return true;
  }

  // -- text tasks --------------------------------------------------------------------------
  /**
   * Ask the avatar to speak `text` (engines that speak text, e.g. `text-echo`; others record it
   * and speak nothing). Like POST /api/v1/sessions/{id}/tasks, from the page. Progress arrives
   * as `task_state` events ({task_id, state}); the first of them (`queued`) may come before
   * this promise resolves.
   * @param {string} text
   * @returns {Promise<{task_id: string}>} rejects with a FacecastError (`invalid_request`,
   *   `session_ended`, `limits_exceeded`, `connection_error`, ...) carrying `request_id`.
   */
  task(text) {
    const request_id = `req_${++this._requestSeq}`;
    const fail = (code, message) => Promise.reject(
      { type: "error", code, message, session_id: this.sessionId, request_id });
    if (this.ended) return fail("session_ended", "the session has ended");
    if (!this.channel || this.channel.readyState !== "open") {
      return fail("connection_error", "not connected to the avatar");
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this._settleRequest(request_id, null, {
        code: "connection_error", message: "the server did not answer the task" }), TASK_TIMEOUT_MS);
      this._requests.set(request_id, { resolve, reject, timer });
      try {
        this.channel.send(JSON.stringify({ type: "task", text, request_id }));
      } catch (err) {
        this._settleRequest(request_id, null, { code: "connection_error",
                                                message: `could not send: ${err && err.message || err}` });
      }
    });
  }

  /** Resolve (result) or reject (error {code, message}) the pending request `id`, once. */
  _settleRequest(id, result, error) {
    const req = this._requests.get(id);
    if (!req) return false;
    this._requests.delete(id);
    clearTimeout(req.timer);
    if (error) {
      req.reject({ type: "error", code: error.code || "internal_error", message: error.message || "",
                   session_id: error.session_id || this.sessionId, request_id: id });
    } else {
      req.resolve(result);
    }
    return true;
  }

  /** The channel the requests went out on is gone: they will never be answered. */
  _failRequests(code, message) {
    for (const id of [...this._requests.keys()]) this._settleRequest(id, null, { code, message });
  }

  // -- connection --------------------------------------------------------------------------
  async _connect() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this._remote = new MediaStream();
    this.video.srcObject = this._remote;
    pc.addTransceiver("video", { direction: "recvonly" });
    if (this.micTrack) {
      this.micTrack.enabled = this._micEnabled;
      pc.addTransceiver(this.micTrack, { direction: "sendrecv" });
    } else {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    const channel = pc.createDataChannel("events");
    this.channel = channel;
    channel.onmessage = (ev) => this._onMessage(ev.data);
    pc.ontrack = (ev) => {
      if (pc !== this.pc) return;
      // ask for the smallest receive buffering (barge-in must go quiet fast; LAN-grade jitter)
      try { ev.receiver.jitterBufferTarget = 0; } catch (_) { /* not supported */ }
      try { ev.receiver.playoutDelayHint = 0; } catch (_) { /* not supported */ }
      this._remote.addTrack(ev.track);
      if (this.video.paused) this.video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => this._onPcState(pc);

    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, GATHER_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(`${this.apiHost}/_sdk/v0/webrtc`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Session-Token": this.token },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
      });
    } catch (err) {
      this._closePc();
      throw this._error("connection_error", `cannot reach ${this.apiHost}: ${err.message || err}`);
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      this._closePc();
      throw this._httpError(res.status, body);
    }
    if (pc !== this.pc || this.disposed) {   // disposed while we were waiting
      pc.close();
      await this._deletePeer(body.peer_id);
      throw this._error("internal_error", "disposed while connecting");
    }
    this.peerId = body.peer_id;
    this.sessionId = body.session_id || this.sessionId;
    if (body.video) this.layout = body.video;
    this._setupCompositor();
    await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
  }

  _httpError(status, body) {
    // facecast's error body is {code, message, detail[]}; FastAPI-style bodies carry only detail
    let detail = body && (body.message || body.detail);
    if (Array.isArray(detail)) detail = detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
    else if (detail && typeof detail === "object") detail = JSON.stringify(detail);
    detail = detail || `HTTP ${status}`;
    if (status === 401) return this._error("invalid_token", String(detail));
    if (status === 410 || status === 409) {
      this._markEnded("session_ended");
      return this._error("session_ended", String(detail));
    }
    if (status === 429) return this._error("limits_exceeded", String(detail));
    return this._error((body && body.code) || "internal_error", String(detail));
  }

  _onPcState(pc) {
    if (pc !== this.pc || this.disposed) return;
    const s = pc.connectionState;
    if (s === "connected") {
      clearTimeout(this._disconnectTimer);
      this._disconnectTimer = null;
      this._setState("connected");
    } else if (s === "disconnected") {
      clearTimeout(this._disconnectTimer);
      this._disconnectTimer = setTimeout(() => this._lost(pc), DISCONNECT_GRACE_MS);
    } else if (s === "failed") {
      this._lost(pc);
    } else if (s === "closed" && !this.ended) {
      this._lost(pc);
    }
  }

  /** The connection dropped while the session may still live: rejoin with a new offer. */
  async _lost(pc) {
    if (pc !== this.pc || this.disposed || this.ended || this._reconnecting) return;
    if (!this.autoReconnect) {
      this._closePc();
      this._setState("disconnected");
      this._error("connection_error", "the connection to the avatar was lost");
      return;
    }
    this._reconnecting = true;
    this._setState("reconnecting");
    const oldPeer = this.peerId;
    this._closePc();
    if (oldPeer) this._deletePeer(oldPeer);    // best effort; the server also notices
    for (let attempt = 0; !this.disposed && !this.ended; attempt++) {
      try {
        await this._connect();
        this._reconnecting = false;
        return;
      } catch (err) {
        const code = err && err.code;
        if (code === "invalid_token" || code === "session_ended" || code === "limits_exceeded") break;
        await sleep(RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]);
      }
    }
    this._reconnecting = false;
    if (!this.disposed) this._setState("disconnected");
  }

  _closePc() {
    const pc = this.pc;
    this.pc = null;
    this.channel = null;
    this._failRequests(this.ended ? "session_ended" : "connection_error",
                       this.ended ? "the session has ended" : "the connection to the avatar closed");
    if (pc) {
      pc.onconnectionstatechange = null;
      pc.ontrack = null;
      try { pc.close(); } catch (_) { /* already closed */ }
    }
  }

  async _deletePeer(peerId) {
    if (!peerId) return;
    try {
      await fetch(`${this.apiHost}/_sdk/v0/webrtc/${encodeURIComponent(peerId)}`, {
        method: "DELETE", headers: { "X-Session-Token": this.token }, keepalive: true,
      });
    } catch (_) { /* leaving anyway */ }
  }

  _markEnded(reason) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this._disconnectTimer);
    this._emit("session_ended", { reason });
  }

  /**
   * Barge-in: the server has already dropped the rest of the reply, but the browser still holds
   * 30-60 ms of it in its jitter buffer. The event arrives on the data channel ahead of that
   * audio, so muting the avatar's audio track briefly makes the cut immediate.
   */
  _dropBufferedAudio() {
    const track = this._remote && this._remote.getAudioTracks()[0];
    if (!track) return;
    track.enabled = false;
    clearTimeout(this._unmuteTimer);
    this._unmuteTimer = setTimeout(() => { track.enabled = true; }, BARGE_IN_MUTE_MS);
  }

  _onMessage(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch (_) { return; }
    switch (msg.type) {
      case "avatar_started_speaking":
        this.speaking = true;
        this._emit("avatar_started_speaking", msg);
        break;
      case "avatar_ended_speaking":
        this.speaking = false;
        if (msg.interrupted) this._dropBufferedAudio();
        this._emit("avatar_ended_speaking", msg);
        this._emit("idle", {});
        break;
      case "session_ended":
        this._markEnded(msg.reason);
        this._closePc();
        this._setState("closed");
        break;
      case "task_created":
        this._settleRequest(msg.request_id, { task_id: msg.task_id }, null);
        break;
      case "task_state":
        this._emit("task_state", { task_id: msg.task_id, state: msg.state });
        break;
      case "error":
        // an answer to one of our requests rejects that request's promise instead
        if (msg.request_id != null && this._settleRequest(msg.request_id, null, msg)) break;
        this._emit("error", { type: "error", code: msg.code || "internal_error",
                              message: msg.message || "", session_id: msg.session_id || this.sessionId });
        break;
      case "sdk.message":
        this._emit("message", { data: msg.data });
        break;
      case "pong":
        break;
      default:
        this._emit(msg.type, msg);
    }
  }

  async _waitPlaying() {
    if (this.video.readyState >= 2 && !this.video.paused) return;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(this._error("media_error", "the avatar video did not start"));
      }, INIT_TIMEOUT_MS);
      const onPlaying = () => { cleanup(); resolve(); };
      const onEnded = () => { cleanup(); reject(this._error("session_ended", "the session ended")); };
      const cleanup = () => {
        clearTimeout(timer);
        this.video.removeEventListener("playing", onPlaying);
        this.off("session_ended", onEnded);
      };
      this.video.addEventListener("playing", onPlaying);
      this.on("session_ended", onEnded);
      this.video.play().catch(() => { /* autoplay policy: "playing" fires after a gesture */ });
    });
  }

  // -- transparent background: the stacked matte ------------------------------------------
  _setupCompositor() {
    if (this.layout.alpha !== "stacked") {
      if (this._compositor) { this._compositor.stop(); this._compositor = null; }
      this.video.style.opacity = "1";
      return;
    }
    if (this._compositor) return;
    this._compositor = new MatteCompositor(this.video, this.element, this.layout, this.fit);
  }
}

/**
 * Draws the stacked-matte video (RGB on top, alpha as grey below) onto a transparent canvas.
 * WebGL when available, else a 2D canvas. The <video> stays (invisible) for the audio.
 */
class MatteCompositor {
  constructor(video, element, layout, fit) {
    this.video = video;
    this.canvas = document.createElement("canvas");
    this.canvas.width = layout.width;
    this.canvas.height = layout.height;
    this.canvas.setAttribute("data-facecast", "canvas");
    Object.assign(this.canvas.style, { width: "100%", height: "100%", objectFit: fit,
                                       display: "block", background: "transparent" });
    Object.assign(video.style, { position: "absolute", width: "1px", height: "1px", opacity: "0",
                                 pointerEvents: "none" });
    element.appendChild(this.canvas);
    this.running = true;
    this.frames = 0;
    this.gl = this._initGl();
    if (!this.gl) {
      this.ctx = this.canvas.getContext("2d");
      this.scratch = document.createElement("canvas");
      this.scratch.width = layout.width;
      this.scratch.height = layout.height * 2;
      this.sctx = this.scratch.getContext("2d", { willReadFrequently: true });
    }
    this._schedule();
  }

  _schedule() {
    if (!this.running) return;
    if (this.video.requestVideoFrameCallback) {
      this.video.requestVideoFrameCallback(() => { this._draw(); this._schedule(); });
    } else {
      requestAnimationFrame(() => { this._draw(); this._schedule(); });
    }
  }

  _initGl() {
    // preserveDrawingBuffer: the picture stays readable between frames (drawImage of the
    // canvas, toDataURL, screenshots); without it a read outside our draw sees a cleared buffer
    const gl = this.canvas.getContext("webgl", { premultipliedAlpha: false, alpha: true,
                                                 preserveDrawingBuffer: true });
    if (!gl) return null;
    const vs = "attribute vec2 p; varying vec2 uv; void main(){ uv = vec2((p.x+1.0)/2.0, (1.0-p.y)/2.0); gl_Position = vec4(p,0.0,1.0); }";
    const fs = "precision mediump float; varying vec2 uv; uniform sampler2D t;" +
      "void main(){ vec3 c = texture2D(t, vec2(uv.x, uv.y*0.5)).rgb;" +
      " float a = texture2D(t, vec2(uv.x, 0.5 + uv.y*0.5)).r; gl_FragColor = vec4(c, a); }";
    const prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const sh = gl.createShader(type);
      gl.shaderSource(sh, src);
      gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) return null;
      gl.attachShader(prog, sh);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) return null;
    gl.useProgram(prog);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const loc = gl.getAttribLocation(prog, "p");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    return gl;
  }

  _draw() {
    const v = this.video;
    if (!this.running || v.readyState < 2 || !v.videoWidth) return;
    const w = v.videoWidth, h = v.videoHeight / 2;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      if (this.scratch) { this.scratch.width = w; this.scratch.height = 2 * h; }
    }
    if (this.gl) {
      const gl = this.gl;
      gl.viewport(0, 0, w, h);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, v);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    } else {
      this.sctx.drawImage(v, 0, 0);
      const img = this.sctx.getImageData(0, 0, w, 2 * h);
      const d = img.data, n = w * h * 4;
      for (let i = 0; i < n; i += 4) d[i + 3] = d[n + i];
      this.ctx.putImageData(new ImageData(d.subarray(0, n), w, h), 0, 0);
    }
    this.frames++;
  }

  stop() {
    this.running = false;
    this.canvas.remove();
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === "complete") done(); }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export default FacecastAvatar;
