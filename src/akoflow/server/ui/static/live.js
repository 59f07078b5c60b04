// Polling and the page's status line: one place that shows "live" and errors.

import { fill, h } from "./dom.js";

let banner = null;

export function setBanner(el) {
  banner = el;
}

/** Show a problem above the page (text only); null clears it. */
export function showError(message) {
  if (!banner) return;
  if (message === null) {
    banner.hidden = true;
    fill(banner);
    return;
  }
  fill(banner, h("strong", {}, "Problem: "), String(message));
  banner.hidden = false;
}

function markLive(ok) {
  const el = document.getElementById("live");
  if (!el) return;
  el.hidden = false;
  el.classList.toggle("live-off", !ok);
  el.textContent = ok ? "live" : "offline";
}

/** Run fn now and then every `ms` after it settles, skipping while the tab is hidden.
 * Returns stop(). Errors are shown, not thrown; polling goes on. */
export function poll(fn, ms) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
        if (!stopped) markLive(true);
      } catch (err) {
        if (!stopped && err.name !== "AbortError") {
          markLive(err.status !== undefined);
          showError(err.message);
        }
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
