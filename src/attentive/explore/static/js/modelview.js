/* Model view: every layer x head of a stack as a small heat map (queries down, keys across), from
 * the thumbnails the analysis sends (each cell the largest weight it covers, scaled by the map's
 * own maximum). Click one to open that layer and head in the head view.
 */
"use strict";

(function () {
  const CELL = 64; // px per thumbnail
  const view = { stack: null, renders: 0 };

  function render() {
    if (!AX.analysis) return;
    const stack = AX.stack(view.stack);
    view.stack = stack.name;
    AX.fillSelect(AX.$("model-stack"), AX.analysis.stacks.map((s) => [s.name, s.label]), stack.name);
    const pixels = AX.bytes(stack.thumbs);
    const [rows, cols] = stack.thumb_shape;
    const size = rows * cols;
    const grid = AX.$("model-grid");
    const header = AX.el("div", { class: "grid-row" }, [AX.el("span", { class: "grid-label" }),
      ...AX.range(stack.heads).map((h) => AX.el("span", { class: "grid-head", text: `head ${h}` }))]);
    const body = AX.range(stack.layers).map((l) => {
      const cells = AX.range(stack.heads).map((h) => {
        const canvas = AX.el("canvas", {
          class: "thumb", "data-layer": String(l), "data-head": String(h), title: `layer ${l}, head ${h}`,
          onclick: () => openHead(stack.name, l, h),
        });
        const ctx = AX.sizeCanvas(canvas, CELL, CELL);
        const offset = (l * stack.heads + h) * size;
        AX.drawPixels(ctx, pixels.subarray(offset, offset + size), rows, cols, 0, 0, CELL, CELL, AX.heatColour);
        return canvas;
      });
      return AX.el("div", { class: "grid-row" }, [AX.el("span", { class: "grid-label", text: `layer ${l}` }), ...cells]);
    });
    grid.replaceChildren(header, ...body);
    grid.dataset.layers = String(stack.layers);
    grid.dataset.heads = String(stack.heads);
    grid.dataset.tokens = String(stack.q_tokens.length);
    grid.dataset.stack = stack.name;
    view.renders += 1;
    grid.dataset.renders = String(view.renders);
    AX.markRendered("model");
  }

  function openHead(stackName, layer, head) {
    AX.views.head.open(stackName, layer, head);
    AX.showView("head", true);
  }

  function init() {
    AX.$("model-stack").addEventListener("change", (e) => { view.stack = e.target.value; render(); });
  }

  view.render = render;
  view.init = init;
  AX.views.model = view;
})();
