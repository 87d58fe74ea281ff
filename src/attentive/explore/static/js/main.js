/* The page: load the model's description, build the inputs and tabs it needs, run inputs, and
 * render the view that is showing (the others render when opened).
 */
"use strict";

(function () {
  const ORDER = ["head", "model", "cross", "vision", "generate", "lens", "beams", "ideas"];
  const NAMES = { head: "Head view", model: "Model view", cross: "Cross-attention", vision: "Vision",
    generate: "Generate", lens: "Logit lens", beams: "Beam search", ideas: "Ideas" };
  let current = null;
  const stale = new Set(); // views to re-render when next shown

  // The reference to the current input that follow-up requests carry.
  AX.ref = function ref() {
    const body = { id: AX.analysis.id };
    if (!AX.staticData && AX.text) body.text = AX.text;
    return body;
  };

  AX.primaryLayers = function primaryLayers() {
    return AX.stack(AX.analysis.primary_stack).layers;
  };

  AX.markRendered = function markRendered(name) {
    const key = "rendered" + name.replace(/(^|[-_])(\w)/g, (m, sep, c) => c.toUpperCase());
    document.body.dataset[key] = String((Number(document.body.dataset[key]) || 0) + 1);
    if (!performance.getEntriesByName("first-render-" + name).length) performance.mark("first-render-" + name);
  };

  // Show a view; it renders when its input changed since it last did (or when `refresh` says so).
  AX.showView = function showView(name, refresh) {
    current = name;
    for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== name;
    for (const tab of document.querySelectorAll("#tabs button")) tab.classList.toggle("active", tab.dataset.view === name);
    if ((stale.has(name) || refresh) && AX.analysis) {
      stale.delete(name);
      AX.guard(() => AX.views[name].render());
    }
  };

  async function show(analysis, text) {
    AX.analysis = analysis;
    AX.text = text || "";
    for (const name of AX.info.views) stale.add(name);
    stale.delete("generate");
    AX.views.generate.render();
    if (current && stale.has(current)) {
      stale.delete(current);
      await AX.views[current].render();
    }
    document.body.dataset.analysis = analysis.id;
  }

  async function runText(event) {
    if (event) event.preventDefault();
    AX.clearMessage();
    const text = AX.$("text").value;
    if (!text.trim()) throw new AX.ApiError("enter some text first");
    const button = AX.$("run");
    button.disabled = true;
    document.body.classList.add("busy");
    try {
      const analysis = await AX.api("analyze", { text });
      await show(analysis, text);
    } finally {
      button.disabled = false;
      document.body.classList.remove("busy");
    }
  }

  async function runFile(blob) {
    AX.clearMessage();
    document.body.classList.add("busy");
    try {
      await show(await AX.apiFile("analyze/file", blob));
    } finally {
      document.body.classList.remove("busy");
    }
  }

  function tabs(views) {
    const nav = AX.$("tabs");
    nav.replaceChildren(...ORDER.filter((v) => views.includes(v)).map((v) =>
      AX.el("button", { type: "button", "data-view": v, text: NAMES[v], onclick: () => AX.showView(v) })));
    nav.hidden = false;
  }

  // A link into the page: #idea=NAME opens the Ideas view with that panel alone, #view=NAME a view
  // (the documentation embeds an exported page once per concept this way). Returns the view to show.
  function fromHash(info) {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const idea = params.get("idea");
    const view = idea ? "ideas" : params.get("view");
    if (!info.views.includes(view)) return null;
    if (view === "ideas") AX.views.ideas.focus(idea);
    return view;
  }

  function describe(info) {
    const parts = [`${info.name}: ${info.family === "lm" ? "language model" : info.family}`,
      `${(info.parameters / 1e6).toFixed(info.parameters < 1e6 ? 3 : 1)}M parameters`, `d_model ${info.d_model}`,
      `${info.heads} heads` + (info.kv_heads !== info.heads ? ` (${info.kv_heads} key/value)` : ""),
      `${info.positional} positions`, info.norm_first ? "pre-LN" : "post-LN"];
    if (info.pair) parts.push(info.pair);
    AX.$("model-line").textContent = parts.join(" · ");
  }

  async function start() {
    for (const view of Object.values(AX.views)) view.init();
    AX.drawPad.init();
    const models = await AX.api("models", {});
    AX.info = models.models[0];
    describe(AX.info);
    tabs(AX.info.views);
    if (AX.info.input === "text") {
      AX.$("text-form").hidden = false;
      AX.$("text-form").addEventListener("submit", (e) => AX.guard(() => runText(e)));
      AX.$("text").value = AX.info.example || "";
    } else {
      AX.$("file-form").hidden = false;
      AX.$("file-kind").textContent = AX.info.input === "image" ? "an image (PNG, JPEG)" : "a WAV recording";
      AX.$("file").accept = AX.info.input === "image" ? "image/*" : ".wav,audio/wav";
      AX.$("file").addEventListener("change", (e) => {
        const file = e.target.files[0];
        if (file) AX.guard(() => runFile(file));
        e.target.value = "";
      });
      if (AX.info.input === "image") {
        AX.$("draw-box").hidden = false;
        AX.$("draw-run").addEventListener("click", () => AX.guard(async () => {
          if (!AX.drawPad.inked()) throw new AX.ApiError("draw a digit first");
          await runFile(await AX.drawPad.blob());
        }));
      }
    }
    AX.showView(fromHash(AX.info) || AX.info.views[0]);
    window.addEventListener("hashchange", () => {
      const view = fromHash(AX.info);
      if (view) AX.showView(view, true);
    });
    if (AX.staticData) {
      if (AX.staticData.text !== undefined) AX.$("text").value = AX.staticData.text;
      await show(AX.staticData.analysis, AX.staticData.text);
      AX.$("model-line").textContent += " · exported page";
    } else if (AX.info.input === "text" && AX.$("text").value) {
      await runText();
    }
    document.body.dataset.ready = "1";
  }

  window.addEventListener("DOMContentLoaded", () => AX.guard(start));
})();
