/* The generation stepper: one token per click through the decoding engine (KV cache, processors,
 * the one sampler), with the distribution each token was drawn from and its attention over every
 * earlier token (each head of the chosen layer).
 */
"use strict";

(function () {
  const view = { session: null, last: null, layer: -1, renders: 0 };

  function settings() {
    const topK = Number(AX.$("gen-top-k").value);
    return {
      temperature: Number(AX.$("gen-temperature").value), top_k: topK > 0 ? topK : null,
      top_p: Number(AX.$("gen-top-p").value), seed: Number(AX.$("gen-seed").value),
    };
  }

  function render() {
    const layers = (AX.info && AX.info.layers) || (AX.analysis && AX.analysis.stacks[0].layers) || 1;
    AX.fillSelect(AX.$("gen-layer"), AX.range(layers).map((l) => [l, String(l)]), view.layer < 0 ? layers - 1 : view.layer);
    if (view.layer < 0) view.layer = layers - 1;
  }

  async function start() {
    const text = AX.$("text").value;
    const answer = await AX.api("generate/start", Object.assign({ text }, settings()));
    view.session = answer.session;
    view.last = null;
    tokens(answer.tokens, answer.prompt_length);
    AX.$("gen-bars").replaceChildren();
    AX.sizeCanvas(AX.$("gen-attention"), 10, 10);
    AX.$("gen-step").disabled = false;
    AX.$("gen-step10").disabled = false;
  }

  async function step(times) {
    if (!view.session) await start();
    for (let i = 0; i < times; i++) {
      const answer = await AX.api("generate/step", Object.assign({ session: view.session, layer: view.layer }, settings()));
      view.last = answer;
      tokens(answer.tokens, answer.prompt_length);
      bars(answer.bars, answer.finish_reason);
      if (answer.attention) attention(answer.attention, answer.attention_query);
      if (answer.finish_reason) {
        AX.$("gen-step").disabled = true;
        AX.$("gen-step10").disabled = true;
        AX.message(`generation finished: ${answer.finish_reason.replace("_", " ")}`, "info");
        break;
      }
    }
  }

  function tokens(list, promptLength) {
    const box = AX.$("gen-tokens");
    box.replaceChildren(...list.map((t, i) => AX.el("span", { class: "chip" + (i >= promptLength ? " new" : ""), text: t })));
    box.dataset.count = String(list.length);
    box.dataset.generated = String(list.length - promptLength);
  }

  function bars(list, finish) {
    const rows = list.map((b) => {
      const fill = AX.el("span", { class: "bar-fill" });
      fill.style.width = (100 * b.p).toFixed(1) + "%";
      const tick = AX.el("span", { class: "bar-tick", title: "the model's own probability" });
      tick.style.left = (100 * b.raw).toFixed(1) + "%";
      return AX.el("div", { class: "bar-row" + (b.chosen ? " chosen" : ""), "data-p": String(b.p), "data-token": b.token }, [
        AX.el("span", { class: "bar-label", text: b.token }), AX.el("span", { class: "bar" }, [fill, tick]),
        AX.el("span", { class: "bar-value", text: AX.fmt(b.p, 3) })]);
    });
    if (finish === "stop_token") rows.push(AX.el("p", { class: "note", text: "the model chose its end-of-sequence token" }));
    AX.$("gen-bars").replaceChildren(...rows);
  }

  function attention(att, query) {
    const canvas = AX.$("gen-attention");
    const shown = Math.min(att.keys, 64); // the last 64 keys
    const first = att.keys - shown;
    const cell = Math.max(8, Math.min(22, Math.floor(760 / shown)));
    const labelW = 56;
    const width = labelW + shown * cell + 10;
    const height = 20 + att.heads * cell + 90;
    const ctx = AX.sizeCanvas(canvas, width, height);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let h = 0; h < att.heads; h++) {
      const row = att.weights[h];
      let peak = 0;
      for (let k = first; k < att.keys; k++) peak = Math.max(peak, row[k]);
      for (let k = first; k < att.keys; k++) {
        const [r, g, b] = AX.heatColour(row[k] / (peak || 1));
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(labelW + (k - first) * cell, 10 + h * cell, cell - 1, cell - 1);
      }
      ctx.fillStyle = "#333";
      ctx.textAlign = "right";
      ctx.fillText(`head ${h}`, labelW - 6, 10 + h * cell + cell / 2);
    }
    ctx.textAlign = "left";
    for (let k = first; k < att.keys; k++) {
      ctx.save();
      ctx.translate(labelW + (k - first) * cell + cell / 2, 16 + att.heads * cell);
      ctx.rotate(Math.PI / 3);
      ctx.fillStyle = k === query ? "#c00" : "#111";
      ctx.fillText(AX.short(att.tokens[k], 10), 0, 0);
      ctx.restore();
    }
    canvas.dataset.keys = String(att.keys);
    canvas.dataset.heads = String(att.heads);
    canvas.dataset.layer = String(att.layer);
    view.renders += 1;
    canvas.dataset.renders = String(view.renders);
    AX.markRendered("generate");
  }

  function init() {
    const label = (id) => () => { AX.$(id + "-label").textContent = AX.$(id).value; };
    AX.$("gen-temperature").addEventListener("input", label("gen-temperature"));
    AX.$("gen-top-p").addEventListener("input", label("gen-top-p"));
    AX.$("gen-start").addEventListener("click", () => AX.guard(() => { AX.clearMessage(); return start(); }));
    AX.$("gen-step").addEventListener("click", () => AX.guard(() => step(1)));
    AX.$("gen-step10").addEventListener("click", () => AX.guard(() => step(10)));
    AX.$("gen-layer").addEventListener("change", (e) => AX.guard(async () => {
      view.layer = Number(e.target.value);
      if (!view.session || !view.last) return;
      const att = await AX.api("generate/attention", { session: view.session, layer: view.layer });
      attention(att, view.last.attention_query);
    }));
  }

  view.render = render;
  view.init = init;
  AX.views.generate = view;
})();
