// Dashboard: every workflow with its state and activity counts, search and filter, live.

import { api } from "./api.js";
import { fill, h, link } from "./dom.js";
import { clock, duration, STATES, stateClass } from "./format.js";
import { poll } from "./live.js";
import { navigate, workflowPath } from "./nav.js";

const PAGE = 50;
const POLL_MS = 2000;
const WF_STATES = ["pending", "running", "succeeded", "failed", "cancelled"];

export function badge(state) {
  return h("span", { class: ["badge", stateClass(state)] }, state);
}

/** A bar of the activities' states, widths proportional to their counts. */
export function progress(counts, total) {
  const bar = h("div", { class: "progress", role: "img" });
  const parts = [];
  for (const state of STATES) {
    const n = counts[state] || 0;
    if (!n) continue;
    parts.push(`${n} ${state}`);
    const seg = h("span", { class: ["seg", stateClass(state)], title: `${n} ${state}` });
    seg.style.width = `${(100 * n) / Math.max(1, total)}%`;
    bar.append(seg);
  }
  bar.setAttribute("aria-label", parts.join(", ") || "no activities");
  return bar;
}

function countsText(counts, total) {
  const done = (counts.succeeded || 0) + (counts.cached || 0) + (counts.failed || 0) + (counts.cancelled || 0) + (counts.skipped || 0);
  const extra = ["running", "failed"].filter((st) => counts[st]).map((st) => `${counts[st]} ${st}`);
  return `${done}/${total} done${extra.length ? ` · ${extra.join(" · ")}` : ""}`;
}

export function mount(root) {
  let page = 0;
  let last = null;
  const search = h("input", { type: "search", id: "wf-search", placeholder: "Search by name", "aria-label": "Search workflows by name" });
  const state = h(
    "select",
    { id: "wf-state", "aria-label": "Filter by state" },
    h("option", { value: "" }, "All states"),
    h("option", { value: "unfinished" }, "Unfinished"),
    WF_STATES.map((st) => h("option", { value: st }, st)),
  );
  const tbody = h("tbody", { id: "wf-rows" });
  const summary = h("span", { class: "muted" });
  const prev = h("button", { type: "button", class: "btn", onclick: () => { page -= 1; refresh(); } }, "← Newer");
  const next = h("button", { type: "button", class: "btn", onclick: () => { page += 1; refresh(); } }, "Older →");

  const draw = () => {
    if (!last) return;
    const q = search.value.trim().toLowerCase();
    const want = state.value;
    const rows = last.data.filter(
      (wf) => (!q || wf.name.toLowerCase().includes(q)) && (!want || want === "unfinished" || wf.state === want),
    );
    const now = Date.now() / 1000;
    fill(
      tbody,
      rows.map((wf) => {
        const t = wf.times;
        const end = t.finishedAt ?? (wf.state === "running" ? now : null);
        const tr = h(
          "tr",
          { class: "clickable", dataset: { id: wf.id, state: wf.state } },
          h("td", { class: "num" }, `#${wf.id}`),
          h("td", {}, link(workflowPath(wf.id), { class: "wf-link" }, wf.name)),
          h("td", {}, badge(wf.state), wf.cancelRequested && wf.state === "running" ? h("span", { class: "muted small" }, " cancelling") : null),
          h("td", { class: "progress-cell" }, progress(wf.activityStates, wf.activityCount), h("span", { class: "small muted" }, countsText(wf.activityStates, wf.activityCount))),
          h("td", {}, clock(t.createdAt)),
          h("td", { class: "num" }, t.startedAt && end ? duration(end - t.startedAt) : "—"),
        );
        tr.addEventListener("click", (e) => {
          if (!e.target.closest("a")) navigate(workflowPath(wf.id));
        });
        return tr;
      }),
    );
    if (!rows.length) {
      const text = last.total ? "No workflow on this page matches." : "No workflows yet.";
      fill(tbody, h("tr", {}, h("td", { colspan: 6, class: "empty" }, text, " ", link("/akoflow-admin/submit", {}, "Submit one"))));
    }
    const first = last.total ? last.offset + 1 : 0;
    summary.textContent = `${first}–${last.offset + last.data.length} of ${last.total} workflows`;
    prev.disabled = page === 0;
    next.disabled = last.offset + last.data.length >= last.total;
  };

  const load = async () => {
    const unfinished = state.value === "unfinished" || state.value === "pending" || state.value === "running";
    const query = new URLSearchParams({ activities: "false", limit: String(PAGE), offset: String(page * PAGE) });
    if (unfinished) query.set("unfinished", "true");
    last = await api(`/workflows/?${query}`);
    draw();
  };
  let stop = poll(load, POLL_MS);
  const refresh = () => {
    stop();
    stop = poll(load, POLL_MS);
  };
  search.addEventListener("input", draw);
  state.addEventListener("change", () => {
    page = 0;
    refresh();
  });

  fill(
    root,
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h1", {}, "Workflows"),
        h("div", { class: "toolbar" }, search, state, link("/akoflow-admin/submit", { class: "btn btn-primary" }, "Submit a workflow")),
      ),
      h(
        "table",
        { class: "table", id: "workflows" },
        h("thead", {}, h("tr", {}, ["ID", "Name", "State", "Activities", "Created", "Duration"].map((c) => h("th", {}, c)))),
        tbody,
      ),
      h("div", { class: "pager" }, summary, h("span", {}, prev, next)),
    ),
  );
  return () => stop();
}
