// Submit: paste or upload a workflow YAML, validate it (errors inline, with path and line, each
// one a link to its line), then submit and go to the new workflow's page.

import { api, ApiError, base64Utf8 } from "./api.js";
import { fill, h } from "./dom.js";
import { showError } from "./live.js";
import { navigate, workflowPath } from "./nav.js";

const MAX_UPLOAD = 64 << 20;

/** Select line `n` (1-based) of a textarea and scroll it into view. */
function selectLine(area, n) {
  const lines = area.value.split("\n");
  const line = Math.min(Math.max(1, n), lines.length);
  let start = 0;
  for (let i = 0; i < line - 1; i += 1) start += lines[i].length + 1;
  area.focus();
  area.setSelectionRange(start, start + lines[line - 1].length);
  const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 18;
  area.scrollTop = Math.max(0, (line - 3) * lineHeight);
}

export function mount(root) {
  const area = h("textarea", {
    id: "yaml", spellcheck: "false", autocomplete: "off", wrap: "off", rows: 22,
    "aria-label": "Workflow YAML",
    placeholder: "name: hello\nspec:\n  activities:\n    - name: say-hello\n      run: echo hello",
  });
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const file = h("input", { type: "file", id: "yaml-file", accept: ".yaml,.yml,text/yaml,text/plain", class: "visually-hidden" });
  const fileName = h("span", { class: "muted small" });
  const result = h("div", { id: "result", "aria-live": "polite" });
  const validateBtn = h("button", { type: "button", class: "btn", id: "validate" }, "Validate");
  const submitBtn = h("button", { type: "button", class: "btn btn-primary", id: "submit" }, "Submit");
  let errorLines = new Set();

  const drawGutter = () => {
    const n = area.value.split("\n").length;
    const lines = [];
    for (let i = 1; i <= n; i += 1) lines.push(h("span", { class: errorLines.has(i) ? "err" : null }, `${i}\n`));
    fill(gutter, lines);
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("input", () => {
    errorLines = new Set();
    drawGutter();
  });
  area.addEventListener("scroll", () => {
    gutter.scrollTop = area.scrollTop;
  });

  file.addEventListener("change", async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > MAX_UPLOAD) {
      showError(`${f.name} is over ${MAX_UPLOAD >> 20} MiB`);
      return;
    }
    area.value = await f.text();
    fill(fileName, f.name);
    errorLines = new Set();
    drawGutter();
    fill(result);
  });

  const showErrors = (err) => {
    const items = err.errors || [];
    errorLines = new Set(items.filter((e) => e.line).map((e) => e.line));
    drawGutter();
    fill(
      result,
      h(
        "div",
        { class: "errors", role: "alert" },
        h("p", { class: "errors-title" }, err.message),
        h(
          "ul",
          { id: "errors" },
          items.map((e) =>
            h(
              "li",
              { class: "error-item" },
              e.line ? h("button", { type: "button", class: "line-link", onclick: () => selectLine(area, e.line) }, `line ${e.line}`) : h("span", { class: "line-link none" }, "file"),
              e.path ? h("code", { class: "error-path" }, e.path) : null,
              h("span", { class: "error-message" }, e.message),
            ),
          ),
        ),
      ),
    );
  };

  const run = async (path, button) => {
    const text = area.value;
    if (!text.trim()) {
      showErrors({ message: "Paste or upload a workflow first.", errors: [] });
      return null;
    }
    button.disabled = true;
    showError(null);
    try {
      return await api(path, { method: "POST", body: { workflow: base64Utf8(text) } });
    } catch (err) {
      if (err instanceof ApiError && err.status !== 401) showErrors(err);
      else showError(err.message);
      return null;
    } finally {
      button.disabled = false;
    }
  };

  validateBtn.addEventListener("click", async () => {
    const doc = await run("/workflows/validate/", validateBtn);
    if (!doc) return;
    const v = doc.data;
    errorLines = new Set();
    drawGutter();
    fill(result, h("p", { class: "ok", role: "status" }, `Valid: ${v.name}, ${v.activities} activit${v.activities === 1 ? "y" : "ies"} on ${v.runtimes.join(", ")}.`));
  });
  submitBtn.addEventListener("click", async () => {
    const doc = await run("/workflows/", submitBtn);
    if (doc) navigate(workflowPath(doc.workflow_id));
  });

  drawGutter();
  fill(
    root,
    h(
      "section",
      { class: "panel" },
      h("div", { class: "panel-head" }, h("h1", {}, "Submit a workflow"), h("div", { class: "toolbar" }, h("label", { class: "btn", for: "yaml-file" }, "Upload YAML…"), fileName, file)),
      h("p", { class: "muted small" }, "Paste a workflow file (upstream AkôFlow's format) or upload one. Validate shows every problem with its path and line; nothing is stored until you submit."),
      h("div", { class: "editor" }, gutter, area),
      h("div", { class: "toolbar form-actions" }, validateBtn, submitBtn),
      result,
    ),
  );
  return () => {};
}
