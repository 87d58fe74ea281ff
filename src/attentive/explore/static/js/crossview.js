/* Cross-attention: which source tokens (translation) or which stretch of audio (Whisper) each
 * output token read, as a heat map, rows = output tokens, columns = source tokens or audio
 * positions (two spectrogram frames, 20 ms, each); Whisper's spectrogram is drawn above, on the
 * same time axis. One head, or the mean of the layer's heads.
 */
"use strict";

(function () {
  const view = { layer: -1, head: "mean", block: null, layout: null, renders: 0 };
  const MAX_WIDTH = 960;

  function stack() {
    return AX.analysis.stacks.find((s) => s.name === "cross");
  }

  function speech() {
    return AX.analysis && AX.analysis.spectrogram;
  }

  async function render() {
    if (!AX.analysis || !stack()) return;
    const s = stack();
    if (view.layer < 0 || view.layer >= s.layers) view.layer = s.layers - 1;
    AX.fillSelect(AX.$("cross-layer"), AX.range(s.layers).map((l) => [l, String(l)]), view.layer);
    AX.fillSelect(AX.$("cross-head"), [["mean", "mean of heads"], ...AX.range(s.heads).map((h) => [h, String(h)])],
      view.head);
    const keys = speech() ? Math.min(AX.analysis.audio_positions, s.k_tokens.length) : s.k_tokens.length;
    const rows = Math.min(s.q_tokens.length, 64);
    view.block = await AX.api("attention", Object.assign(AX.ref(), {
      stack: "cross", layer: view.layer, head: view.head, q0: 0, q1: rows, k0: 0, k1: keys,
    }));
    AX.$("cross-note").textContent = speech()
      ? `Each transcript token (rows) over the audio (${AX.fmt(AX.analysis.seconds, 1)} s; one column per 20 ms). ` +
        `Transcript: “${AX.analysis.transcript}”.`
      : `Each output token (rows; the row reads the source to predict that token) over the source tokens ` +
        `(columns). Translation: “${AX.analysis.translation}”.`;
    draw();
  }

  function draw() {
    const s = stack();
    const block = view.block;
    const weights = block.weights[0]; // (rows, keys): one head or the mean
    const rows = weights.length;
    const cols = weights[0].length;
    const el = AX.$("cross-canvas");
    const probe = el.getContext("2d");
    probe.font = "13px system-ui, sans-serif";
    let labelW = 40;
    for (let r = 0; r < rows; r++) labelW = Math.max(labelW, probe.measureText(AX.short(s.q_tokens[r], 18)).width + 10);
    const audio = speech();
    const cell = audio ? Math.max(1, Math.min(8, Math.floor(MAX_WIDTH / cols))) : Math.max(10, Math.min(30, Math.floor(MAX_WIDTH / cols)));
    const rowH = Math.max(14, Math.min(24, cell));
    const top = audio ? 110 : 90;
    const width = labelW + cols * cell + 10;
    const height = top + rows * rowH + (audio ? 24 : 8);
    const ctx = AX.sizeCanvas(el, width, height);
    ctx.clearRect(0, 0, width, height);
    let peak = 0;
    for (const row of weights) for (const w of row) peak = Math.max(peak, w);
    const image = new Uint8Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) image[r * cols + c] = Math.round((weights[r][c] / (peak || 1)) * 255);
    AX.drawPixels(ctx, image, rows, cols, labelW, top, cols * cell, rows * rowH, AX.heatColour);
    ctx.font = "13px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = "#111";
    for (let r = 0; r < rows; r++) ctx.fillText(AX.short(s.q_tokens[r], 18), labelW - 6, top + r * rowH + rowH / 2);
    if (audio) {
      const pixels = AX.bytes(AX.analysis.spectrogram.pixels);
      const frames = AX.analysis.spectrogram.frames;
      const mels = AX.analysis.spectrogram.mels;
      const flipped = new Uint8Array(mels * frames); // low frequencies at the bottom
      for (let m = 0; m < mels; m++) flipped.set(pixels.subarray(m * frames, (m + 1) * frames), (mels - 1 - m) * frames);
      AX.drawPixels(ctx, flipped, mels, frames, labelW, 8, (frames / 2) * cell, top - 16, (t) => {
        const v = Math.round(255 * t);
        return [v, Math.round(v * 0.8), Math.round(255 - v * 0.7)];
      });
      ctx.textAlign = "center";
      ctx.font = "11px system-ui, sans-serif";
      for (let c = 0; c < cols; c += 50) ctx.fillText(`${c / 50}s`, labelW + c * cell, height - 10);
    } else {
      ctx.save();
      ctx.textAlign = "left";
      for (let c = 0; c < cols; c++) {
        ctx.save();
        ctx.translate(labelW + c * cell + cell / 2, top - 6);
        ctx.rotate(-Math.PI / 3);
        ctx.fillText(AX.short(s.k_tokens[c], 12), 0, 0);
        ctx.restore();
      }
      ctx.restore();
    }
    view.layout = { labelW, top, cell, rowH, rows, cols };
    el.dataset.rows = String(rows);
    el.dataset.cols = String(cols);
    el.dataset.layer = String(block.layer);
    el.dataset.head = String(view.head);
    view.renders += 1;
    el.dataset.renders = String(view.renders);
    AX.markRendered("cross");
  }

  function init() {
    AX.$("cross-layer").addEventListener("change", (e) => AX.guard(async () => { view.layer = Number(e.target.value); await render(); }));
    AX.$("cross-head").addEventListener("change", (e) => AX.guard(async () => {
      view.head = e.target.value === "mean" ? "mean" : Number(e.target.value);
      await render();
    }));
    const el = AX.$("cross-canvas");
    el.addEventListener("mousemove", (e) => {
      const lay = view.layout;
      const tip = AX.$("cross-tip");
      if (!lay) return;
      const r = el.getBoundingClientRect();
      const x = e.clientX - r.left;
      const y = e.clientY - r.top;
      const row = Math.floor((y - lay.top) / lay.rowH);
      const col = Math.floor((x - lay.labelW) / lay.cell);
      if (row < 0 || row >= lay.rows || col < 0 || col >= lay.cols) {
        tip.hidden = true;
        return;
      }
      const s = stack();
      const w = view.block.weights[0][row][col];
      const key = speech() ? `${AX.fmt(col / 50, 2)} s` : `“${s.k_tokens[col]}”`;
      tip.textContent = `“${s.q_tokens[row]}” → ${key}: ${AX.fmt(w, 4)}`;
      tip.dataset.weight = String(w);
      tip.dataset.row = String(row);
      tip.dataset.col = String(col);
      tip.style.left = Math.min(x + 14, el.clientWidth - 60) + "px";
      tip.style.top = y + 12 + "px";
      tip.hidden = false;
    });
    el.addEventListener("mouseleave", () => { AX.$("cross-tip").hidden = true; });
  }

  view.render = render;
  view.init = init;
  AX.views.cross = view;
})();
