// A small line chart on a <canvas>: the values the page sampled since it opened (no chart library).

/**
 * @param {HTMLCanvasElement} canvas
 * @param {{t: number, v: number}[]} points  t in ms since the epoch
 * @param {(v: number) => string} format  how the y axis labels its values
 */
export function drawLine(canvas, points, format = String) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const style = getComputedStyle(canvas);
  const ink = style.color || "#222";
  const line = style.getPropertyValue("--line").trim() || "#e4572e";
  const pad = { left: 64, right: 12, top: 12, bottom: 24 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;

  const t0 = points.length ? points[0].t : Date.now();
  const t1 = points.length > 1 ? points[points.length - 1].t : t0 + 60_000;
  const vmax = Math.max(1, ...points.map((p) => p.v));
  const x = (t) => pad.left + ((t - t0) / Math.max(1, t1 - t0)) * w;
  const y = (v) => pad.top + hgt - (v / vmax) * hgt;

  g.strokeStyle = "rgba(127,127,127,0.35)";
  g.fillStyle = ink;
  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    g.beginPath();
    g.moveTo(pad.left, y(v));
    g.lineTo(pad.left + w, y(v));
    g.stroke();
    g.fillText(format(v), pad.left - 6, y(v));
  }
  g.textAlign = "left";
  g.textBaseline = "top";
  g.fillText(new Date(t0).toLocaleTimeString("en-GB"), pad.left, pad.top + hgt + 6);
  g.textAlign = "right";
  g.fillText(new Date(t1).toLocaleTimeString("en-GB"), pad.left + w, pad.top + hgt + 6);

  if (!points.length) return;
  g.strokeStyle = line;
  g.lineWidth = 2;
  g.beginPath();
  points.forEach((p, i) => {
    // A step line: GMV jumps when an order is paid, it does not slide there.
    if (i === 0) g.moveTo(x(p.t), y(p.v));
    else {
      g.lineTo(x(p.t), y(points[i - 1].v));
      g.lineTo(x(p.t), y(p.v));
    }
  });
  g.stroke();
  const last = points[points.length - 1];
  g.fillStyle = line;
  g.beginPath();
  g.arc(x(last.t), y(last.v), 3, 0, 2 * Math.PI);
  g.fill();
}
