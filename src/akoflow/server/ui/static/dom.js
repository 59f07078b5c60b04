// Building DOM without markup: every value goes in as a text node or an attribute set through
// the DOM API, never parsed as HTML, so names, logs and errors can only ever be text. Set text
// with fill(el, value), not el.textContent, so that bidi controls are shown escaped.

const SVG_NS = "http://www.w3.org/2000/svg";

// Bidirectional-text controls reorder the text around them: a name, reason or log line holding
// U+202E would show something other than what is there. Each is shown as a visible escape
// (<U+202E>, styled apart) instead; attributes and the tab title get the same escape as text.
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;
const BIDI_ALL = new RegExp(BIDI.source, "g");

function escapeOf(ch) {
  return `<U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`;
}

/** The text with every bidi control replaced by a visible <U+XXXX>. */
export function visibleText(value) {
  const text = String(value);
  return BIDI.test(text) ? text.replace(BIDI_ALL, escapeOf) : text;
}

/** Nodes showing `text` in `parent`: plain text, bidi controls as marked escapes. */
function textNodes(parent, text) {
  if (!BIDI.test(text)) return [document.createTextNode(text)];
  const svg = parent.namespaceURI === SVG_NS;
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(BIDI_ALL)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    const mark = svg ? document.createElementNS(SVG_NS, "tspan") : document.createElement("span");
    mark.setAttribute("class", "ctl");
    mark.textContent = escapeOf(match[0]);
    nodes.push(mark);
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "text") {
      el.replaceChildren(...textNodes(el, String(value)));
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "href" && !String(value).startsWith("/")) {
      throw new TypeError("only same-origin paths are linked");
    } else {
      el.setAttribute(key, value === true ? "" : visibleText(value));
    }
  }
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    if (child instanceof Node) el.append(child);
    else el.append(...textNodes(el, String(child)));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A link that the router handles without a page load. */
export function link(href, attrs, ...children) {
  return h("a", { ...attrs, href, "data-nav": true }, ...children);
}

/** A button that asks for a second click before acting (no browser dialogs). */
export function confirmButton(label, confirmLabel, action, attrs = {}) {
  let armed = null;
  const btn = h("button", { type: "button", class: "btn", ...attrs }, label);
  btn.addEventListener("click", async () => {
    if (!armed) {
      btn.textContent = confirmLabel;
      btn.classList.add("btn-armed");
      armed = setTimeout(() => {
        armed = null;
        btn.textContent = label;
        btn.classList.remove("btn-armed");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    btn.textContent = label;
    btn.classList.remove("btn-armed");
    btn.disabled = true;
    try {
      await action();
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}
