"""A self-contained HTML report of one run: summary, DAG, timeline, resources, failures, and
the files' lineage (the edges of ``akoflow prov`` and the UI's lineage graph: who generated
each file and who used it, what the engine copied between locations (each copy with its
source, destination, size and duration), and the file versions no activity can be said to
have generated, shown as ambiguous with their candidates).

One file with inline CSS and SVG and no script, so it opens anywhere, offline, and nothing in a
workflow or a log can run in it: every value goes through :func:`html.escape`.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass

from akoflow.humanize import fmt_bytes, fmt_duration
from akoflow.provenance import copies, lineage
from akoflow.provenance.names import display
from akoflow.spec.dag import levels
from akoflow.store import ActivityRecord, AttemptRecord, Repository

STATE_COLOURS = {
    "succeeded": "#2e9d5b",
    "cached": "#7cbf96",
    "failed": "#d64545",
    "cancelled": "#8a6d3b",
    "skipped": "#9aa3ad",
    "running": "#2f7fd1",
    "submitted": "#7fb0e6",
    "ready": "#c9d6e3",
    "pending": "#e3e8ee",
}
MAX_DRAWN = 2000  # activities drawn in the DAG and the timeline; the tables list them all

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2733;
padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #e3e8ee;
text-align:left;vertical-align:top}th{background:#f5f7fa}.num{text-align:right}
.state{display:inline-block;padding:0 .4rem;border-radius:.3rem;color:#fff;font-size:12px}
.muted{color:#5b6773}pre{background:#f5f7fa;padding:.5rem;overflow:auto;max-height:16rem}
svg text{font:11px system-ui,sans-serif}.scroll{overflow:auto;border:1px solid #e3e8ee}
"""


@dataclass(frozen=True, slots=True)
class _Row:
    activity: ActivityRecord
    attempts: list[AttemptRecord]
    cpu_max: float | None
    memory_max: int | None


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: float | None, end: float | None) -> str:
    return "-" if start is None or end is None else fmt_duration(end - start)


def _reused_section(repo: Repository, workflow_id: int) -> str:
    """The activities whose earlier result was reused (state ``cached``) and where from."""
    from akoflow.cache.store import CacheStore

    hits = CacheStore(repo).hits(workflow_id)
    if not hits:
        return ""
    names = {a.id: a.name for a in repo.list_activities(workflow_id)}
    rows = "".join(
        f"<tr><td>{_e(names.get(act_id, act_id))}</td><td>run #{_e(run)}</td>"
        f"<td>{_e(name)}</td><td class=num>{_e(attempt)}</td></tr>"
        for act_id, (run, name, attempt) in sorted(hits.items())
    )
    return (
        "<h2>Reused results</h2><p class=muted>Not run: the result of an earlier run with the "
        "same fingerprint (script, settings, the contents of what it read) was restored.</p>"
        "<table id=reused><thead><tr><th>activity</th><th>from</th><th>its activity</th>"
        f"<th>attempt</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#5b6773")
    return f'<span class="state" style="background:{colour}">{_e(state)}</span>'


