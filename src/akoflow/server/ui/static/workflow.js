// One workflow: its DAG, timeline and activity table updating live, cancel and retry, and a
// panel for the selected activity with its attempts, followed logs and CPU/memory charts.

import { api, download, events } from "./api.js";
import { lineChart, timeline } from "./charts.js";
import { confirmButton, fill, h, link, visibleText } from "./dom.js";
import { bytes, clock, duration, FINAL, percent } from "./format.js";
import { drawGraph, MAX_NODES } from "./graph.js";
import { poll, showError, sleep } from "./live.js";
import { badge, progress } from "./dashboard.js";

const POLL_MS = 1500;
const METRICS_MS = 2000;
const MAX_LOG_CHARS = 2_000_000; // older output is dropped from the page past this
const TABLE_LIMIT = 1000;
const LINEAGE_MS = 5000; // the lineage is read again at most this often while a run goes on

function activityPath(wfId, name) {
  return `/workflows/${wfId}/activities/${encodeURIComponent(name)}`;
}

function section(title, ...body) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...body);
}

export function mount(root, { id }) {
  const wfId = Number(id);
  const alive = new AbortController();
  let wf = null;
  let acts = [];
  let graph = null;
  let selected = null; // {name, abort, stopMetrics}
  const rows = new Map(); // name -> {tr, cells, cancel}

  // ---- header
  const title = h("h1", { id: "wf-title" }, `Workflow #${wfId}`);
  const state = h("span", { id: "wf-state" });
  const meta = h("p", { class: "meta", id: "wf-meta" });
  const bar = h("div", { class: "wf-progress" });
  const act = async (path) => {
    try {
      await api(`/workflows/${wfId}/${path}/`, { method: "POST", signal: alive.signal });
      showError(null);
      await refresh();
    } catch (err) {
      if (err.name !== "AbortError") showError(err.message);
    }
  };
  const cancelBtn = confirmButton("Cancel workflow", "Click again to cancel", () => act("cancel"), { id: "wf-cancel", class: "btn btn-danger" });
  const retryBtn = confirmButton("Retry", "Click again to retry", () => act("retry"), { id: "wf-retry", class: "btn" });
  const header = h(
    "section",
    { class: "panel wf-head" },
    h("div", { class: "panel-head" }, h("div", {}, link("/akoflow-admin/", { class: "back" }, "← Workflows"), h("div", { class: "title-line" }, title, state)), h("div", { class: "toolbar" }, cancelBtn, retryBtn)),
    meta,
    bar,
  );

  // ---- sections
  const graphBox = h("div", { class: "scroll-x", id: "dag" });
  const timelineBox = h("div", { class: "scroll-x", id: "timeline" });
  const tbody = h("tbody", { id: "act-rows" });
  const tableNote = h("p", { class: "muted small", hidden: true });
  const detail = h("section", { class: "panel", id: "activity", hidden: true });
  const lineage = h("section", { class: "panel", id: "lineage", hidden: true });
  fill(
    root,
    header,
    section("Graph", h("p", { class: "muted small" }, "Activities by dependency level; click one for its logs."), graphBox),
    section(
      "Activities",
      h(
        "table",
        { class: "table", id: "activities" },
        h("thead", {}, h("tr", {}, ["Activity", "State", "Runtime", "Node", "Attempts", "Started", "Duration", "Exit code", ""].map((c) => h("th", {}, c)))),
        tbody,
      ),
      tableNote,
    ),
    detail,
    section("Timeline", timelineBox),
    lineage,
  );

  // ---- live state
  const drawHeader = () => {
    fill(title, wf.name);
    fill(state, badge(wf.state), wf.cancelRequested && !FINAL.has(wf.state) ? h("span", { class: "muted small" }, " cancelling…") : null);
    const t = wf.times;
    const end = t.finishedAt ?? (t.startedAt ? Date.now() / 1000 : null);
    fill(
      meta,
      h("span", {}, `#${wf.id}`),
      h("span", {}, `namespace ${wf.spec.namespace || "—"}`),
      h("span", {}, `created ${clock(t.createdAt)}`),
      h("span", {}, `started ${clock(t.startedAt)}`),
      h("span", {}, `duration ${t.startedAt ? duration(end - t.startedAt) : "—"}`),
      h("span", {}, `${wf.activityCount} activities`),
    );
    fill(bar, progress(wf.activityStates, wf.activityCount));
    cancelBtn.hidden = FINAL.has(wf.state);
    retryBtn.hidden = !(wf.state === "failed" || wf.state === "cancelled");
    document.title = `${visibleText(wf.name)} · AkôFlow`;
  };

  const row = (a) => {
    let r = rows.get(a.name);
    if (!r) {
      const cells = Array.from({ length: 8 }, () => h("td"));
      const cancel = confirmButton("Cancel", "Confirm", async () => {
        try {
          await api(`${activityPath(wfId, a.name)}/cancel/`, { method: "POST", signal: alive.signal });
          await refresh();
        } catch (err) {
          if (err.name !== "AbortError") showError(err.message);
        }
      }, { class: "btn btn-small btn-danger", "aria-label": `Cancel ${a.name}` });
      const logs = h("button", { type: "button", class: "btn btn-small", "aria-label": `Logs of ${a.name}`, onclick: () => select(a.name) }, "Logs");
      const tr = h("tr", { class: "clickable", dataset: { name: a.name } }, cells, h("td", { class: "actions" }, logs, cancel));
      tr.addEventListener("click", (e) => {
        if (!e.target.closest("button")) select(a.name);
      });
      cells[0].append(h("span", { class: "act-name" }, a.name));
      r = { tr, cells, cancel };
      rows.set(a.name, r);
    }
    const now = Date.now() / 1000;
    const end = a.finishedAt ?? (a.startedAt && !FINAL.has(a.state) ? now : null);
    fill(r.cells[1], badge(a.state));
    fill(r.cells[2], a.runtime);
    fill(r.cells[3], a.node || "—");
    r.cells[4].textContent = `${a.attempt}/${a.maxAttempts}`;
    r.cells[5].textContent = clock(a.startedAt);
    r.cells[6].textContent = a.startedAt && end ? duration(end - a.startedAt) : "—";
    r.cells[7].textContent = a.exitCode ?? "—";
    r.cells[7].className = a.exitCode ? "num bad" : "num";
    r.tr.dataset.state = a.state;
    r.tr.classList.toggle("selected", selected?.name === a.name);
    r.cancel.hidden = FINAL.has(a.state) || FINAL.has(wf.state);
    return r.tr;
  };

  const drawActivities = () => {
    if (!wf) return;
    const trs = acts.map(row);
    if (tbody.childElementCount !== trs.length) fill(tbody, trs);
    tableNote.hidden = wf.activityCount <= acts.length;
    tableNote.textContent = `Showing the first ${acts.length} of ${wf.activityCount} activities.`;
    if (graph) {
      graph.update(acts.map((a) => ({ id: a.name, label: a.name, sub: a.node ? `${a.runtime} · ${a.node}` : a.runtime, state: a.state, selected: selected?.name === a.name })));
    }
    if (acts.length <= MAX_NODES) {
      fill(timelineBox, timeline(acts.map((a) => ({ name: a.name, state: a.state, start: a.startedAt, end: a.finishedAt })), Date.now() / 1000));
    } else {
      fill(timelineBox, h("p", { class: "muted" }, `The timeline is drawn for workflows of up to ${MAX_NODES} activities.`));
    }
    if (selected) selected.update(acts.find((a) => a.name === selected.name));
  };

  const refresh = async () => {
    const [doc, page] = await Promise.all([
      api(`/workflows/${wfId}/?activities=false`, { signal: alive.signal }),
      api(`/workflows/${wfId}/activities/?limit=${TABLE_LIMIT}`, { signal: alive.signal }),
    ]);
    wf = doc.data;
    acts = page.data;
    drawHeader();
    drawActivities();
    lineageDue();
  };

  // The structure (dependsOn) never changes: read it once, then poll only states.
  const init = async () => {
    let doc;
    try {
      doc = await api(`/workflows/${wfId}/?activities=false`, { signal: alive.signal });
    } catch (err) {
      if (err.status === 404) {
        fill(root, h("section", { class: "panel" }, h("h1", {}, `Workflow #${wfId} not found`), link("/akoflow-admin/", {}, "Back to the workflows")));
        return false;
      }
      throw err;
    }
    if (doc.data.activityCount <= MAX_NODES) {
      const full = await api(`/workflows/${wfId}/`, { signal: alive.signal });
      const spec = full.data.spec.activities;
      const deps = new Map(spec.map((a) => [a.name, a.dependsOn]));
      graph = drawGraph(spec.map((a) => ({ id: a.name, label: a.name, sub: a.runtime, state: a.state })), deps, { onSelect: select, title: `dependency graph of ${doc.data.name}` });
      fill(graphBox, graph.svg);
    } else {
      fill(graphBox, h("p", { class: "muted" }, `The graph is drawn for workflows of up to ${MAX_NODES} activities; this one has ${doc.data.activityCount}.`));
    }
    return true;
  };

  // Provenance: `/lineage/` adds the data-dir files each activity used and generated; the
  // graph is drawn only when there are file nodes (the DAG above has the rest). Files are
  // recorded as activities end: it is read again when the number of ended activities changes
  // (at most every LINEAGE_MS; once more at the run's end), never twice at the same time.
  let lineageSeen = null; // what the last reading was read after: "<ended>/<run ended>"
  let lineageAt = 0;
  let lineageBusy = false;
  const lineageDue = () => {
    if (!wf || lineageBusy) return;
    const ended = [...FINAL].reduce((n, st) => n + (wf.activityStates?.[st] || 0), 0);
    const final = FINAL.has(wf.state);
    const seen = `${ended}/${final}`;
    if (seen === lineageSeen || (!final && Date.now() - lineageAt < LINEAGE_MS)) return;
    lineageSeen = seen;
    loadLineage();
  };
  const loadLineage = async () => {
    lineageBusy = true;
    lineageAt = Date.now();
    try {
      // The data dir's files, each linked to its download (the graph's file nodes too).
      // A run too big to draw: only its files' nodes (the ambiguous ones are listed), not a
      // node and an edge per activity read again every few seconds while it runs.
      const big = wf.activityCount > MAX_NODES;
      const [doc, files] = await Promise.all([
        api(`/workflows/${wfId}/lineage/${big ? "?activities=false" : ""}`, { signal: alive.signal }),
        api(`/workflows/${wfId}/files/?limit=1000`, { signal: alive.signal }),
      ]);
      const { nodes, edges } = doc.data;
      const drawable = !big && nodes.some((n) => n.type !== "activity") && nodes.length <= MAX_NODES;
      if (!drawable && !files.data.length) return;
      const byNode = new Map(files.data.map((f) => [`file:${f.pathEncoded}`, f]));
      const save = (f) => download(`/workflows/${wfId}/files/${f.pathEncoded}`, f.path.split("/").pop(), { signal: alive.signal }).catch((err) => err.name === "AbortError" || showError(err.message));
      const deps = new Map();
      for (const e of edges) deps.set(e.from, [...(deps.get(e.from) || []), e.to]);
      // An ambiguous file (no activity can be said to have generated it) is drawn dashed,
      // with dashed `candidate` edges to the activities that may have (never a
      // `wasGeneratedBy`); the list below names them and says why.
      const names = (n) => n.candidates.join(", ") || "no candidate";
      const who = (n) => (n.candidates.length ? `may have been generated by ${names(n)}` : "was written by no known activity");
      const unsure = nodes.filter((n) => n.type === "ambiguous" || n.candidates.length);
      // A `copy` is a file the engine copied there from another location (a `copiedFrom`
      // edge to it), no version of its own: its label says where it lives.
      const sub = (n) => (n.type === "ambiguous" ? `ambiguous: ${names(n)}` : n.type);
      const state = (n) => (n.type === "ambiguous" ? "ambiguous" : n.state);
      const flagged = new Set(unsure);
      const tip = (n) => (flagged.has(n) ? `${n.label} — ${n.type === "ambiguous" ? "ambiguous" : "a version ambiguous"}: ${who(n)}: ${n.reason}` : null);
      const onSelect = (id) => byNode.has(id) && save(byNode.get(id));
      const g = drawable ? drawGraph(nodes.map((n) => ({ id: n.id, label: n.label, sub: sub(n), state: state(n), tip: tip(n) })), deps, { title: "lineage", edges, onSelect }) : null;
      const list = unsure.length
        ? h(
            "div",
            { class: "ambiguous" },
            h("h3", {}, `Ambiguous files (${unsure.length})`),
            h("ul", {}, ...unsure.map((n) => h("li", { dataset: { id: n.id } }, h("code", {}, n.label), ` ${who(n)}: ${n.reason}`))),
          )
        : null;
      const shown = (f) => h("code", { title: f.sha256 || "no recorded hash of this version" }, f.sha256 ? f.sha256.slice(0, 12) : "—");
      const table = files.data.length
        ? h(
            "div",
            { class: "files" },
            h("h3", {}, files.total > files.data.length ? `Files (first ${files.data.length} of ${files.total})` : `Files (${files.total})`),
            h(
              "table",
              { class: "table", id: "files" },
              h("thead", {}, h("tr", {}, ["File", "Generated by", "Size", "SHA-256", ""].map((c) => h("th", {}, c)))),
              h(
                "tbody",
                {},
                ...files.data.map((f) =>
                  h(
                    "tr",
                    { dataset: { path: f.pathEncoded } },
                    h("td", {}, h("code", {}, f.path)),
                    h("td", {}, f.activity || f.origin),
                    h("td", {}, bytes(f.size)),
                    h("td", {}, shown(f)),
                    h("td", {}, h("a", { href: f.url, class: "download", onclick: (e) => { e.preventDefault(); save(f); } }, "Download")),
                  ),
                ),
              ),
            ),
          )
        : null;
      fill(lineage, h("h2", {}, "Lineage"), g ? h("p", { class: "muted small" }, "Files each activity used and generated; dashed: no activity can be said to have generated it; copiedFrom: a file the engine copied from one location (the engine host, a cluster) to another. Click a file to download it.") : null, g ? h("div", { class: "scroll-x" }, g.svg) : null, list, table);
      lineage.hidden = false;
    } catch (err) {
      if (err.name !== "AbortError") showError(err.message);
    } finally {
      lineageBusy = false;
    }
  };

  // ---- the selected activity
  function select(name) {
    if (selected?.name === name) return;
    if (selected) selected.close();
    selected = openActivity(name);
    for (const [n, r] of rows) r.tr.classList.toggle("selected", n === name);
    if (graph) drawActivities();
    detail.scrollIntoView({ block: "nearest" });
  }

  function openActivity(name) {
    const stop = new AbortController();
    alive.signal.addEventListener("abort", () => stop.abort());
    const stateEl = h("span");
    const info = h("dl", { class: "facts" });
    const attempts = h("tbody");
    const log = h("pre", { class: "log", id: "log", role: "log", tabindex: 0 });
    const logStatus = h("span", { class: "muted small", id: "log-status" }, "connecting…");
    const cpu = h("div", { class: "chart-box", id: "cpu-chart" });
    const mem = h("div", { class: "chart-box", id: "mem-chart" });
    const usage = h("p", { class: "muted small" });
    const close = h("button", { type: "button", class: "btn btn-quiet", onclick: () => { if (selected?.name === name) { selected.close(); selected = null; detail.hidden = true; drawActivities(); } } }, "Close");
    fill(
      detail,
      h("div", { class: "panel-head" }, h("h2", {}, "Activity ", h("span", { class: "act-name", id: "act-title" }, name), " ", stateEl), close),
      info,
      h("h3", {}, "Attempts"),
      h("table", { class: "table compact" }, h("thead", {}, h("tr", {}, ["#", "State", "Runtime", "Node", "Started", "Finished", "Exit code", "Reason"].map((c) => h("th", {}, c)))), attempts),
      h("div", { class: "panel-head" }, h("h3", {}, "Output"), logStatus),
      log,
      h("h3", {}, "Resources"),
      h("div", { class: "charts" }, h("figure", {}, h("figcaption", {}, "CPU"), cpu), h("figure", {}, h("figcaption", {}, "Memory"), mem)),
      usage,
    );
    detail.hidden = false;

    let lastState = null;
    const loadDetail = async () => {
      const [d, m] = await Promise.all([
        api(`${activityPath(wfId, name)}/`, { signal: stop.signal }),
        api(`${activityPath(wfId, name)}/metrics/?limit=1000`, { signal: stop.signal }),
      ]);
      const a = d.data;
      fill(stateEl, badge(a.state));
      fill(
        info,
        [["Runtime", a.runtime], ["Node", a.node || "—"], ["Image", a.image || "—"], ["Depends on", a.dependsOn.join(", ") || "—"], ["Limits", `cpu ${a.cpuLimit || "—"} · memory ${a.memoryLimit || "—"}`]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        h("dt", {}, "Command"),
        h("dd", {}, h("pre", { class: "command" }, a.run)),
      );
      fill(
        attempts,
        a.attempts.map((t) => h("tr", {}, h("td", {}, t.number), h("td", {}, badge(t.state === "lost" ? "failed" : t.state), t.state === "lost" ? " lost" : ""), h("td", {}, t.runtime), h("td", {}, t.node || "—"), h("td", {}, clock(t.startedAt)), h("td", {}, clock(t.finishedAt)), h("td", {}, t.exitCode ?? "—"), h("td", { class: "reason" }, t.reason || ""))),
      );
      if (!a.attempts.length) fill(attempts, h("tr", {}, h("td", { colspan: 8, class: "empty" }, "Not started yet.")));
      const samples = m.data.samples;
      const empty = FINAL.has(a.state) ? "no samples (taken every 2 s while it runs)" : "no samples yet";
      fill(cpu, lineChart(samples.map((x) => [x.ts, x.cpuPercent]), { title: `CPU of ${name}`, yFormat: percent, empty }));
      fill(mem, lineChart(samples.map((x) => [x.ts, x.memoryBytes]), { title: `memory of ${name}`, yFormat: bytes, empty }));
      fill(usage, m.data.attempts
        .map((u) => `attempt ${u.number}: CPU time ${u.cpuSeconds === null ? "—" : duration(u.cpuSeconds)}, mean CPU ${percent(u.meanCpuPercent)}, peak memory ${bytes(u.peakMemoryBytes ?? u.maxRssBytes)}`)
        .join(" · "));
      lastState = a.state;
    };
    // Poll the detail and metrics while the activity can change; a state change seen by the
    // table's poll (a retry, the end) starts it again at once.
    let stopMetrics = () => {};
    const watch = () => {
      stopMetrics();
      stopMetrics = poll(async () => {
        await loadDetail();
        if (FINAL.has(lastState)) stopMetrics();
      }, METRICS_MS);
    };
    watch();

    // The output viewer's position; a retry of an ended activity follows on from it.
    const output = { pre: log, status: logStatus, after: 0, attempt: null, size: 0, following: true, run: null };
    followLogs(name, output, stop.signal);
    return {
      name,
      close: () => {
        stop.abort();
        stopMetrics();
      },
      update: (a) => {
        if (a && lastState !== null && a.state !== lastState) watch();
        // A new attempt (a retry, possibly already over by now) after the stream ended.
        const run = a ? `${a.attempt}|${a.startedAt}` : null;
        if (run && output.run && run !== output.run && !output.following) {
          output.following = true;
          followLogs(name, output, stop.signal);
        }
        if (run) output.run = run;
      },
    };
  }

  async function followLogs(name, out, signal) {
    const { pre, status } = out;
    const add = (node, length) => {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.append(node);
      out.size += length;
      while (out.size > MAX_LOG_CHARS && pre.firstChild) {
        out.size -= pre.firstChild.textContent.length;
        pre.firstChild.remove();
      }
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    };
    while (!signal.aborted) {
      try {
        status.textContent = "following live output";
        for await (const ev of events(`${activityPath(wfId, name)}/logs/stream/?after=${out.after}`, { signal })) {
          if (ev.event === "log") {
            const chunk = JSON.parse(ev.data);
            out.after = chunk.id;
            if (chunk.attempt !== out.attempt) {
              out.attempt = chunk.attempt;
              add(h("span", { class: "log-mark" }, `— attempt ${chunk.attempt} —\n`), 20);
            }
            add(h("span", { class: chunk.stream === "stderr" ? "stderr" : "stdout" }, chunk.data), chunk.data.length);
          } else if (ev.event === "end") {
            const end = JSON.parse(ev.data);
            if (!pre.childElementCount) add(h("span", { class: "log-mark" }, "(no output)\n"), 12);
            const code = end.exitCode === null || end.exitCode === undefined ? "" : `, exit code ${end.exitCode}`;
            add(h("span", { class: "log-mark", dataset: { end: "true" } }, `— ${end.state ?? "ended"}${code} —\n`), 30);
            status.textContent = "ended";
            out.following = false;
            return;
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err.status === 404) {
          status.textContent = "gone";
          out.following = false;
          return;
        }
        status.textContent = "reconnecting…";
      }
      await sleep(1000, signal);
    }
  }

  // ---- start
  let stopPoll = () => {};
  init()
    .then((ok) => {
      if (ok && !alive.signal.aborted) stopPoll = poll(refresh, POLL_MS);
    })
    .catch((err) => {
      if (err.name !== "AbortError") showError(err.message);
    });
  return () => {
    alive.abort();
    stopPoll();
    if (selected) selected.close();
  };
}
