// Injected into test pages: measures what the user would see and hear.
// window.__probe.frames: {t (epoch ms), mouth (mean grey of the mouth box), counter (frame no.)}
//   (mouth and counter read the transport's test pattern), plus, once a reference is set,
//   mouthDiff: how much the real avatar's mouth box differs from the reference frame's, as the
//   mean absolute grey difference (0-255) at the best shift within ±SHIFT px, so the head's
//   idle sway and breathing (a few px) do not count, only a change of shape does; and faceDiff:
//   the plain mean absolute RGB difference of the face boxes (cheeks, nose) outside the mouth.
// window.__probe.audio:  {t (epoch ms at the end of the block), rms} per 256-sample block
// window.__probe.setRegions({mouth: [x, y, w, h], face: [[x, y, w, h], ...]}) (512-px frame),
// window.__probe.takeReference(): the next presented frame becomes the reference.
(() => {
  const P = (window.__probe = { frames: [], audio: [], started: false, regions: null,
                                reference: null, wantReference: false });
  P.setRegions = (r) => { P.regions = r; P.reference = null; };
  P.takeReference = () => { P.reference = null; P.wantReference = true; };
  const now = () => performance.timeOrigin + performance.now();
  const MOUTH = { y: 300, h: 120, x: 176, w: 160 };   // the test pattern's mouth bar
  const SHIFT = 6;
  const grab = (ctx, [x, y, w, h]) => ctx.getImageData(x, y, w, h).data;
  const mad = (a, b) => {
    let s = 0;
    for (let i = 0; i < a.length; i += 4) {
      s += Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
    }
    return s / (a.length / 4 * 3);
  };
  const grey = (d) => {
    const g = new Float32Array(d.length / 4);
    for (let i = 0; i < g.length; i++) g[i] = 0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2];
    return g;
  };
  // ref: w×h grey; cur: (w+2S)×(h+2S) grey around the same box; min over shifts of the MAD
  const shiftedMad = (ref, cur, w, h) => {
    const cw = w + 2 * SHIFT;
    let best = Infinity;
    for (let dy = 0; dy <= 2 * SHIFT; dy++) {
      for (let dx = 0; dx <= 2 * SHIFT; dx++) {
        let s = 0, n = 0;
        for (let y = 0; y < h; y += 2) {
          const r = y * w, c = (y + dy) * cw + dx;
          for (let x = 0; x < w; x += 2) { s += Math.abs(ref[r + x] - cur[c + x]); n++; }
        }
        best = Math.min(best, s / n);
      }
    }
    return best;
  };
  function regionDiffs(ctx, rec) {
    const R = P.regions;
    if (!R) return;
    const [x, y, w, h] = R.mouth;
    const now = { mouth: grey(grab(ctx, R.mouth)),
                  around: grey(grab(ctx, [x - SHIFT, y - SHIFT, w + 2 * SHIFT, h + 2 * SHIFT])),
                  face: R.face.map((b) => grab(ctx, b)) };
    if (P.wantReference) { P.reference = now; P.wantReference = false; P.referenceT = rec.t; }
    if (!P.reference) return;
    rec.mouthDiff = shiftedMad(P.reference.mouth, now.around, w, h);
    rec.faceDiff = now.face.reduce((s, d, i) => s + mad(d, P.reference.face[i]), 0) / now.face.length;
  }
  function start(video) {
    if (P.started) return;
    P.started = true;
    const c = document.createElement("canvas");
    c.width = 512; c.height = 512;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    const onFrame = (_now, meta) => {
      const t = now();
      if (video.videoWidth) {
        ctx.drawImage(video, 0, 0, video.videoWidth, video.videoHeight, 0, 0, 512,
                      512 * video.videoHeight / video.videoWidth);
        const m = ctx.getImageData(MOUTH.x, MOUTH.y, MOUTH.w, MOUTH.h).data;
        let s = 0;
        for (let i = 0; i < m.length; i += 4) s += m[i];
        const strip = ctx.getImageData(0, 0, 160, 16).data;
        let counter = 0;
        for (let bit = 0; bit < 10; bit++) if (strip[(8 * 160 + bit * 16 + 8) * 4] > 128) counter |= 1 << bit;
        const rec = { t, mouth: s / (m.length / 4), counter, presented: meta.presentationTime + performance.timeOrigin,
                      w: video.videoWidth, h: video.videoHeight };
        regionDiffs(ctx, rec);
        P.frames.push(rec);
        if (P.frames.length > 3000) P.frames.splice(0, 1000);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    const hook = () => {
      const stream = video.srcObject;
      const track = stream && stream.getAudioTracks()[0];
      if (!track) return setTimeout(hook, 50);
      const ac = new AudioContext();
      const src = ac.createMediaStreamSource(new MediaStream([track]));
      const sp = ac.createScriptProcessor(256, 1, 1);
      sp.onaudioprocess = (ev) => {
        const x = ev.inputBuffer.getChannelData(0);
        let s = 0;
        for (let i = 0; i < x.length; i++) s += x[i] * x[i];
        P.audio.push({ t: now(), rms: Math.sqrt(s / x.length) });
        if (P.audio.length > 40000) P.audio.splice(0, 10000);
      };
      src.connect(sp);
      sp.connect(ac.destination);
      P.audioTrackId = track.id;
      P.audioContext = ac;
    };
    hook();
  }
  const find = () => {
    const v = document.querySelector("video[data-facecast]");
    if (v) start(v); else setTimeout(find, 50);
  };
  document.addEventListener("DOMContentLoaded", find);
})();
