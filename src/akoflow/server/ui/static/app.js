// The single-page app: sign-in, client-side routes, and the shell around the views.

import { clearToken, getToken, setToken, tokenWorks } from "./api.js";
import { fill, h } from "./dom.js";
import { setBanner, showError } from "./live.js";
import { navigate } from "./nav.js";
import * as dashboard from "./dashboard.js";
import * as runtimes from "./runtimes.js";
import * as submit from "./submit.js";
import * as workflow from "./workflow.js";

const BASE = "/akoflow-admin";

const ROUTES = [
  { re: /^\/?$/, view: dashboard, section: "workflows", title: "Workflows" },
  { re: /^\/runtimes\/?$/, view: runtimes, section: "runtimes", title: "Runtimes" },
  { re: /^\/submit\/?$/, view: submit, section: "submit", title: "Submit" },
  // upstream's /workflows/{namespace}/{id}/ and the short /workflows/{id}/
  { re: /^\/workflows\/(?:[a-z0-9-]+\/)?(\d+)\/?$/, view: workflow, section: "workflows", title: "Workflow", key: "id" },
];

let cleanup = null;
const main = document.getElementById("main");
const banner = h("div", { class: "banner", role: "alert", hidden: true });
const content = h("div", { class: "content" });

function route(pathname) {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  for (const r of ROUTES) {
    const m = rest.match(r.re);
    if (m) return { ...r, params: r.key ? { [r.key]: m[1] } : {} };
  }
  return null;
}

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  if (!signedIn) document.getElementById("live").hidden = true;
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  showError(null);
  if (!getToken()) {
    showChrome(false);
    fill(content, signIn());
    document.title = "Sign in · AkôFlow";
    return;
  }
  showChrome(true);
  const r = route(location.pathname);
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", Boolean(r) && a.dataset.section === r.section);
  }
  if (!r) {
    document.title = "Not found · AkôFlow";
    fill(content, h("section", { class: "panel" }, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: `${BASE}/`, "data-nav": true }, "Back to the workflows"))));
    return;
  }
  document.title = `${r.title} · AkôFlow`;
  fill(content);
  cleanup = r.view.mount(content, r.params) || null;
}

function signIn() {
  const input = h("input", {
    id: "token", type: "password", name: "token", autocomplete: "off", spellcheck: "false",
    required: true, placeholder: "API token", "aria-label": "API token",
  });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const button = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h(
    "form",
    { class: "signin panel", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Give the server's API token: the one `akoflow server` printed at its first start (also in <state dir>/api-token), or AKOFLOW_API_TOKEN. It is kept in this tab only."),
    input,
    error,
    button,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    error.hidden = true;
    try {
      if (await tokenWorks(token)) {
        setToken(token);
        render();
        return;
      }
      error.textContent = "The server refused this token.";
    } catch (err) {
      fill(error, `Cannot reach the server: ${err.message}`);
    } finally {
      button.disabled = false;
    }
    error.hidden = false;
    input.select();
  });
  queueMicrotask(() => input.focus());
  return form;
}

function start() {
  fill(main, banner, content);
  setBanner(banner);
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[data-nav]");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", render);
  window.addEventListener("akoflow:signed-out", () => {
    if (cleanup) cleanup();
    cleanup = null;
    render();
  });
  document.getElementById("signout").addEventListener("click", () => {
    clearToken();
    render();
  });
  render();
}

start();
