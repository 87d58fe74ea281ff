/* A canvas to draw a digit on (white ink on black, as MNIST), sent to the model as a PNG. */
"use strict";

(function () {
  const pad = { drawing: false, last: null, inked: false };

  function init() {
    const canvas = AX.$("draw");
    const ctx = canvas.getContext("2d");
    clear();
    const point = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * (canvas.width / r.width), (e.clientY - r.top) * (canvas.height / r.height)];
    };
    canvas.addEventListener("pointerdown", (e) => {
      pad.drawing = true;
      pad.last = point(e);
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!pad.drawing) return;
      const p = point(e);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 22;
      ctx.lineCap = "round";
      ctx.beginPath();
      ctx.moveTo(pad.last[0], pad.last[1]);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
      pad.last = p;
      pad.inked = true;
    });
    const stop = () => { pad.drawing = false; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    AX.$("draw-clear").addEventListener("click", clear);
  }

  function clear() {
    const canvas = AX.$("draw");
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    pad.inked = false;
  }

  // The drawing as PNG bytes (a Blob).
  function blob() {
    return new Promise((resolve) => AX.$("draw").toBlob(resolve, "image/png"));
  }

  AX.drawPad = { init, clear, blob, inked: () => pad.inked };
})();
