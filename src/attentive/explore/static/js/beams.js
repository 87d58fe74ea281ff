/* Beam search, step by step: the hypotheses the search keeps and the ones that have finished. */
"use strict";

(function () {
  const view = { renders: 0 };

  function render() {
    const a = AX.analysis;
    if (!a || !a.beams) return;
    AX.$("beams-note").textContent = `Beam size ${a.beam_size}. Live hypotheses carry their summed log-probability; ` +
      `finished ones (they chose the end token) are ranked by it divided by the GNMT length penalty ` +
      `((5 + length) / 6)^${a.alpha}. Best: “${a.translation}” (${AX.fmt(a.score, 3)}).`;
    const rows = [];
    for (const step of a.beams) {
      const live = step.live.map((h) => AX.el("li", { text: `${h.text || "∅"}  ${AX.fmt(h.score, 3)}` }));
      const done = step.finished.map((h, i) => AX.el("li", { class: i === 0 ? "done best" : "done",
        text: `${h.text || "∅"}  ${AX.fmt(h.score, 3)}` }));
      rows.push(AX.el("tr", { "data-step": String(step.step) }, [
        AX.el("td", { text: String(step.step + 1) }),
        AX.el("td", {}, [AX.el("ol", {}, live)]),
        AX.el("td", {}, [AX.el("ol", {}, done)])]));
    }
    const table = AX.el("table", { class: "beams" }, [
      AX.el("tr", {}, [AX.el("th", { text: "step" }), AX.el("th", { text: "live hypotheses (log p)" }),
        AX.el("th", { text: "finished (normalised score)" })]), ...rows]);
    table.dataset.steps = String(a.beams.length);
    AX.$("beams-table").replaceChildren(table);
    view.renders += 1;
    AX.markRendered("beams");
  }

  view.render = render;
  view.init = () => {};
  AX.views.beams = view;
})();
