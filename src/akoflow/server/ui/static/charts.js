// Small SVG charts: a line chart of a time series and a timeline (Gantt) of activities.

import { s } from "./dom.js";
import { duration, stateClass } from "./format.js";

const W = 460;
const H = 160;
const M = { top: 14, right: 12, bottom: 24, left: 62 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** points: [[unixSeconds, value]] (null values leave a gap). yFormat: value -> text. */
export function lineChart(points, { title, yFormat = String, yMin = 0, yMax, empty = "no samples yet" } = {}) {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" }, s("title", {}, title));
  const shown = points.filter(([, v]) => v !== null && v !== undefined);
  if (!shown.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" }, empty));
    return svg;
  }
  const t0 = shown[0][0];
  const t1 = Math.max(shown[shown.length - 1][0], t0 + 1);
  const top = niceMax(yMax ?? Math.max(...shown.map(([, v]) => v)));
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * pw;
  const y = (v) => M.top + ph - ((v - yMin) / (top - yMin)) * ph;
  for (const frac of [0, 0.5, 1]) {
    const v = yMin + frac * (top - yMin);
    svg.append(
      s("line", { x1: M.left, x2: M.left + pw, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: M.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, yFormat(v)),
    );
  }
  svg.append(
    s("text", { x: M.left, y: H - 6, class: "axis" }, "0 s"),
    s("text", { x: M.left + pw, y: H - 6, class: "axis", "text-anchor": "end" }, duration(t1 - t0)),
  );
  let d = "";
  let pen = false;
  for (const [t, v] of points) {
    if (v === null || v === undefined) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
    pen = true;
  }
  svg.append(s("path", { d: d.trim(), class: "series" }));
  if (shown.length === 1) {
    const [t, v] = shown[0];
    svg.append(s("circle", { cx: x(t), cy: y(v), r: 3, class: "series-dot" }));
  }
  return svg;
}

/** rows: [{name, state, start, end}] in UNIX seconds (end null while running). */
export function timeline(rows, now) {
  const started = rows.filter((r) => r.start !== null && r.start !== undefined);
  const rowH = 22;
  const left = 150;
  const width = 920;
  const height = 30 + Math.max(1, rows.length) * rowH;
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img" }, s("title", {}, "timeline"));
  if (!started.length) {
    svg.append(s("text", { x: width / 2, y: 24, class: "chart-empty", "text-anchor": "middle" }, "nothing has started yet"));
    return svg;
  }
  const t0 = Math.min(...started.map((r) => r.start));
  const t1 = Math.max(t0 + 1, ...started.map((r) => r.end ?? now));
  const pw = width - left - 16;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * pw;
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const gx = left + frac * pw;
    svg.append(
      s("line", { x1: gx, x2: gx, y1: 18, y2: height, class: "grid" }),
      s("text", { x: gx, y: 12, class: "axis", "text-anchor": frac === 1 ? "end" : frac === 0 ? "start" : "middle" }, duration(frac * (t1 - t0))),
    );
  }
  rows.forEach((r, i) => {
    const y = 24 + i * rowH;
    svg.append(s("text", { x: left - 8, y: y + 13, class: "axis row-label", "text-anchor": "end" }, r.name.length > 22 ? `${r.name.slice(0, 21)}…` : r.name));
    if (r.start === null || r.start === undefined) return;
    const end = r.end ?? now;
    const bx = x(r.start);
    const bw = Math.max(2, x(end) - bx);
    svg.append(
      s(
        "rect",
        { x: bx, y, width: bw, height: rowH - 6, rx: 3, class: `bar ${stateClass(r.state)}` },
        s("title", {}, `${r.name}: ${r.state}, ${duration(end - r.start)}`),
      ),
    );
  });
  return svg;
}
