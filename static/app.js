// The little that htmx does not do. Loaded with `defer` from static/ (no inline script,
// so a strict Content-Security-Policy with script-src 'self' works).
(function () {
  "use strict";

  // Dismiss buttons: <button data-dismiss=".flash"> removes its closest matching ancestor.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (!button) return;
    var target = button.closest(button.getAttribute("data-dismiss"));
    if (target) target.remove();
  });

  // <select data-detect-timezone>: preselect the browser's time zone when it is offered.
  function detectTimezone(root) {
    var zone;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
      return;
    }
    if (!zone) return;
    root.querySelectorAll("select[data-detect-timezone]").forEach(function (select) {
      if (select.dataset.userChanged) return;
      var option = Array.prototype.find.call(select.options, function (o) {
        return o.value === zone;
      });
      if (option) select.value = zone;
      select.addEventListener("change", function () {
        select.dataset.userChanged = "1";
      }, { once: true });
    });
  }

  // Narrow screens show the navigation as a scrolling row: keep the current page in view
  // and drop the edge fade once the row is scrolled to its end.
  function initNav(root) {
    root.querySelectorAll(".appnav").forEach(function (nav) {
      var current = nav.querySelector("[aria-current=page]");
      if (current && nav.scrollWidth > nav.clientWidth) {
        var left = current.offsetLeft - (nav.clientWidth - current.offsetWidth) / 2;
        nav.scrollLeft = Math.max(0, left);
      }
      var update = function () {
        nav.classList.toggle("at-end", nav.scrollLeft + nav.clientWidth >= nav.scrollWidth - 2);
      };
      update();
      nav.addEventListener("scroll", update, { passive: true });
    });
  }

  function init(root) {
    detectTimezone(root);
    initNav(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) {
    // htmx:load also fires for <body> on the first load; DOMContentLoaded covered that.
    if (event.target && event.target !== document.body && event.target.querySelectorAll) {
      init(event.target);
    }
  });
})();