def _dag_svg(rows: Sequence[_Row], deps: Sequence[tuple[str, str]]) -> str:
    names = [r.activity.name for r in rows][:MAX_DRAWN]
    drawn = set(names)
    graph = {n: [d for a, d in deps if a == n and d in drawn] for n in names}
    depth = levels(graph)
    columns: dict[int, list[str]] = {}
    for name in names:
        columns.setdefault(depth[name], []).append(name)
    box_w, box_h, gap_x, gap_y = 150, 34, 60, 14
    pos = {
        name: (20 + col * (box_w + gap_x), 20 + row * (box_h + gap_y))
        for col, members in columns.items()
        for row, name in enumerate(members)
    }
    width = 40 + len(columns) * (box_w + gap_x)
    height = 40 + max((len(m) for m in columns.values()), default=1) * (box_h + gap_y)
    state = {r.activity.name: str(r.activity.state) for r in rows}
    runtime = {r.activity.name: r.activity.runtime for r in rows}
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="DAG">']
    for name, ds in graph.items():
        x, y = pos[name]
        for d in ds:
            dx, dy = pos[d]
            parts.append(
                f'<line x1="{dx + box_w}" y1="{dy + box_h / 2}" x2="{x}" y2="{y + box_h / 2}" '
                'stroke="#9aa3ad"/>'
            )
    for name in names:
        x, y = pos[name]
        colour = STATE_COLOURS.get(state[name], "#5b6773")
        parts.append(
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="5" fill="{colour}"/>'
            f'<text x="{x + 6}" y="{y + 14}" fill="#fff">{_e(name[:22])}</text>'
            f'<text x="{x + 6}" y="{y + 28}" fill="#fff">{_e(runtime[name][:22])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_svg(rows: Sequence[_Row]) -> str:
    bars = [
        (r.activity, a)
        for r in rows
        for a in r.attempts
        if a.started_at is not None and a.finished_at is not None
    ][:MAX_DRAWN]
    if not bars:
        return '<p class="muted">No attempt ran.</p>'
    t0 = min(a.started_at or 0.0 for _, a in bars)
    t1 = max(a.finished_at or 0.0 for _, a in bars)
    span = max(t1 - t0, 1e-3)
    label_w, plot_w, bar_h = 260, 800, 16
    height = 30 + len(bars) * (bar_h + 4)
    parts = [
        f'<svg width="{label_w + plot_w + 20}" height="{height}" role="img" aria-label="timeline">'
    ]
    for tick in range(6):
        x = label_w + plot_w * tick / 5
        parts.append(
            f'<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="#e3e8ee"/>'
            f'<text x="{x - 2 if tick == 5 else x + 2}" y="11" fill="#5b6773" '
            f'text-anchor="{"end" if tick == 5 else "start"}">+{span * tick / 5:.2f} s</text>'
        )
    for i, (act, att) in enumerate(bars):
        y = 20 + i * (bar_h + 4)
        start = label_w + plot_w * ((att.started_at or t0) - t0) / span
        width = max(2.0, plot_w * ((att.finished_at or t0) - (att.started_at or t0)) / span)
        colour = STATE_COLOURS.get(att.state, "#5b6773")
        where = att.runtime + (f"@{att.node}" if att.node else "")
        label = f"{act.name} #{att.number} · {where}"
        parts.append(
            f'<text x="0" y="{y + 12}">{_e(label[:44])}</text>'
            f'<rect x="{start:.1f}" y="{y}" width="{width:.1f}" height="{bar_h}" rx="3" '
            f'fill="{colour}"><title>{_e(label)}: '
            f"{_e(_duration(att.started_at, att.finished_at))}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _files_section(repo: Repository, workflow_id: int) -> str:
    """Each file with who generated and who used it, and who used the files in place before
    the run: the edges of the lineage graph (:mod:`akoflow.provenance.lineage`, the UI's);
    ambiguous versions with their candidates and why (no generator is claimed for them)."""
    graph = lineage.of_run(repo, workflow_id)
    label = {n.id: n.label for n in graph.nodes}
    # node id -> (the activities that generated it, those that used it)
    by_node: dict[str, tuple[set[str], set[str]]] = {}
    guessed: set[tuple[str, str]] = set()  # (file, activity): a use no observed read backs
    copied: dict[str, set[str]] = {}  # node id -> the nodes it is a copy of
    for edge in graph.edges:
        if edge.label == "copiedFrom":
            by_node.setdefault(edge.source, (set(), set()))
            copied.setdefault(edge.source, set()).add(label[edge.target])
        elif edge.label == "wasGeneratedBy":
            by_node.setdefault(edge.source, (set(), set()))[0].add(edge.target)
        elif edge.label == "used":
            by_node.setdefault(edge.target, (set(), set()))[1].add(edge.source)
            if edge.inferred:  # PROV: akoflow:inferred
                guessed.add((edge.target, edge.source))
    inputs = by_node.pop(lineage.INPUTS, None)
    ambiguous = repo.list_ambiguous_files(workflow_id)
    if not by_node and not ambiguous and inputs is None:
        return ""
    mechanism = repo.provenance_mechanism(workflow_id)
    parts = ["<h2>Files</h2>"]
    if mechanism:
        parts.append(f"<p class=muted>file accesses: {_e(mechanism)}</p>")

    def names(ids: set[str]) -> str:
        return ", ".join(sorted(i.removeprefix("activity:") for i in ids)) or "-"

    def makers(node: str, ids: set[str]) -> str:
        """Escaped: the activities that generated it, and what it is a copy of."""
        made = [_e(n) for n in sorted(i.removeprefix("activity:") for i in ids)]
        made += [f"<i>copy of</i> <code>{_e(s)}</code>" for s in sorted(copied.get(node, ()))]
        return ", ".join(made) or "-"

    def users(node: str, ids: set[str]) -> str:
        """Escaped; the uses that are guesses in italics."""
        shown = [
            f"<i title='inferred, not an observed read'>{_e(name)}</i>"
            if (node, i) in guessed
            else _e(name)
            for name, i in sorted((i.removeprefix("activity:"), i) for i in ids)
        ]
        return ", ".join(shown) or "-"

    if by_node or inputs is not None:
        files = sorted(by_node.items(), key=lambda item: label[item[0]])
        rows = [
            f"<tr><td><code>{_e(label[node])}</code></td><td>{makers(node, gen)}</td>"
            f"<td>{users(node, used)}</td></tr>"
            for node, (gen, used) in files[:MAX_DRAWN]
        ]
        if inputs is not None:  # the collection, used as a whole (timing cannot say which)
            rows.insert(
                0,
                f"<tr class=inputs><td><em>{_e(label[lineage.INPUTS])}</em></td><td>-</td>"
                f"<td>{users(lineage.INPUTS, inputs[1])}</td></tr>",
            )
        more = len(files) - MAX_DRAWN
        parts.append(
            "<table><thead><tr><th>file</th><th>generated by</th><th>used by</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            + (f"<p class=muted>and {more} more files</p>" if more > 0 else "")
            + (
                "<p class=muted><i>in italics</i>: a use inferred (from timing, a declaration "
                "or a cluster's listing), not an observed read</p>"
                if guessed
                else ""
            )
        )
    parts.append(_copies_table(repo, workflow_id))
    if ambiguous:
        rows = []
        for amb in ambiguous[:MAX_DRAWN]:
            who = ", ".join(dict.fromkeys(f"{c.activity} #{c.attempt}" for c in amb.candidates))
            rows.append(
                f"<tr class=ambiguous><td><code>{_e(amb.display_path)}</code></td>"
                f"<td>ambiguous: {_e(who or 'no candidate')}</td><td>{_e(amb.reason)}</td></tr>"
            )
        parts.append(
            f"<h3>Ambiguous files ({len(ambiguous)})</h3><p class=muted>No activity can be said "
            "to have generated these versions; the candidates may have.</p>"
            "<table><thead><tr><th>file</th><th>candidates</th><th>why</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(parts)


def _copies_table(repo: Repository, workflow_id: int) -> str:
    """Each copy the data plane made (PROV's ``akoflow:Copy`` activities): the file, where
    from and where to, its size and duration, and the activity it was made for."""
    made = repo.list_data_copies(workflow_id)
    if not made:
        return ""
    activity = {a.id: a.name for a in repo.list_activities(workflow_id)}
    rows = [
        f"<tr class=copy><td><code>{_e(display(c.path))}</code></td>"
        f"<td>{_e(copies.place_name(c.source))}</td>"
        f"<td>{_e(copies.place_name(c.destination))}</td>"
        f"<td class=num>{_e(fmt_bytes(c.bytes))}</td>"
        f"<td class=num>{_e(_duration(c.started_at, c.ended_at))}</td>"
        f"<td>{_e(activity.get(c.activity_id or 0, '-'))}</td>"
        f"<td><code title='{_e(c.sha256)}'>{_e(c.sha256[:16])}</code></td></tr>"
        for c in made[:MAX_DRAWN]
    ]
    more = len(made) - MAX_DRAWN
    total = sum(c.bytes for c in made)
    return (
        f"<h3>Copies ({len(made)}, {_e(fmt_bytes(total))})</h3><p class=muted>Files the engine "
        "moved between the engine host's data dir and the runtimes' locations, each verified "
        "(size and SHA-256) on arrival; a file at a runtime's location is shown as "
        "<code>&lt;runtime&gt;:&lt;dir&gt;/&lt;path&gt;</code>, one on the engine host as its "
        "path in the data dir.</p>"
        "<table><thead><tr><th>file</th><th>from</th><th>to</th><th>bytes</th>"
        "<th>duration</th><th>for</th><th>SHA-256</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        + (f"<p class=muted>and {more} more copies</p>" if more > 0 else "")
    )


def render(repo: Repository, workflow_id: int) -> str:
    wf = repo.get_workflow(workflow_id)
    if wf is None:
        raise KeyError(f"no workflow with id {workflow_id}")
    rows = []
    for act in repo.list_activities(workflow_id):
        samples = repo.read_metrics(act.id)
        cpus = [s[2] for s in samples if s[2] is not None]
        memories = [s[3] for s in samples if s[3] is not None]
        # Sampled memory only: wait4's max RSS of a child started with posix_spawn also counts
        # the engine's own pages (Linux records the pre-exec mm), so it is not shown here.
        rows.append(
            _Row(
                act,
                repo.list_attempts(act.id),
                max(cpus) if cpus else None,
                max(memories) if memories else None,
            )
        )
    deps = repo.dependency_names(workflow_id)
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.activity.state)] = counts.get(str(r.activity.state), 0) + 1
    table = []
    for r in rows:
        a = r.activity
        cpu_seconds = sum(x.cpu_seconds or 0.0 for x in r.attempts)
        table.append(
            "<tr>"
            f"<td>{_e(a.name)}</td><td>{_badge(str(a.state))}</td><td>{_e(a.runtime)}</td>"
            f"<td>{_e(a.node or '-')}</td><td class=num>{len(r.attempts)}</td>"
            f"<td>{_e(_duration(a.started_at, a.finished_at))}</td>"
            f"<td class=num>{_e('-' if a.exit_code is None else a.exit_code)}</td>"
            f"<td class=num>{cpu_seconds:.2f} s</td>"
            f"<td class=num>{_e('-' if r.cpu_max is None else f'{r.cpu_max:.0f} %')}</td>"
            f"<td class=num>{_e(fmt_bytes(r.memory_max))}</td>"
            f"<td>{_e(a.image or '')}</td>"
            "</tr>"
        )
    failures = []
    for r in rows:
        if str(r.activity.state) != "failed":
            continue
        tail = [c.data for _, c in repo.read_logs(r.activity.id) if c.stream == "stderr"]
        failures.append(
            f"<h3>{_e(r.activity.name)}</h3><p>{_e(r.activity.reason or 'failed')}</p>"
            f"<pre>{_e(''.join(tail)[-4000:] or '(no stderr)')}</pre>"
        )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    reused = _reused_section(repo, workflow_id)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(wf.name)} #{wf.id} · AkôFlow report</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>{_e(wf.name)} <span class=muted>#{wf.id}</span> {_badge(str(wf.state))}</h1>"
        f"<p class=muted>started {_e(_when(wf.started_at))} · finished "
        f"{_e(_when(wf.finished_at))} · {_e(_duration(wf.started_at, wf.finished_at))} · "
        f"{len(rows)} activities: {_e(summary)}</p>"
        f"<h2>DAG</h2><div class=scroll>{_dag_svg(rows, deps)}</div>"
        f"<h2>Timeline</h2><div class=scroll>{_timeline_svg(rows)}</div>"
        "<h2>Activities</h2><table id=activities><thead><tr><th>activity</th><th>state</th>"
        "<th>runtime</th><th>node</th><th>attempts</th><th>duration</th><th>exit</th>"
        "<th>CPU time</th><th>peak CPU</th><th>peak memory</th><th>image</th></tr></thead>"
        f"<tbody>{''.join(table)}</tbody></table>"
        + reused
        + _files_section(repo, workflow_id)
        + (f"<h2>Failures</h2>{''.join(failures)}" if failures else "")
        + f"<p class=muted>AkôFlow report generated {_e(_when(wf.finished_at or wf.started_at))}"
        "</p></body></html>\n"
    )
