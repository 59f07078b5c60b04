// Dependency graphs as SVG: nodes laid out in columns by dependency level (a node sits one
// column right of its deepest dependency), edges as curves from a dependency to its dependent.

import { fill, s } from "./dom.js";
import { stateClass } from "./format.js";

const NODE_W = 168;
const NODE_H = 44;
const GAP_X = 64;
const GAP_Y = 16;
const PAD = 12;
export const MAX_NODES = 400; // past this an SVG graph is unreadable and slow

/** Level of each node: 0 without dependencies, else 1 + the deepest dependency's level.
 * `deps` maps id -> ids it depends on; unknown ids are ignored, a cycle cannot loop. */
export function levels(ids, deps) {
  const known = new Set(ids);
  const level = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (level.has(id)) return level.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    let lv = 0;
    for (const dep of deps.get(id) || []) {
      if (known.has(dep)) lv = Math.max(lv, visit(dep) + 1);
    }
    visiting.delete(id);
    level.set(id, lv);
    return lv;
  };
  for (const id of ids) visit(id);
  return level;
}

/** Positions of the nodes: columns by level, rows in the given order. */
export function layout(ids, deps) {
  const level = levels(ids, deps);
  const rows = [];
  const pos = new Map();
  for (const id of ids) {
    const lv = level.get(id);
    const row = rows[lv] || 0;
    rows[lv] = row + 1;
    pos.set(id, { x: PAD + lv * (NODE_W + GAP_X), y: PAD + row * (NODE_H + GAP_Y) });
  }
  const width = PAD * 2 + rows.length * NODE_W + Math.max(0, rows.length - 1) * GAP_X;
  const height = PAD * 2 + Math.max(1, ...rows) * (NODE_H + GAP_Y) - GAP_Y;
  return { pos, width, height };
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The edges of `deps` ({from: dependent, to: dependency}) when none are given. */
function edgesOf(ids, deps) {
  return ids.flatMap((id) => (deps.get(id) || []).map((dep) => ({ from: id, to: dep, label: "" })));
}

/** Draw a graph. nodes: [{id, label, sub, state, tip?}]; deps: Map id -> [ids] (the layout).
 * `edges` ([{from, to, label}], `from` depending on `to`) are drawn instead of `deps` when
 * given: each carries its label as a class (`edge-<label>`, styled), as data-from/-to/-label
 * and in its tooltip ("<from> <label> <to>").
 * Returns {svg, update(nodes)} where update recolours and relabels nodes in place. */
export function drawGraph(nodes, deps, { onSelect, title = "dependency graph", edges: drawn } = {}) {
  const ids = nodes.map((n) => n.id);
  const { pos, width, height } = layout(ids, deps);
  const edges = s("g", { class: "edges" });
  const layer = s("g", { class: "nodes" });
  const svg = s(
    "svg",
    { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" },
    s("title", {}, title),
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" },
        s("path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" }),
      ),
    ),
    edges,
    layer,
  );
  const labelOf = new Map(nodes.map((n) => [n.id, n.label]));
  for (const edge of drawn || edgesOf(ids, deps)) {
    // Drawn from what is depended on (left) to the dependent (right).
    const from = pos.get(edge.to);
    const to = pos.get(edge.from);
    if (!from || !to) continue;
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const x2 = to.x;
    const y2 = to.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    const kind = edge.label ? `edge-${edge.label.replace(/[^A-Za-z0-9-]/g, "_")}` : null;
    edges.append(
      s(
        "path",
        {
          class: ["edge", kind],
          d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
          "marker-end": "url(#arrow)",
          dataset: edge.label ? { from: edge.from, to: edge.to, label: edge.label } : null,
        },
        edge.label ? s("title", { text: `${labelOf.get(edge.from)} ${edge.label} ${labelOf.get(edge.to)}` }) : null,
      ),
    );
  }
  const elements = new Map();
  for (const node of nodes) {
    const { x, y } = pos.get(node.id);
    const label = s("text", { x: x + 10, y: y + 18, class: "node-label" });
    const sub = s("text", { x: x + 10, y: y + 34, class: "node-sub" });
    const tip = s("title", {});
    const g = s(
      "g",
      {
        class: "node",
        tabindex: 0,
        role: "button",
        dataset: { id: node.id },
        onclick: () => onSelect && onSelect(node.id),
        onkeydown: (e) => {
          if ((e.key === "Enter" || e.key === " ") && onSelect) {
            e.preventDefault();
            onSelect(node.id);
          }
        },
      },
      tip,
      s("rect", { x, y, width: NODE_W, height: NODE_H, rx: 7, class: "node-box" }),
      label,
      sub,
    );
    elements.set(node.id, { g, label, sub, tip });
    layer.append(g);
  }
  const update = (list) => {
    for (const node of list) {
      const el = elements.get(node.id);
      if (!el) continue;
      el.g.setAttribute("class", `node ${stateClass(node.state)}${node.selected ? " selected" : ""}`);
      fill(el.label, clip(node.label, 20));
      fill(el.sub, clip(node.sub || "", 24));
      fill(el.tip, node.tip || [node.label, node.state, node.sub].filter(Boolean).join(" — "));
    }
  };
  update(nodes);
  return { svg, update };
}
