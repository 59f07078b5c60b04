// Runtimes: health (READY / NOT_READY, last check, reason), nodes, and the configuration as
// the server gives it (secret values are already *** there; masked here again all the same).

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { ago, bytes, clock } from "./format.js";
import { poll } from "./live.js";

const POLL_MS = 5000;
const SECRET_KEY = /(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|_KEY$|APIKEY|AUTH)/i;

function health(rt) {
  const ready = rt.state === "READY";
  return h("span", { class: ["badge", ready ? "state-succeeded" : "state-failed"] }, ready ? "READY" : "NOT_READY");
}

function nodesTable(nodes) {
  if (!nodes.length) return h("p", { class: "muted small" }, "No nodes reported.");
  return h(
    "table",
    { class: "table compact nodes" },
    h("thead", {}, h("tr", {}, ["Node", "Status", "CPU", "Memory", "Updated"].map((c) => h("th", {}, c)))),
    h(
      "tbody",
      {},
      nodes.map((n) =>
        h(
          "tr",
          {},
          h("td", {}, n.name),
          h("td", {}, n.status),
          h("td", {}, `${n.cpuUsage ?? "—"} / ${n.cpuCapacity ?? "—"}`),
          h("td", {}, `${bytes(n.memoryUsage)} / ${bytes(n.memoryCapacity)}`),
          h("td", {}, clock(n.updatedAt)),
        ),
      ),
    ),
  );
}

function configTable(metadata) {
  const keys = Object.keys(metadata).sort();
  if (!keys.length) return h("p", { class: "muted small" }, "Defaults only (no settings in the environment).");
  return h(
    "table",
    { class: "table compact config" },
    h("tbody", {}, keys.map((k) => h("tr", {}, h("th", {}, k), h("td", {}, SECRET_KEY.test(k) ? "***" : metadata[k])))),
  );
}

export function mount(root) {
  const list = h("div", { class: "runtimes", id: "runtimes" });
  fill(root, h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h1", {}, "Runtimes"), h("span", { class: "muted small" }, "health is checked every few seconds")), list));
  const load = async () => {
    const doc = await api("/runtimes/");
    const nodes = await Promise.all(
      doc.data.map((rt) => api(`/runtimes/${encodeURIComponent(rt.name)}/nodes/`).then((n) => n.data, () => [])),
    );
    const checkedAt = (rt) => (rt.createdAt ? Date.parse(rt.createdAt) / 1000 : null);
    fill(
      list,
      doc.data.map((rt, i) =>
        h(
          "article",
          { class: "runtime card", dataset: { name: rt.name, state: rt.state } },
          h("div", { class: "panel-head" }, h("h2", {}, rt.name, h("span", { class: "muted small kind" }, ` ${rt.kind}`)), health(rt)),
          h(
            "dl",
            { class: "facts" },
            h("dt", {}, "Last check"),
            h("dd", {}, `${clock(checkedAt(rt))} (${ago(checkedAt(rt))})`),
            h("dt", {}, "Reason"),
            h("dd", { class: "reason" }, rt.reason || "—"),
          ),
          h("h3", {}, "Nodes"),
          nodesTable(nodes[i]),
          h("h3", {}, "Configuration"),
          configTable(rt.metadata),
        ),
      ),
    );
    if (!doc.data.length) fill(list, h("p", { class: "empty" }, "No runtime registered yet."));
  };
  return poll(load, POLL_MS);
}
