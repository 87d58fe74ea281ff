/* The logit lens: for one position, the tokens each layer's residual stream would predict. */
"use strict";

(function () {
  const view = { position: null, renders: 0 };

  async function render() {
    const a = AX.analysis;
    if (!a) return;
    if (view.position === null || view.position >= a.tokens.length) view.position = Math.max(0, a.tokens.length - 2);
    AX.tokenChips(AX.$("lens-tokens"), a.tokens, view.position, (i) => AX.guard(async () => { view.position = i; await render(); }), 256);
    const lens = await AX.api("lens", Object.assign(AX.ref(), { position: view.position }));
    const nextId = lens.next ? lens.next.id : null;
    const head = AX.el("tr", {}, [AX.el("th", { text: "layer" }), ...AX.range(lens.layers[0].top.length).map((i) =>
      AX.el("th", { text: i === 0 ? "most likely next token" : `#${i + 1}` }))]);
    const rows = lens.layers.map((layer) => AX.el("tr", { "data-layer": String(layer.layer) }, [
      AX.el("td", { text: String(layer.layer) }),
      ...layer.top.map((t) => {
        const cell = AX.el("td", { class: t.id === nextId ? "hit" : "", text: `${t.token}  ${AX.fmt(t.p, 3)}` });
        const [r, g, b] = AX.heatColour(Math.sqrt(t.p));
        cell.style.background = `rgb(${r},${g},${b})`;
        if (t.p > 0.45) cell.style.color = "#fff";
        return cell;
      })]));
    const caption = AX.el("caption", {
      text: `Position ${lens.position} (“${lens.token}”)` + (lens.next ? `; the text goes on with “${lens.next.token}” (outlined)` : "") +
        (lens.final_norm ? "; each layer's output goes through the final norm, then the head" : ""),
    });
    const table = AX.el("table", { class: "lens" }, [caption, head, ...rows]);
    table.dataset.layers = String(lens.layers.length);
    AX.$("lens-table").replaceChildren(table);
    view.renders += 1;
    AX.markRendered("lens");
  }

  view.render = render;
  view.init = () => {};
  AX.views.lens = view;
})();
