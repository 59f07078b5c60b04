// Client-side navigation without a page load (the app re-renders on popstate).

export function navigate(path) {
  if (path !== location.pathname) history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function workflowPath(id) {
  return `/akoflow-admin/workflows/${Number(id)}/`;
}
