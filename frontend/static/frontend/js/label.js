/*
 * Keyboard-first labelling. Every action has a key, shown beside its control:
 *   stage 1: a..n toggle a harm category, s marks the answer safe (clears categories)
 *   stage 2: 1/2 more helpful A/B, 3/4 more harmless A/B
 *   Enter submits, x skips (asks for a reason), u revises the last answer, ? shows the guidelines,
 *   Esc closes the guidelines or the skip box.
 * The forms work without this file; it only maps keys to the controls already on the page.
 */
(function () {
  "use strict";

  function task() { return document.getElementById("task"); }
  function form() { const t = task(); return t && t.querySelector("[data-label-form]"); }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    const tag = target.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select") return true;
    return tag === "input" && !["checkbox", "radio", "submit", "button"].includes(target.type);
  }

  // Where focus was before the guidelines opened, to put it back on close.
  let focusBeforeGuidelines = null;

  function toggleGuidelines(force) {
    const panel = document.getElementById("guidelines");
    if (!panel) return;
    const open = force === undefined ? panel.hidden : force;
    if (open === !panel.hidden) return;
    panel.hidden = !open;
    document.querySelectorAll('[data-action="toggle-guidelines"]').forEach(function (b) {
      b.setAttribute("aria-expanded", String(open));
    });
    if (open) {
      focusBeforeGuidelines = document.activeElement;
      // Focus moves into the panel; on a phone, where the panel sits below the task, that also
      // scrolls it into view.
      const heading = panel.querySelector("h2");
      heading.focus({ preventScroll: true });
      const box = panel.getBoundingClientRect();
      if (box.top < 0 || box.top > window.innerHeight / 2) panel.scrollIntoView({ block: "start" });
    } else {
      const back = focusBeforeGuidelines && document.contains(focusBeforeGuidelines)
        ? focusBeforeGuidelines : document.getElementById("task-heading");
      if (back) back.focus({ preventScroll: false });
      focusBeforeGuidelines = null;
    }
  }

  function syncSafe(changed) {
    const f = form();
    if (!f) return;
    const safe = f.querySelector("[data-safe-toggle]");
    if (!safe) return;
    const cats = f.querySelectorAll('input[name="categories"]');
    if (changed === safe && safe.checked) cats.forEach(function (c) { c.checked = false; });
    if (changed && changed.name === "categories" && changed.checked) safe.checked = false;
  }

  function openSkip() {
    const t = task();
    const box = t && t.querySelector("[data-skip]");
    if (!box) return;
    box.open = true;
    // Scroll just enough to show the whole box (reason and button), no further: the texts being
    // skipped stay in view while the worker says why.
    box.querySelector("input[name=reason]").focus({ preventScroll: true });
    box.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("change", function (e) { syncSafe(e.target); });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      const panel = document.getElementById("guidelines");
      if (panel && !panel.hidden) { toggleGuidelines(false); e.preventDefault(); return; }
      const box = task() && task().querySelector("[data-skip]");
      if (box && box.open) { box.open = false; e.preventDefault(); }
      return;
    }
    if (isTyping(e.target)) return;
    if (e.key === "?") { toggleGuidelines(); e.preventDefault(); return; }
    const t = task();
    if (!t) return;
    const f = form();
    if (e.key === "Enter") {
      const tag = e.target.tagName ? e.target.tagName.toLowerCase() : "";
      if (tag === "a" || tag === "button" || tag === "summary") return; // let the focused control act
      if (f) { e.preventDefault(); f.requestSubmit(); }
      return;
    }
    if (e.key === "x") { openSkip(); e.preventDefault(); return; }
    if (e.key === "u") {
      const revise = t.querySelector('[data-action="revise"]');
      if (revise) { revise.click(); e.preventDefault(); }
      return;
    }
    if (!f) return;
    if (e.key === "s") {
      const safe = f.querySelector("[data-safe-toggle]");
      if (safe) { safe.checked = !safe.checked; syncSafe(safe); e.preventDefault(); }
      return;
    }
    const control = f.querySelector('input[data-shortcut="' + CSS.escape(e.key) + '"]');
    if (control) {
      control.checked = control.type === "radio" ? true : !control.checked;
      syncSafe(control);
      control.focus({ preventScroll: true });
      e.preventDefault();
    }
  });

  document.addEventListener("click", function (e) {
    const button = e.target.closest('[data-action="toggle-guidelines"]');
    if (button) { toggleGuidelines(); e.preventDefault(); }
  });

  // The lease countdown: minutes and seconds left on the task, a warning in its last minute, and a
  // plain statement once it has lapsed (the task may then go to someone else).
  const LEASE_WARNING_S = 60;
  function updateLease() {
    document.querySelectorAll("[data-lease-expires]").forEach(function (lease) {
      const left = Math.round((Date.parse(lease.dataset.leaseExpires) - Date.now()) / 1000);
      const out = lease.querySelector(".lease__left");
      lease.classList.toggle("lease--warning", left <= LEASE_WARNING_S);
      if (left <= 0) {
        out.textContent = ": lapsed. Submit still counts unless its place went to another worker.";
      } else {
        const minutes = Math.floor(left / 60), seconds = String(left % 60).padStart(2, "0");
        out.textContent = " (" + minutes + ":" + seconds + " left)";
      }
    });
  }
  window.setInterval(updateLease, 1000);
  document.addEventListener("DOMContentLoaded", updateLease);
  document.addEventListener("htmx:afterSwap", updateLease);

  // A text pane longer than it shows gets a "more below" cue until it is scrolled to its end (the
  // harmful part of a response is often at the end).
  function updateScrollCues(root) {
    (root || document).querySelectorAll("[data-scroll-cue]").forEach(function (pane) {
      const more = pane.scrollHeight - pane.scrollTop - pane.clientHeight > 4;
      pane.parentElement.classList.toggle("has-more", more);
    });
  }
  document.addEventListener("scroll", function (e) {
    if (e.target && e.target.matches && e.target.matches("[data-scroll-cue]")) updateScrollCues(e.target.parentElement);
  }, true);
  window.addEventListener("resize", function () { updateScrollCues(); });
  document.addEventListener("DOMContentLoaded", function () { updateScrollCues(); });

  // After htmx swaps in the next task, put focus on its heading so keyboard and screen-reader users
  // start from the top of the new item.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail && e.detail.target && e.detail.target.id === "task") {
      const t = task();
      const heading = t && (t.querySelector("#task-error") || t.querySelector("#task-heading"));
      if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
      window.scrollTo({ top: 0 });
      updateScrollCues();
    }
  });
})();
