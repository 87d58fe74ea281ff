/* attentive explore: shared state, the API client, messages and small helpers.
 *
 * Plain browser JavaScript, no build step and no library: every script of the page is a classic
 * script that adds to the one namespace `AX`. A static export (python -m attentive explore
 * --export) embeds the answers the page needs in `window.EXPLORER_STATIC`; `AX.api` then reads
 * them instead of the network, so the same code runs served and exported.
 */
"use strict";

const AX = (window.AX = {
  info: null, // the model's /api/models entry
  analysis: null, // the last /api/analyze answer
  text: "", // the text that analysis came from (text models)
  views: {}, // name -> {show(), render()} registered by the view scripts
  staticData: window.EXPLORER_STATIC || null,
});

/* ------------------------------------------------------------------ the API */

// JSON with sorted keys: the key an exported answer is stored under (Python: sort_keys=True).
AX.canonical = function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value && typeof value === "object") {
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
};

AX.requestKey = (path, body) => path + " " + AX.canonical(body || {});

AX.ApiError = class extends Error {};

AX.api = async function api(path, body) {
  body = body || {};
  if (AX.info && AX.info.name && body.model === undefined) body = Object.assign({ model: AX.info.name }, body);
  if (AX.staticData) {
    const key = AX.requestKey(path, body);
    if (key in AX.staticData.answers) return AX.staticData.answers[key];
    throw new AX.ApiError("this exported page holds what it first shows; run `attentive explore` for more");
  }
  const response = await fetch("api/" + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return AX.readAnswer(response);
};

AX.apiFile = async function apiFile(path, blob) {
  if (AX.staticData) throw new AX.ApiError("an exported page cannot run new inputs; run `attentive explore`");
  const query = AX.info && AX.info.name ? "?model=" + encodeURIComponent(AX.info.name) : "";
  const response = await fetch("api/" + path + query, {
    method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: blob,
  });
  return AX.readAnswer(response);
};

AX.readAnswer = async function readAnswer(response) {
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    throw new AX.ApiError(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new AX.ApiError((data && data.error) || `the server answered ${response.status}`);
  return data;
};

/* ------------------------------------------------------------------ messages and busy state */

AX.message = function message(text, kind) {
  const box = document.getElementById("message");
  box.textContent = String(text).split("\n")[0];
  box.className = kind || "error";
  box.hidden = false;
};

AX.clearMessage = function clearMessage() {
  const box = document.getElementById("message");
  box.hidden = true;
  box.textContent = "";
};

// Run an async action; an error becomes the one-line message and the page goes on working.
AX.guard = async function guard(action) {
  try {
    return await action();
  } catch (err) {
    if (!(err instanceof AX.ApiError)) console.warn(err); // a bug in the page: still show one line
    AX.message(err.message || String(err));
    return undefined;
  }
};

/* ------------------------------------------------------------------ helpers */

AX.$ = (id) => document.getElementById(id);

AX.el = function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.append(child);
  return node;
};

AX.fillSelect = function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => AX.el("option", { value: String(v), text: label })));
  if (value !== undefined && options.some(([v]) => String(v) === String(value))) select.value = String(value);
};

AX.range = (n) => Array.from({ length: n }, (_, i) => i);

AX.bytes = function bytes(b64) {
  const text = atob(b64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
};

AX.fmt = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits === undefined ? 3 : digits));

// A canvas sized in CSS pixels, drawn sharp on high-density screens.
AX.sizeCanvas = function sizeCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
};

// Ten distinguishable colours for heads (Tableau 10), then repeated.
AX.HEAD_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac"];
AX.headColour = (h) => AX.HEAD_COLOURS[h % AX.HEAD_COLOURS.length];

// A sequential colour map (white -> deep blue) for weights in 0..1.
AX.heatColour = function heatColour(t) {
  t = Math.max(0, Math.min(1, t));
  const r = Math.round(255 - t * (255 - 8));
  const g = Math.round(255 - t * (255 - 48));
  const b = Math.round(255 - t * (255 - 107));
  return [r, g, b];
};

// A diverging map (blue - white - red) for signed values scaled to -1..1.
AX.divergingColour = function divergingColour(t) {
  t = Math.max(-1, Math.min(1, t));
  if (t >= 0) return [255, Math.round(255 - t * 200), Math.round(255 - t * 210)];
  return [Math.round(255 + t * 210), Math.round(255 + t * 160), 255];
};

// Draw uint8 pixels (rows x cols) into a canvas region with a colour map.
AX.drawPixels = function drawPixels(ctx, pixels, rows, cols, x, y, width, height, colour) {
  const image = new ImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const [r, g, b] = colour(pixels[i] / 255);
    image.data.set([r, g, b, 255], 4 * i);
  }
  AX.blit(ctx, image, x, y, width, height);
};

// Draw an ImageData scaled into a canvas region, pixels kept sharp.
AX.blit = function blit(ctx, image, x, y, width, height) {
  const scratch = document.createElement("canvas");
  scratch.width = image.width;
  scratch.height = image.height;
  scratch.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, x, y, width, height);
};

// Trim long token labels for drawing.
AX.short = (label, n) => (label.length > (n || 14) ? label.slice(0, (n || 14) - 1) + "…" : label);

AX.stack = function stack(name) {
  const stacks = AX.analysis ? AX.analysis.stacks : [];
  return stacks.find((s) => s.name === name) || stacks[0];
};

// Token chips that can be clicked (a position picker).
AX.tokenChips = function tokenChips(box, tokens, selected, onPick, limit) {
  const shown = tokens.slice(0, limit || tokens.length);
  box.replaceChildren(...shown.map((t, i) => AX.el("span", {
    class: "chip" + (i === selected ? " selected" : ""), text: t, "data-index": String(i),
    onclick: () => onPick(i),
  })));
};
