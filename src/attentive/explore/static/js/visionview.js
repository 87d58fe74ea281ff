/* Vision: the image with the class token's attention over the patches laid on it, per layer (the
 * mean over heads, or one head), or attention rollout through every layer; the prediction beside.
 */
"use strict";

(function () {
  const view = { map: "rollout", head: "mean", renders: 0 };
  const SIZE = 336;

  function render() {
    const a = AX.analysis;
    if (!a || !a.image) return;
    const layers = a.cls_mean.length;
    AX.fillSelect(AX.$("vision-map"), [["rollout", "rollout (all layers)"],
      ...AX.range(layers).map((l) => [l, `layer ${l}: class token`])], view.map);
    const heads = a.cls_heads[0].length;
    AX.fillSelect(AX.$("vision-head"), [["mean", "mean"], ...AX.range(heads).map((h) => [h, String(h)])], view.head);
    AX.$("vision-head").disabled = view.map === "rollout";
    draw();
    side();
  }

  function heat() {
    const a = AX.analysis;
    if (view.map === "rollout") return a.rollout;
    const layer = Number(view.map);
    return view.head === "mean" ? a.cls_mean[layer] : a.cls_heads[layer][Number(view.head)];
  }

  function draw() {
    const a = AX.analysis;
    const canvas = AX.$("vision-canvas");
    const ctx = AX.sizeCanvas(canvas, SIZE, SIZE);
    const { channels, size } = a.image;
    const pixels = AX.bytes(a.image.pixels);
    const image = new ImageData(size, size);
    for (let i = 0; i < size * size; i++) {
      const r = pixels[i];
      const g = channels === 3 ? pixels[size * size + i] : r;
      const b = channels === 3 ? pixels[2 * size * size + i] : r;
      image.data.set([r, g, b, 255], 4 * i);
    }
    AX.blit(ctx, image, 0, 0, SIZE, SIZE);
    const values = heat();
    const peak = Math.max(...values) || 1;
    const g = a.grid;
    const cell = SIZE / g;
    ctx.globalAlpha = Number(AX.$("vision-alpha").value);
    for (let i = 0; i < values.length; i++) {
      const t = values[i] / peak;
      ctx.fillStyle = `rgb(${Math.round(255 * t)}, ${Math.round(80 * t)}, ${Math.round(40 + 30 * t)})`;
      ctx.globalAlpha = Number(AX.$("vision-alpha").value) * t;
      ctx.fillRect((i % g) * cell, Math.floor(i / g) * cell, cell, cell);
    }
    ctx.globalAlpha = 1;
    canvas.dataset.grid = String(g);
    canvas.dataset.map = String(view.map);
    view.renders += 1;
    canvas.dataset.renders = String(view.renders);
    AX.markRendered("vision");
  }

  function side() {
    const a = AX.analysis;
    const best = a.prediction[0];
    const bars = a.prediction.map((p) => {
      const bar = AX.el("span", { class: "bar-fill" });
      bar.style.width = Math.round(p.p * 100) + "%";
      return AX.el("div", { class: "bar-row" + (p === best ? " chosen" : "") }, [
        AX.el("span", { class: "bar-label", text: p.class }), AX.el("span", { class: "bar" }, [bar]),
        AX.el("span", { class: "bar-value", text: AX.fmt(p.p, 3) })]);
    });
    AX.$("vision-side").replaceChildren(
      AX.el("h3", { text: `Prediction: ${best.class} (${AX.fmt(best.p, 3)})` }), ...bars,
      AX.el("p", { class: "note", text: `${a.grid}×${a.grid} patches of ${a.patch}×${a.patch} pixels, plus the class token.` }));
    AX.$("vision-side").dataset.prediction = best.class;
  }

  function init() {
    AX.$("vision-map").addEventListener("change", (e) => { view.map = e.target.value; render(); });
    AX.$("vision-head").addEventListener("change", (e) => { view.head = e.target.value; draw(); });
    AX.$("vision-alpha").addEventListener("input", () => draw());
  }

  view.render = render;
  view.init = init;
  AX.views.vision = view;
})();
