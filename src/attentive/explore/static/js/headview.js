/* Head view: lines from each query token (left) to the keys it attends to (right), for one layer
 * and one head, or every head in its own colour. Hover a token to isolate it; its weights are
 * written beside the keys and listed (strongest first, from anywhere in the input) in the tooltip.
 *
 * A long input is shown a window of rows at a time (the slider); links to keys outside the window
 * run to the markers above and below the key column. Only the window's weights are fetched.
 */
"use strict";

(function () {
  const ROW = 18; // px per token row
  const MARGIN = 30; // px above and below the rows (the out-of-window markers)
  const GAP = 230; // px between the two columns
  const MIN_WEIGHT = 0.004; // lines below this are not drawn unless a token is hovered

  const view = {
    stack: null, layer: 0, head: 0, start: 0, block: null, hover: null, layout: null, renders: 0,
  };

  const canvas = () => AX.$("head-canvas");

  function windowSize() {
    return (AX.info && AX.info.defaults && AX.info.defaults.window) || 64;
  }

  function setup(stackName, layer, head) {
    const stacks = AX.analysis.stacks;
    const stack = AX.stack(stackName || (view.stack && view.stack.name));
    view.stack = stack;
    view.layer = Math.min(layer === undefined ? view.layer : layer, stack.layers - 1);
    if (head !== undefined) view.head = head;
    if (view.head !== "all" && view.head >= stack.heads) view.head = 0;
    AX.fillSelect(AX.$("head-stack"), stacks.map((s) => [s.name, s.label]), stack.name);
    AX.fillSelect(AX.$("head-layer"), AX.range(stack.layers).map((l) => [l, String(l)]), view.layer);
    AX.fillSelect(AX.$("head-head"), [["all", "all heads"], ...AX.range(stack.heads).map((h) => [h, String(h)])],
      view.head);
    const rows = stack.q_tokens.length;
    const slider = AX.$("head-window");
    slider.max = String(Math.max(0, rows - windowSize()));
    view.start = Math.min(view.start, Number(slider.max));
    slider.value = String(view.start);
    AX.$("head-window-box").hidden = rows <= windowSize();
  }

  async function fetchBlock() {
    const stack = view.stack;
    const n = windowSize();
    const q0 = view.start;
    const q1 = Math.min(stack.q_tokens.length, q0 + n);
    const tk = stack.k_tokens.length;
    const k0 = tk <= n ? 0 : Math.max(0, Math.min(q0, tk - n));
    const k1 = Math.min(tk, k0 + n);
    const body = Object.assign(AX.ref(), { stack: stack.name, layer: view.layer, q0, q1, k0, k1 });
    view.block = await AX.api("attention", body);
    view.block.stackName = stack.name;
  }

  // weight(h, q, k) for absolute indices inside the block; null when not sent (a sparse long input)
  function weightOf(block, h, q, k) {
    if (block.weights) return block.weights[h][q - block.q0][k - block.k0];
    const index = block.top_index[h][q - block.q0];
    const at = index.indexOf(k);
    return at >= 0 ? block.top_values[h][q - block.q0][at] : null;
  }

  function labelWidth(ctx, tokens) {
    ctx.font = "13px system-ui, sans-serif";
    let widest = 40;
    for (const t of tokens) widest = Math.max(widest, ctx.measureText(AX.short(t, 18)).width);
    return Math.min(widest + 12, 170);
  }

  function draw() {
    const block = view.block;
    const stack = view.stack;
    if (!block) return;
    const q = AX.range(block.q1 - block.q0).map((i) => block.q0 + i);
    const k = AX.range(block.k1 - block.k0).map((i) => block.k0 + i);
    const el = canvas();
    const probe = el.getContext("2d");
    const leftW = labelWidth(probe, q.map((i) => stack.q_tokens[i]));
    const rightW = labelWidth(probe, k.map((i) => stack.k_tokens[i])) + 60; // room for hovered weights
    const rows = Math.max(q.length, k.length);
    const width = leftW + GAP + rightW;
    const height = MARGIN * 2 + rows * ROW;
    const ctx = AX.sizeCanvas(el, width, height);
    const xL = leftW - 4;
    const xR = leftW + GAP + 4;
    const yOf = (i) => MARGIN + i * ROW + ROW / 2;
    view.layout = { leftW, rightW, xL, xR, rows, width, height, q, k };
    ctx.clearRect(0, 0, width, height);

    const heads = view.head === "all" ? AX.range(stack.heads) : [Number(view.head)];
    const hover = view.hover;
    const before = k[0] > 0;
    const after = k[k.length - 1] < stack.k_tokens.length - 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#777";
    ctx.textAlign = "left";
    if (before) ctx.fillText(`↑ keys 0–${k[0] - 1}`, xR, MARGIN - 10);
    if (after) ctx.fillText(`↓ keys ${k[k.length - 1] + 1}–${stack.k_tokens.length - 1}`, xR, height - 8);

    // links
    ctx.lineCap = "round";
    for (const h of heads) {
      const hi = block.heads === "all" ? h : 0;
      const colour = AX.headColour(h);
      for (let qi = 0; qi < q.length; qi++) {
        if (hover && hover.side === "q" && hover.index !== q[qi]) continue;
        for (let kj = 0; kj < k.length; kj++) {
          if (hover && hover.side === "k" && hover.index !== k[kj]) continue;
          const w = weightOf(block, hi, q[qi], k[kj]);
          if (w === null || (w < MIN_WEIGHT && !hover)) continue;
          line(ctx, xL, yOf(qi), xR, yOf(kj), colour, w, heads.length);
        }
        if (hover && hover.side === "k") continue;
        const outside = outsideWeights(block, hi, q[qi]);
        if (before && outside.before > MIN_WEIGHT) line(ctx, xL, yOf(qi), xR, MARGIN - 4, colour, outside.before, heads.length);
        if (after && outside.after > MIN_WEIGHT) line(ctx, xL, yOf(qi), xR, height - MARGIN + 4, colour, outside.after, heads.length);
      }
    }

    // tokens
    ctx.font = "13px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    q.forEach((t, i) => token(ctx, stack.q_tokens[t], xL, yOf(i), "right", hover && hover.side === "q" && hover.index === t));
    k.forEach((t, j) => token(ctx, stack.k_tokens[t], xR, yOf(j), "left", hover && hover.side === "k" && hover.index === t));

    // the hovered query's weights beside the keys (one head)
    if (hover && hover.side === "q" && heads.length === 1) {
      const hi = block.heads === "all" ? heads[0] : 0;
      ctx.font = "11px ui-monospace, monospace";
      ctx.fillStyle = "#333";
      ctx.textAlign = "right";
      k.forEach((t, j) => {
        const w = weightOf(block, hi, hover.index, t);
        if (w !== null) ctx.fillText(AX.fmt(w, 3), width - 4, yOf(j));
      });
    }

    const data = el.dataset;
    data.tokens = String(stack.q_tokens.length);
    data.keys = String(stack.k_tokens.length);
    data.drawnRows = String(q.length);
    data.layers = String(stack.layers);
    data.heads = String(stack.heads);
    data.layer = String(block.layer);
    data.head = String(view.head);
    data.stack = stack.name;
    view.renders += 1;
    data.renders = String(view.renders);
    AX.markRendered("head");
  }

  function outsideWeights(block, hi, qAbs) {
    if (block.before) return { before: block.before[hi][qAbs - block.q0], after: block.after[hi][qAbs - block.q0] };
    let before = 0;
    let after = 0;
    const index = block.top_index[hi][qAbs - block.q0];
    index.forEach((key, i) => {
      if (key < block.k0) before += block.top_values[hi][qAbs - block.q0][i];
      if (key >= block.k1) after += block.top_values[hi][qAbs - block.q0][i];
    });
    return { before, after };
  }

  function line(ctx, x0, y0, x1, y1, colour, w, heads) {
    ctx.strokeStyle = colour;
    ctx.globalAlpha = Math.min(1, w * (heads > 1 ? 0.9 : 1.1) + 0.04);
    ctx.lineWidth = 1 + 2.5 * w;
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.bezierCurveTo((x0 + x1) / 2, y0, (x0 + x1) / 2, y1, x1, y1);
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  function token(ctx, label, x, y, align, hot) {
    const text = AX.short(label, 18);
    ctx.textAlign = align;
    if (hot) {
      const w = ctx.measureText(text).width + 6;
      ctx.fillStyle = "#ffe9a8";
      ctx.fillRect(align === "right" ? x - w + 3 : x - 3, y - ROW / 2 + 1, w, ROW - 2);
    }
    ctx.fillStyle = "#111";
    ctx.fillText(text, x, y);
  }

  // where a token is drawn (CSS px inside the canvas): for tests and for the pointer
  view.tokenPoint = function tokenPoint(side, index) {
    const lay = view.layout;
    const list = side === "q" ? lay.q : lay.k;
    const row = list.indexOf(index);
    if (row < 0) return null;
    return { x: side === "q" ? lay.xL - 10 : lay.xR + 10, y: MARGIN + row * ROW + ROW / 2 };
  };

  function hit(x, y) {
    const lay = view.layout;
    if (!lay) return null;
    const row = Math.floor((y - MARGIN) / ROW);
    if (x < lay.xL + 4 && row >= 0 && row < lay.q.length) return { side: "q", index: lay.q[row] };
    if (x > lay.xR - 4 && row >= 0 && row < lay.k.length) return { side: "k", index: lay.k[row] };
    return null;
  }

  function showTooltip(x, y) {
    const tip = AX.$("tooltip");
    const hover = view.hover;
    const block = view.block;
    if (!hover) {
      tip.hidden = true;
      return;
    }
    const stack = view.stack;
    const heads = view.head === "all" ? AX.range(stack.heads) : [Number(view.head)];
    const items = [];
    if (hover.side === "q") {
      for (const h of heads) {
        const hi = block.heads === "all" ? h : 0;
        const index = block.top_index[hi][hover.index - block.q0];
        const values = block.top_values[hi][hover.index - block.q0];
        const shown = heads.length === 1 ? 8 : 1;
        for (let i = 0; i < Math.min(shown, index.length); i++) {
          items.push({ head: h, key: index[i], weight: values[i] });
        }
      }
    } else {
      for (const h of heads) {
        const hi = block.heads === "all" ? h : 0;
        for (let qi = block.q0; qi < block.q1; qi++) {
          const w = weightOf(block, hi, qi, hover.index);
          if (w !== null && w >= 0.05) items.push({ head: h, query: qi, weight: w });
        }
      }
      items.sort((a, b) => b.weight - a.weight);
      items.splice(8);
    }
    const title = hover.side === "q"
      ? `“${stack.q_tokens[hover.index]}” (${hover.index}) attends to`
      : `attending to “${stack.k_tokens[hover.index]}” (${hover.index})`;
    tip.replaceChildren(
      AX.el("div", { class: "tip-title", text: title }),
      AX.el("ol", {}, items.map((it) => AX.el("li", {
        "data-head": String(it.head), "data-key": String(it.key === undefined ? hover.index : it.key),
        "data-query": String(it.query === undefined ? hover.index : it.query), "data-weight": String(it.weight),
        text: (heads.length > 1 ? `head ${it.head}: ` : "") +
          (it.key !== undefined ? `“${stack.k_tokens[it.key]}” (${it.key})` : `“${stack.q_tokens[it.query]}” (${it.query})`) +
          `  ${AX.fmt(it.weight, 4)}`,
      }))),
    );
    tip.dataset.side = hover.side;
    tip.dataset.index = String(hover.index);
    tip.dataset.layer = String(block.layer);
    tip.dataset.head = String(view.head);
    tip.style.left = Math.min(x + 16, view.layout.width - 40) + "px";
    tip.style.top = y + 12 + "px";
    tip.hidden = false;
  }

  async function render() {
    if (!AX.analysis) return;
    setup();
    AX.$("head-note").textContent = note();
    await fetchBlock();
    view.hover = null;
    AX.$("tooltip").hidden = true;
    draw();
  }

  function note() {
    const stack = view.stack;
    const n = stack.q_tokens.length;
    const parts = [`${stack.label}: ${n} tokens, ${stack.layers} layers × ${stack.heads} heads.`];
    if (n > windowSize()) parts.push(`Rows ${view.start}–${Math.min(n, view.start + windowSize()) - 1} are shown; move the slider for others.`);
    if (!stack.dense) parts.push(`This input is long: each token's ${stack.top_k} strongest links are kept.`);
    return parts.join(" ");
  }

  function init() {
    AX.$("head-stack").addEventListener("change", (e) => AX.guard(async () => { setup(e.target.value, 0); await render(); }));
    AX.$("head-layer").addEventListener("change", (e) => AX.guard(async () => { view.layer = Number(e.target.value); await render(); }));
    AX.$("head-head").addEventListener("change", (e) => {
      view.head = e.target.value === "all" ? "all" : Number(e.target.value);
      view.hover = null;
      draw();
    });
    let pending = null;
    AX.$("head-window").addEventListener("input", (e) => {
      view.start = Number(e.target.value);
      AX.$("head-window-label").textContent = String(view.start);
      clearTimeout(pending);
      pending = setTimeout(() => AX.guard(render), 120);
    });
    const el = canvas();
    el.addEventListener("mousemove", (e) => {
      const r = el.getBoundingClientRect();
      const x = e.clientX - r.left;
      const y = e.clientY - r.top;
      const found = hit(x, y);
      const same = (found && view.hover && found.side === view.hover.side && found.index === view.hover.index) ||
        (!found && !view.hover);
      if (!same) {
        view.hover = found;
        draw();
      }
      showTooltip(x, y);
    });
    el.addEventListener("mouseleave", () => {
      view.hover = null;
      AX.$("tooltip").hidden = true;
      draw();
    });
  }

  view.render = render;
  view.init = init;
  view.open = function open(stackName, layer, head) {
    view.stack = AX.stack(stackName);
    view.layer = layer;
    view.head = head;
    view.start = 0;
  };
  AX.views.head = view;
})();
