/* The Transformer's ideas, one panel each, with numbers from the loaded model on the current input.
 * Every panel asks its own endpoint (api/ideas/NAME) and draws what comes back.
 */
"use strict";

(function () {
  const state = { position: 0, place: 4, layer: 0, head: 0, query: -1, seed: 0, renders: 0, focus: null };
  const TEXT = {
    embedding: "A token enters as an index i. The one-hot vector eᵢ (all zeros but a 1 at i) times the embedding matrix E " +
      "(vocabulary × d_model) picks row i of E: the same numbers as looking the row up, which is what the model does. " +
      "The paper then multiplies by √d_model. Tokens whose rows point the same way (cosine) come next.",
    positions: "Attention itself does not see order, so positions must come in from outside. ",
    attention_steps: "Attention(Q, K, V) = softmax(QKᵀ / √d_k) V, for one query: its dot product with every key, divided by " +
      "√d_k, any positional bias added, masked keys set to −∞, a softmax, then the weighted sum of the value vectors. " +
      "The last columns come from attentive's attention(), the function the model itself calls, and from the tap " +
      "that feeds the head view.",
    heads: "Each head has its own W_Q, W_K and W_V, so each attends in its own way; their outputs are concatenated and " +
      "projected by W_O. The same query in every head of one layer, side by side: the entropy says how spread a " +
      "head's attention is (0 bits = all on one token), the overlap how much weight two heads put on the same tokens.",
    residual: "Each sub-layer adds what it computes to the residual stream (x + sublayer(x)), and layer norm keeps the " +
      "scale in check: the paper (post-LN) normalises the sum, pre-LN models normalise each sub-layer's input and let " +
      "the stream grow. Bars: the stream's size (L2 norm, mean over tokens) before and after each sub-layer; " +
      "thin bars: the size of what the sub-layer adds.",
    permutation: "Self-attention is permutation-equivariant: without positions, shuffling the input tokens shuffles the " +
      "outputs the same way and changes nothing else. Left: the outputs of the original order, moved into the " +
      "shuffled order; right: the outputs of the shuffled input (first 16 features). With positions off they match; " +
      "switch them on and they do not. A decoder's causal mask also carries order, so it is switched off with them.",
    masks: "A mask says which keys a query may see (True = may attend). Padding hides the pad tokens of a shorter row in " +
      "a batch; the causal mask hides later tokens. Masked scores become −∞ before the softmax, so their weights are " +
      "exactly 0. Below: a batch of your text and its first half padded on the right, through the model's own stack.",
  };
  const TITLES = {
    embedding: "1. Embedding: one-hot times a matrix is a lookup", positions: "2. Positional encoding",
    attention_steps: "3. Scaled dot-product attention, step by step", heads: "4. Multi-head attention",
    residual: "5. Residual stream and layer norm", permutation: "6. Permutation: why positions are needed",
    masks: "7. Masks",
  };

  function card(name) {
    let node = AX.$("idea-" + name);
    if (!node) {
      node = AX.el("article", { class: "idea", id: "idea-" + name }, [
        AX.el("h3", { text: TITLES[name] }), AX.el("p", { class: "idea-text", text: TEXT[name] }),
        AX.el("div", { class: "idea-controls" }), AX.el("div", { class: "idea-body" })]);
      AX.$("ideas").append(node);
    }
    return node;
  }

  async function ask(name, params) {
    return AX.api("ideas/" + name, Object.assign(AX.ref(), params || {}));
  }

  function done(name, node) {
    node.dataset.rendered = String((Number(node.dataset.rendered) || 0) + 1);
    state.renders += 1;
    AX.markRendered("idea-" + name);
  }

  function unavailable(node, answer) {
    node.querySelector(".idea-body").replaceChildren(AX.el("p", { class: "note", text: answer.why }));
  }

  /* ---------------------------------------------------------------- drawing helpers */

  // A vector as a strip of cells (blue negative, red positive), scaled by its largest magnitude.
  function strip(values, label, cellW) {
    const w = cellW || Math.max(2, Math.min(12, Math.floor(640 / values.length)));
    const canvas = AX.el("canvas", { class: "strip", title: label || "" });
    const ctx = AX.sizeCanvas(canvas, values.length * w, 16);
    const peak = Math.max(...values.map(Math.abs)) || 1;
    values.forEach((v, i) => {
      const [r, g, b] = AX.divergingColour(v / peak);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(i * w, 0, w, 16);
    });
    return AX.el("div", { class: "strip-row" }, [AX.el("span", { class: "strip-label", text: label || "" }), canvas]);
  }

  // A heat picture from {rows, cols, pixels, min, max}.
  function heat(h, width, height, colour) {
    const canvas = AX.el("canvas", { class: "heat" });
    const ctx = AX.sizeCanvas(canvas, width, height);
    AX.drawPixels(ctx, AX.bytes(h.pixels), h.rows, h.cols, 0, 0, width, height, colour || AX.heatColour);
    canvas.title = `${h.rows} × ${h.cols}, from ${AX.fmt(h.min)} to ${AX.fmt(h.max)}`;
    return canvas;
  }

  // A boolean or numeric matrix as a grid with token labels.
  function grid(matrix, tokens, opts) {
    const n = matrix[0].length;
    const cell = opts.cell || 20;
    const labelW = 70;
    const canvas = AX.el("canvas", { class: "grid" });
    const ctx = AX.sizeCanvas(canvas, labelW + n * cell + 4, 20 + matrix.length * cell + 4);
    const rowLabels = opts.rowLabels || tokens;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    matrix.forEach((row, i) => {
      ctx.fillStyle = "#111";
      ctx.textAlign = "right";
      ctx.fillText(AX.short(rowLabels[i] || "", 8), labelW - 4, 20 + i * cell + cell / 2);
      row.forEach((v, j) => {
        const x = labelW + j * cell;
        const y = 20 + i * cell;
        if (typeof v === "boolean") ctx.fillStyle = v ? "#4e79a7" : "#f1f1f1";
        else {
          const [r, g, b] = AX.heatColour(v);
          ctx.fillStyle = `rgb(${r},${g},${b})`;
        }
        ctx.fillRect(x, y, cell - 1, cell - 1);
        if (opts.hide && !opts.hide[i][j]) {
          ctx.strokeStyle = "#c33";
          ctx.beginPath();
          ctx.moveTo(x + 4, y + 4);
          ctx.lineTo(x + cell - 5, y + cell - 5);
          ctx.moveTo(x + cell - 5, y + 4);
          ctx.lineTo(x + 4, y + cell - 5);
          ctx.stroke();
        }
      });
    });
    for (let j = 0; j < n; j++) {  // columns by index (the rows carry the tokens)
      ctx.fillStyle = "#555";
      ctx.textAlign = "center";
      ctx.fillText(opts.columns ? AX.short(opts.columns[j], 3) : String(j), labelW + j * cell + cell / 2, 9);
    }
    return AX.el("figure", {}, [canvas, AX.el("figcaption", { text: opts.caption })]);
  }

  function table(header, rows) {
    return AX.el("table", { class: "numbers" }, [
      AX.el("tr", {}, header.map((h) => AX.el("th", { text: h }))),
      ...rows.map((r) => AX.el("tr", {}, r.map((c) => (c instanceof Node ? AX.el("td", {}, [c]) : AX.el("td", { text: c })))))]);
  }

  function select(label, options, value, onChange) {
    const s = AX.el("select", { "aria-label": label });
    AX.fillSelect(s, options, value);
    s.addEventListener("change", () => AX.guard(() => onChange(s.value)));
    return AX.el("label", {}, [label + " ", s]);
  }

  /* ---------------------------------------------------------------- the panels */

  async function embedding() {
    const node = card("embedding");
    const a = await ask("embedding", { position: state.position });
    if (!a.available) return unavailable(node, a);
    const chips = AX.el("div", { class: "tokens clickable" });
    AX.tokenChips(chips, a.tokens, a.position, (i) => AX.guard(() => { state.position = i; return embedding(); }));
    node.querySelector(".idea-controls").replaceChildren(AX.el("span", { class: "note", text: "token:" }), chips);
    const rows = AX.range(Math.min(8, a.d_model)).map((i) => [String(i), AX.fmt(a.lookup[i], 5), AX.fmt(a.one_hot[i], 5)]);
    node.querySelector(".idea-body").replaceChildren(
      AX.el("p", { text: `“${a.token}” is id ${a.id}: one-hot e${a.id} (1 × ${a.vocab}) · E (${a.vocab} × ${a.d_model})` +
        (a.scale !== 1 ? ` × √${a.d_model} = ${AX.fmt(a.scale, 2)}` : "") + ` gives its ${a.d_model} numbers.` }),
      strip(a.lookup, "lookup E[id]"), strip(a.one_hot, "one-hot · E"),
      AX.el("p", { class: "verdict", "data-equal": String(a.equal),
        text: a.equal ? "The two are equal, number for number (largest difference 0)." :
          `Largest difference: ${a.max_difference}.` }),
      AX.el("div", { class: "split" }, [
        table(["dim", "lookup", "one-hot · E"], rows),
        table(["nearest tokens", "cosine"], a.nearest.map((n) => [n.token, AX.fmt(n.cosine, 3)]))]));
    done("embedding", node);
  }

  async function positions() {
    const node = card("positions");
    const place = Math.min(state.place, AX.analysis.tokens.length - 1);
    const a = await ask("positions", { position: place });
    if (a.mode === "added") {
      const chips = AX.el("div", { class: "tokens clickable" });
      AX.tokenChips(chips, a.tokens, a.position, (i) => AX.guard(() => { state.place = i; return positions(); }));
      node.querySelector(".idea-controls").replaceChildren(AX.el("span", { class: "note", text: "position:" }), chips);
    }
    const kinds = {
      SinusoidalPositionalEncoding: "This model adds the paper's sinusoidal table: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(…): each pair of features turns at its own frequency.",
      LearnedPositionalEmbedding: "This model adds a learned table: one trained vector per position (BERT, GPT-2).",
      RotaryEmbedding: "This model uses rotary embeddings (RoPE): nothing is added; inside attention each pair of query and key features is rotated by position × θᵢ, so q·k depends on how far apart two tokens are. The table: cos(position × θᵢ).",
      ALiBi: "This model uses ALiBi: nothing is added; each head subtracts slope × distance from its attention scores.",
      RelativePositionBias: "This model uses T5's relative position bias: a learned number per head and distance bucket, added to the scores.",
      PositionalEncoding: "This model has no positional information at all.",
    };
    node.querySelector(".idea-text").textContent = TEXT.positions + (kinds[a.kind] || a.kind);
    const body = [];
    if (a.mode === "added" || a.mode === "rotary") {
      body.push(AX.el("p", { class: "note", text: `positions down (0–${a.table.rows - 1}), features across (${a.table.cols}); ` +
        `values from ${AX.fmt(a.table.min)} to ${AX.fmt(a.table.max)}` }));
      body.push(heat(a.table, Math.min(640, Math.max(200, a.table.cols * 2)), Math.min(320, a.table.rows * 5),
        (t) => AX.divergingColour(2 * t - 1)));
    }
    if (a.mode === "added" && a.embedding) {
      body.push(AX.el("p", { text: `“${a.tokens[a.position]}” at position ${a.position}: its embedding, the position's vector, and their sum ` +
        `(the first layer's input). Sizes: ${AX.fmt(a.norms.embedding, 2)}, ${AX.fmt(a.norms.position, 2)}, ${AX.fmt(a.norms.sum, 2)}.` }));
      body.push(strip(a.embedding, "embedding"), strip(a.position_vector, "+ position"), strip(a.sum, "= input"));
      const other = a.same_token_elsewhere;
      body.push(AX.el("p", { class: "note", text: `The same token at position ${other.other_position} would enter the first layer ` +
        `with cosine ${AX.fmt(other.cosine_with_positions, 3)} to this (without positions: 1, the same vector).` }));
    }
    if (a.mode === "bias") {
      body.push(AX.el("div", { class: "split" }, a.heads.map((h, i) => AX.el("figure", {}, [
        heat(h, 160, 160), AX.el("figcaption", { text: `head ${i} bias` + (a.slopes ? ` (slope ${AX.fmt(a.slopes[i], 4)})` : "") })]))));
    }
    node.querySelector(".idea-body").replaceChildren(...body);
    done("positions", node);
  }

  function layerHeadQueryControls(node, a, withHead, redraw) {
    const layers = AX.range(a.layers || 1).map((l) => [l, String(l)]);
    const controls = [select("layer", layers, a.layer, (v) => { state.layer = Number(v); return redraw(); })];
    if (withHead) {
      controls.push(select("head", AX.range(AX.info.heads).map((h) => [h, String(h)]), a.head, (v) => { state.head = Number(v); return redraw(); }));
    }
    controls.push(select("query", a.tokens.map((t, i) => [i, `${i}: ${t}`]), a.query, (v) => { state.query = Number(v); return redraw(); }));
    node.querySelector(".idea-controls").replaceChildren(...controls);
  }

  async function attentionSteps() {
    const node = card("attention_steps");
    const a = await ask("attention_steps", { layer: state.layer, head: state.head, query: state.query });
    a.layers = AX.primaryLayers();
    layerHeadQueryControls(node, a, true, attentionSteps);
    const rows = a.tokens.map((t, j) => {
      const bar = AX.el("span", { class: "bar" }, [AX.el("span", { class: "bar-fill" })]);
      bar.firstChild.style.width = (100 * a.weights[j]).toFixed(1) + "%";
      return [`${j}: ${t}`, AX.fmt(a.dots[j], 3), AX.fmt(a.scaled[j], 3), a.bias ? AX.fmt(a.bias[j], 3) : "",
        a.allowed[j] ? "✓" : "−∞", a.allowed[j] ? AX.fmt(a.weights[j], 4) : "0", AX.fmt(a.attention_weights[j], 4), bar];
    });
    const header = ["key", "q·k", `÷ √${a.head_dim}`, a.bias ? "+ bias" : "", "mask", "softmax", "attention()", ""];
    node.querySelector(".idea-body").replaceChildren(
      AX.el("p", { text: `Layer ${a.layer}, head ${a.head}` + (a.kv_head !== a.head ? ` (key/value head ${a.kv_head})` : "") +
        `, query “${a.tokens[a.query]}” (${a.query}); d_k = ${a.head_dim}, so scores are multiplied by ${AX.fmt(a.scale, 4)}` +
        (a.rotary ? "; q and k are rotated (RoPE) first." : ".") }),
      strip(a.q, "q"),
      table(header, rows),
      strip(a.output, "Σ softmax · v"), strip(a.attention_output, "attention() output"),
      AX.el("p", { class: "verdict", "data-difference": String(a.max_difference.weights),
        text: `Written out vs attention(): largest difference ${a.max_difference.weights.toExponential(1)} in the weights, ` +
          `${a.max_difference.output.toExponential(1)} in the output; attention() vs the head view's tap: ${a.max_difference.tap.toExponential(1)}.` }));
    done("attention_steps", node);
  }

  async function heads() {
    const node = card("heads");
    const a = await ask("heads", { layer: state.layer, query: state.query });
    a.layers = AX.primaryLayers();
    layerHeadQueryControls(node, a, false, heads);
    const n = a.tokens.length;
    const rows = a.rows.map((row) => {
      const peak = Math.max(...row) || 1;
      return row.map((w) => w / peak);
    });
    const canvas = AX.el("canvas", { class: "grid" });
    const cell = Math.max(8, Math.min(22, Math.floor(640 / n)));
    const ctx = AX.sizeCanvas(canvas, 60 + n * cell, rows.length * cell + 70);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    rows.forEach((row, h) => {
      ctx.fillStyle = AX.headColour(h);
      ctx.textAlign = "right";
      ctx.fillText(`head ${h}`, 54, h * cell + cell / 2);
      row.forEach((w, j) => {
        const [r, g, b] = AX.heatColour(w);
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(60 + j * cell, h * cell, cell - 1, cell - 1);
      });
    });
    ctx.textAlign = "left";
    a.tokens.forEach((t, j) => {
      ctx.save();
      ctx.translate(60 + j * cell + cell / 2, rows.length * cell + 6);
      ctx.rotate(Math.PI / 3);
      ctx.fillStyle = "#111";
      ctx.fillText(AX.short(t, 8), 0, 0);
      ctx.restore();
    });
    const overlap = a.overlap.map((row) => row.map((v) => Math.max(0, Math.min(1, v))));
    node.querySelector(".idea-body").replaceChildren(
      canvas,
      AX.el("div", { class: "split" }, [
        table(["head", "entropy (bits)", "strongest key"], a.entropy.map((e, h) => [String(h), AX.fmt(e, 2),
          `${a.tokens[a.top[h]]} (${a.top[h]})`])),
        grid(overlap, AX.range(overlap.length).map((h) => `h${h}`), { cell: 22, caption: "overlap: Σ min(wₐ, w_b) between heads",
          columns: AX.range(overlap.length).map((h) => `h${h}`) })]),
      AX.el("p", { class: "note", text: `Uniform attention over the ${Math.round(2 ** a.max_entropy)} visible keys would have ${AX.fmt(a.max_entropy, 2)} bits.` }));
    done("heads", node);
  }

  async function residual() {
    const node = card("residual");
    const a = await ask("residual");
    if (!a.available) return unavailable(node, a);
    const layers = a.layers;
    const points = layers[0].points.length;
    const per = points + layers[0].added.length + 1;
    const peak = Math.max(...layers.flatMap((l) => [...l.points.map((p) => p.mean), ...l.added.map((p) => p.mean)])) || 1;
    const barW = 12;
    const width = 50 + layers.length * per * barW;
    const height = 200;
    const canvas = AX.el("canvas", { class: "chart" });
    const ctx = AX.sizeCanvas(canvas, width, height + 40);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#333";
    ctx.fillText(AX.fmt(peak, 1), 2, 12);
    const colours = ["#4e79a7", "#59a14f", "#f28e2b", "#e15759"];
    layers.forEach((layer, l) => {
      const x0 = 50 + l * per * barW;
      layer.points.forEach((p, i) => {
        const h = (p.mean / peak) * height;
        ctx.fillStyle = colours[i % colours.length];
        ctx.fillRect(x0 + i * barW, height - h + 10, barW - 2, h);
      });
      layer.added.forEach((p, i) => {
        const h = (p.mean / peak) * height;
        ctx.fillStyle = "#999";
        ctx.fillRect(x0 + (points + i) * barW + 3, height - h + 10, barW - 8, h);
      });
      ctx.fillStyle = "#111";
      ctx.fillText(`L${l}`, x0, height + 26);
    });
    const legend = layers[0].points.map((p, i) => {
      const swatch = AX.el("span", { class: "swatch" });
      swatch.style.background = colours[i % colours.length];
      return AX.el("span", { class: "legend" }, [swatch, p.name]);
    });
    const rows = layers.map((l) => [String(l.layer), ...l.points.map((p) => AX.fmt(p.mean, 2)), ...l.added.map((p) => AX.fmt(p.mean, 2))]);
    node.querySelector(".idea-body").replaceChildren(
      AX.el("p", { class: "note", text: a.norm_first ? "This model is pre-LN: the stream is never normalised between layers, only each sub-layer's input (and the final output)." :
        "This model is post-LN, as in the paper: after each residual addition the stream is normalised." }),
      AX.el("div", { class: "legend-row" }, [...legend, AX.el("span", { class: "legend" }, [AX.el("span", { class: "swatch grey" }), "what a sub-layer adds"])]),
      canvas,
      table(["layer", ...layers[0].points.map((p) => p.name), ...layers[0].added.map((p) => `+ ${p.name}`)], rows));
    done("residual", node);
  }

  async function permutation() {
    const node = card("permutation");
    const a = await ask("permutation", { seed: state.seed });
    if (!a.available) return unavailable(node, a);
    const button = AX.el("button", { type: "button", text: "Shuffle again", onclick: () => AX.guard(() => { state.seed += 1; return permutation(); }) });
    node.querySelector(".idea-controls").replaceChildren(button);
    const pair = (side, title) => AX.el("div", { class: "perm" }, [
      AX.el("h4", { text: title }),
      AX.el("div", { class: "split" }, [
        AX.el("figure", {}, [heat(side.outputs, 160, 10 * side.outputs.rows, (t) => AX.divergingColour(2 * t - 1)), AX.el("figcaption", { text: "original, moved" })]),
        AX.el("figure", {}, [heat(side.shuffled_outputs, 160, 10 * side.shuffled_outputs.rows, (t) => AX.divergingColour(2 * t - 1)), AX.el("figcaption", { text: "shuffled input" })])]),
      AX.el("p", { class: side === a.off ? "verdict" : "verdict plain", "data-difference": String(side.max_difference),
        text: `largest difference: ${side.max_difference.toExponential(2)}` })]);
    node.querySelector(".idea-body").replaceChildren(
      AX.el("p", { text: `Original: ${a.tokens.join(" · ")}` }),
      AX.el("p", { text: `Shuffled: ${a.shuffled_tokens.join(" · ")}` }),
      AX.el("div", { class: "split" }, [pair(a.off, a.causal ? "positions and the causal mask off" : "positions off"),
        pair(a.on, `positions on (${a.positional})`)]));
    done("permutation", node);
  }

  async function masks() {
    const node = card("masks");
    const a = await ask("masks");
    if (!a.available) return unavailable(node, a);
    if (a.mode === "none") {
      node.querySelector(".idea-body").replaceChildren(AX.el("p", { text: a.why }));
      return done("masks", node);
    }
    const toks = a.tokens.map((t, i) => (i < a.short ? t : "<pad>"));
    const figures = [grid([a.padding], toks, { caption: "padding mask of the short row (keys)", rowLabels: ["keys"] })];
    if (a.causal_mask) figures.push(grid(a.causal_mask, a.tokens, { caption: "causal mask" }));
    figures.push(grid(a.combined, toks, { caption: "what the short row's queries may see" }));
    const peak = Math.max(...a.weights.flat()) || 1;
    figures.push(grid(a.weights.map((r) => r.map((w) => w / peak)), toks,
      { caption: "its layer-0, head-0 weights (✕ = masked)", hide: a.combined }));
    node.querySelector(".idea-body").replaceChildren(
      AX.el("div", { class: "split wrap" }, figures),
      AX.el("p", { class: "verdict", "data-masked": String(a.masked_weight_max),
        text: `Largest weight on a masked key: ${a.masked_weight_max}.` }));
    done("masks", node);
  }

  const PANELS = { embedding, positions, attention_steps: attentionSteps, heads, residual, permutation, masks };

  // One panel alone (a link to #idea=NAME: the documentation embeds a panel this way), or all (null).
  function focus(name) {
    name = name && name.replace(/-/g, "_");
    state.focus = name in PANELS ? name : null;
    AX.$("ideas").dataset.focus = state.focus || "";
    AX.$("ideas-all").hidden = !state.focus;
  }

  async function render() {
    if (!AX.analysis) return;
    let names = (AX.info.defaults && AX.info.defaults.ideas) || Object.keys(PANELS);
    if (state.focus && names.includes(state.focus)) names = [state.focus];
    for (const node of AX.$("ideas").querySelectorAll(".idea")) node.hidden = !names.includes(node.id.slice(5));
    names.forEach(card);
    for (const name of names) await AX.guard(PANELS[name]);
    AX.$("ideas").dataset.renders = String(state.renders);
  }

  function init() {
    AX.$("ideas-all").addEventListener("click", () => {
      focus(null);
      return AX.guard(render);
    });
  }

  AX.views.ideas = { render, init, focus, state };
})();
