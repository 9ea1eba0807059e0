// lbsim console: refresh the parts of a page marked data-refresh (charts, listener status) and tick the
// activation countdowns. Pages work without it (reload to refresh). No library; nothing fetched elsewhere.
"use strict";

function refresh(el) {
  const every = parseFloat(el.dataset.every || "2") * 1000;
  const tick = async () => {
    if (!el.dataset.refresh) return;  // a probe finished: the page stopped asking
    // Not while the user points at or works in it: a button must not vanish under the pointer.
    const busy = el.matches(":hover") || (el.contains(document.activeElement) && document.activeElement !== document.body);
    if (!busy) {
      try {
        const response = await fetch(el.dataset.refresh, {credentials: "same-origin", cache: "no-store"});
        if (response.ok) {
          const text = await response.text();
          if (el.dataset.select) {  // a whole page: take the same part of it
            const doc = new DOMParser().parseFromString(text, "text/html");
            const part = doc.querySelector(el.dataset.select);
            if (part) {
              el.innerHTML = part.innerHTML;
              if (!part.dataset.refresh) delete el.dataset.refresh;
            }
          } else {
            el.innerHTML = text;  // server-rendered and escaped there
          }
          el.dataset.refreshed = String(Date.now());
        }
      } catch (e) { /* the lab is stopping: try again next round */ }
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

function countdowns() {
  const now = Date.now() / 1000;
  for (const span of document.querySelectorAll(".countdown[data-until]")) {
    span.textContent = Math.max(0, parseFloat(span.dataset.until) - now).toFixed(1) + " s";
  }
}

document.querySelectorAll("[data-refresh]").forEach(refresh);
setInterval(countdowns, 200);
