// Injected into test pages: measures what the user would see and hear.
// window.__probe.frames: {t (epoch ms), mouth (mean grey of the mouth box), counter (frame no.)}
// window.__probe.audio:  {t (epoch ms at the end of the block), rms} per 256-sample block
(() => {
  const P = (window.__probe = { frames: [], audio: [], started: false });
  const now = () => performance.timeOrigin + performance.now();
  const MOUTH = { y: 300, h: 120, x: 176, w: 160 };
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
        P.frames.push({ t, mouth: s / (m.length / 4), counter, presented: meta.presentationTime + performance.timeOrigin,
                        w: video.videoWidth, h: video.videoHeight });
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
