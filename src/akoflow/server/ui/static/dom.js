// Building DOM without markup: every value goes in as a text node or an attribute set through
// the DOM API, never parsed as HTML, so names, logs and errors can only ever be text.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "href" && !String(value).startsWith("/")) {
      throw new TypeError("only same-origin paths are linked");
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
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
