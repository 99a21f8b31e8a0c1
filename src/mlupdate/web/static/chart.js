// The live loss chart: an inline SVG line of the loss after each mini-batch, drawn without any library.
"use strict";
window.LossChart = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 180, L = 64, R = 12, T = 10, B = 28;

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // points: [{step, loss}]; steps: mini-batches in the whole Train; batches: mini-batches per epoch.
  function draw(svg, points, steps, batches) {
    const top = Math.max(1e-6, ...points.map((p) => p.loss)) * 1.1;
    const x = (s) => L + (W - L - R) * s / Math.max(steps, 1);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const kids = [];
    for (let i = 0; i <= 4; i++) {
      const v = top * i / 4;
      kids.push(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      kids.push(el("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, v.toFixed(2)));
    }
    const epochs = Math.max(1, Math.round(steps / Math.max(batches, 1)));
    const every = Math.max(1, Math.ceil(epochs / 10));
    for (let e = 0; e <= epochs; e += every) {
      kids.push(el("text", { x: x(e * batches), y: H - 8, class: "tick", "text-anchor": "middle" }, String(e)));
    }
    kids.push(el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    kids.push(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    if (points.length) {
      const pts = points.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(" ");
      kids.push(el("polyline", { points: pts, class: "loss-line" }));
      const last = points[points.length - 1];
      kids.push(el("circle", { cx: x(last.step), cy: y(last.loss), r: 3.5, class: "loss-dot" }));
    }
    svg.replaceChildren(...kids);
  }

  return { draw };
})();
