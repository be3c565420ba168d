// The calendar's little JavaScript: what htmx does not do by itself.
//  - the edit panel (<dialog id="post-panel">): open it when htmx fills it, close it,
//    give focus back, and save the composer inside it through htmx;
//  - drag a chip to another day or hour (native HTML5 drag and drop) -> POST /calendar/move;
//    the server answers with the calendar as it now is (a refusal: 422 and the calendar as
//    it was, so the chip snaps back, with the reason as a toast);
//  - keyboard: arrow keys move between days (or hours), Enter writes a post there,
//    Page Up / Page Down go to the previous / next period;
//  - a click on an empty day or hour opens the composer with that time;
//  - the live poll: paused while dragging or while the tab is hidden, its state shown.
// Everything is delegated from `document`, because htmx replaces #calendar wholesale.
(function () {
  "use strict";

  var dragging = null; // the chip being dragged
  var weekScroll = null; // the week view's scroll position, kept across swaps
  var panelOpener = null; // the id of what opened the panel, to give focus back

  function calendar() { return document.getElementById("calendar"); }
  function panel() { return document.getElementById("post-panel"); }

  function query() {
    var el = calendar();
    try { return el ? JSON.parse(el.getAttribute("data-query") || "{}") : {}; } catch (e) { return {}; }
  }

  // -- the edit panel ---------------------------------------------------------------------
  function openPanel() {
    var dialog = panel();
    if (dialog && !dialog.open) {
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
    }
  }

  function closePanel() {
    var dialog = panel();
    if (dialog && dialog.open) dialog.close();
  }

  document.addEventListener("close", function (event) {
    if (event.target !== panel()) return;
    document.getElementById("panel-body").innerHTML = ""; // stops the panel's own polling
    var back = panelOpener && document.getElementById(panelOpener);
    if (back) back.focus();
    panelOpener = null;
  }, true);

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-close-panel]")) { closePanel(); return; }
    var dialog = panel();
    if (dialog && event.target === dialog) { closePanel(); return; } // the backdrop
    var chip = event.target.closest(".chip");
    if (chip) { panelOpener = chip.id; return; }
    // An empty part of a day or an hour: write a post there.
    var cell = event.target.closest("[data-compose]");
    if (cell && !event.target.closest("a, button, input, select, label")) {
      window.location.href = cell.getAttribute("data-compose");
    }
  });

  // The composer inside the panel saves through htmx into the panel (not a page load).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var sheet = form.closest && form.closest("#panel-body [data-save-url]");
    if (!sheet || form.id !== "composer") return;
    event.preventDefault();
    var values = {};
    if (event.submitter && event.submitter.name) values[event.submitter.name] = event.submitter.value;
    htmx.ajax("POST", sheet.getAttribute("data-save-url"), {
      source: form, target: "#panel-body", swap: "innerHTML", values: values,
    });
  });

  // -- htmx: what to swap, and after a swap -------------------------------------------------
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    var target = detail.target && detail.target.id;
    // A refused move (422) still carries the calendar as it is; a refused save (400) the
    // composer with its problems: both are meant to be shown.
    if ((target === "calendar" && detail.xhr.status === 422) ||
        (target === "panel-body" && detail.xhr.status === 400)) {
      detail.shouldSwap = true;
      detail.isError = false;
    }
    if (target === "calendar") {
      var body = document.querySelector(".cal-week-body");
      weekScroll = body ? body.scrollTop : null;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "panel-body" && target.innerHTML.trim()) openPanel();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (target && target.id === "calendar") setUpCalendar(weekScroll);
  });

  // -- live updates -----------------------------------------------------------------------
  function setLive(state) {
    var live = document.querySelector(".cal-live");
    if (!live || live.getAttribute("data-live-state") === state) return;
    live.setAttribute("data-live-state", state);
    live.querySelector(".cal-live-text").textContent = state === "live" ? "Live" : "Reconnecting…";
  }

  function isPoll(event) {
    var elt = event.detail && event.detail.elt;
    return elt && elt.classList && elt.classList.contains("cal-poll");
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (isPoll(event) && (dragging || document.hidden)) event.preventDefault();
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isPoll(event)) return;
    var ok = event.detail.successful || (event.detail.xhr && event.detail.xhr.status === 204);
    setLive(ok ? "live" : "offline");
  });
  document.addEventListener("htmx:sendError", function (event) { if (isPoll(event)) setLive("offline"); });
  document.addEventListener("visibilitychange", function () {
    var poll = document.querySelector(".cal-poll");
    if (!document.hidden && poll) htmx.trigger(poll, "calendar-changed"); // catch up at once
  });

  // -- drag and drop ------------------------------------------------------------------------
  document.addEventListener("dragstart", function (event) {
    var chip = event.target.closest && event.target.closest(".chip");
    if (!chip || chip.getAttribute("draggable") !== "true") return;
    dragging = chip;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", chip.getAttribute("data-post"));
    chip.classList.add("is-dragging");
    calendar().classList.add("is-dragging");
  });

  document.addEventListener("dragend", function () {
    if (dragging) dragging.classList.remove("is-dragging");
    var cal = calendar();
    if (cal) cal.classList.remove("is-dragging");
    document.querySelectorAll(".is-drop-target").forEach(function (el) { el.classList.remove("is-drop-target"); });
    dragging = null;
  });

  document.addEventListener("dragover", function (event) {
    var cell = dragging && event.target.closest && event.target.closest("[data-drop]");
    if (!cell) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    if (!cell.classList.contains("is-drop-target")) {
      document.querySelectorAll(".is-drop-target").forEach(function (el) { el.classList.remove("is-drop-target"); });
      cell.classList.add("is-drop-target");
    }
  });

  document.addEventListener("drop", function (event) {
    var cell = dragging && event.target.closest && event.target.closest("[data-drop]");
    if (!cell) return;
    event.preventDefault();
    var chip = dragging;
    var postId = chip.getAttribute("data-post");
    var from = chip.closest("[data-drop]");
    if (from === cell) return;
    // Show it where it was dropped at once; the server's answer replaces the calendar.
    var list = cell.querySelector(".cal-chips");
    if (!list && cell.classList.contains("cal-day")) {
      list = document.createElement("ul");
      list.className = "cal-chips";
      cell.querySelector(".cal-day-head").after(list);
    }
    var item = chip.parentElement && chip.parentElement.tagName === "LI" ? chip.parentElement : chip;
    (list || cell).appendChild(item);
    chip.classList.add("is-moving");
    var poll = document.querySelector(".cal-poll");
    if (poll) htmx.trigger(poll, "htmx:abort"); // an older poll answer must not land after ours
    var values = Object.assign({}, query(), { post: postId, date: cell.getAttribute("data-date") });
    if (cell.hasAttribute("data-hour")) values.hour = cell.getAttribute("data-hour");
    htmx.ajax("POST", "/calendar/move", { target: "#calendar", swap: "outerHTML", values: values });
  });

  // -- keyboard -------------------------------------------------------------------------------
  function cells() {
    return Array.prototype.slice.call(document.querySelectorAll("#calendar [role=gridcell][data-date]"));
  }

  function moveFocus(from, to) {
    if (!to) return;
    from.setAttribute("tabindex", "-1");
    to.setAttribute("tabindex", "0");
    to.focus();
    to.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    var cell = event.target.closest && event.target.closest("#calendar [role=gridcell][data-date]");
    if (!cell || event.altKey || event.ctrlKey || event.metaKey) return;
    var onCell = event.target === cell;
    var all = cells();
    var index = all.indexOf(cell);
    // Week slots are laid out hour by hour, seven a row: +-1 is a day, +-7 an hour.
    var step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -7, ArrowDown: 7, Home: null, End: null }[event.key];
    if (event.key in { ArrowLeft: 1, ArrowRight: 1, ArrowUp: 1, ArrowDown: 1 }) {
      if (!onCell && (event.key === "ArrowLeft" || event.key === "ArrowRight")) return; // inside a chip
      event.preventDefault();
      moveFocus(cell, all[index + step]);
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      var rowStart = index - (index % 7);
      moveFocus(cell, all[event.key === "Home" ? rowStart : rowStart + 6]);
    } else if ((event.key === "Enter" || event.key === " ") && onCell) {
      var href = cell.getAttribute("data-compose");
      if (href) { event.preventDefault(); window.location.href = href; }
    } else if (event.key === "PageUp" || event.key === "PageDown") {
      var link = document.querySelector(event.key === "PageUp" ? ".cal-step a:first-child" : ".cal-step a:last-child");
      if (link) { event.preventDefault(); link.click(); }
    }
  });

  // -- setting up a freshly rendered calendar ----------------------------------------------------
  function setUpCalendar(keepScroll) {
    var body = document.querySelector(".cal-week-body");
    if (!body) return;
    if (keepScroll != null) { body.scrollTop = keepScroll; return; }
    var hour = body.getAttribute("data-scroll-hour") || "8";
    var row = body.querySelector('[data-hour="' + hour + '"]');
    if (row) body.scrollTop = row.offsetTop - body.offsetTop;
  }

  // The feed URL: copy to the clipboard.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var input = document.querySelector(button.getAttribute("data-copy"));
    if (!input) return;
    input.select();
    var done = function () {
      button.classList.add("is-copied");
      button.querySelector("[data-copy-label]").textContent = "Copied";
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(input.value).then(done, function () {});
    else { try { document.execCommand("copy"); done(); } catch (e) { /* selected: the person copies */ } }
  });
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  // Phones get the agenda unless a view was asked for (the URL stays shareable).
  function phoneDefault() {
    var cal = calendar();
    if (!cal || cal.getAttribute("data-view") !== "month") return;
    if (new URLSearchParams(window.location.search).has("view")) return;
    if (!window.matchMedia("(max-width: 639.98px)").matches) return;
    var params = query();
    params.view = "agenda";
    var url = "/calendar?" + new URLSearchParams(params).toString();
    htmx.ajax("GET", url, { target: "#calendar", swap: "outerHTML" }).then(function () {
      history.replaceState(history.state, "", url);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpCalendar(null);
    phoneDefault();
  });
})();
