// The REST API client: the token lives in sessionStorage (this tab only, gone when it closes)
// and goes out in the Authorization header, never in a URL.

const TOKEN_KEY = "akoflow-token";
export const API = "/akoflow-api";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

function headers(extra) {
  return { Authorization: `Bearer ${getToken() || ""}`, ...extra };
}

function signedOut() {
  clearToken();
  window.dispatchEvent(new Event("akoflow:signed-out"));
}

/** Call the API; resolves to the JSON answer, rejects with ApiError. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + path, init);
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.status === 401) signedOut();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Save a file the API serves. A plain link cannot send the token (it goes in a header,
 * never in a URL), so the file is fetched with it, then handed to the browser as a download
 * (held in memory meanwhile: for very large files use the CLI or curl). */
export async function download(path, name, { signal } = {}) {
  const res = await fetch(API + path, { headers: headers(), signal, cache: "no-store", credentials: "omit" });
  if (res.status === 401) signedOut();
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Check a token without keeping it: true when the server accepts it. */
export async function tokenWorks(token) {
  const res = await fetch(`${API}/runtimes/`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
    credentials: "omit",
  });
  return res.ok;
}

/** Follow a Server-Sent Events stream with the token (EventSource cannot send headers).
 * Yields {event, id, data} until the stream ends or `signal` aborts. */
export async function* events(path, { signal } = {}) {
  const res = await fetch(API + path, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
    credentials: "omit",
  });
  if (res.status === 401) signedOut();
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const ev = parseEvent(block);
      if (ev) yield ev;
    }
  }
}

export function parseEvent(block) {
  const ev = { event: "message", id: null, data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") ev.event = value;
    else if (field === "id") ev.id = value;
    else if (field === "data") ev.data.push(value);
  }
  if (!ev.data.length) return null;
  return { event: ev.event, id: ev.id, data: ev.data.join("\n") };
}

/** Base64 of a string's UTF-8 bytes (the submission body's encoding). */
export function base64Utf8(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
