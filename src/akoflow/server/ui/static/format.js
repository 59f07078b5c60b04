// Pure formatting helpers: numbers and times as short, readable text.

export const FINAL = new Set(["succeeded", "cached", "failed", "cancelled", "skipped"]);
export const STATES = [
  "pending", "ready", "submitted", "running", "succeeded", "cached", "failed", "cancelled",
  "skipped",
];

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s === 0) return "0 s";
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A UNIX time as local "YYYY-MM-DD HH:MM:SS" (the date is left out for today). */
export function clock(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function ago(ts, now = Date.now() / 1000) {
  if (ts === null || ts === undefined) return "never";
  const s = Math.max(0, now - ts);
  if (s < 5) return "just now";
  return `${duration(s)} ago`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function percent(v) {
  return v === null || v === undefined ? "—" : `${v.toFixed(v < 10 ? 1 : 0)} %`;
}

/** Only known states become class names (a state is data: never trust it as markup). */
export function stateClass(state) {
  // "ambiguous": a lineage file no activity can be said to have generated.
  return STATES.includes(state) || state === "ambiguous" ? `state-${state}` : "state-unknown";
}
