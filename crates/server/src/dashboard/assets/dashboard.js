// stripe-mirror dashboard: the live parts, nothing else (every action works without this).
// An element with data-live="/path" has its contents replaced by each `cards` event of that
// Server-Sent Events stream, one with data-live-rows="/path" gets each `rows` event's rows on
// top; an open ⋮ menu closes on Escape or a click elsewhere.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(function (target) {
    if (!window.EventSource) return;
    var source = new EventSource(target.getAttribute("data-live"));
    source.addEventListener("cards", function (event) {
      // Keep a menu that is open, open.
      var open = target.querySelector("details.menu[open]");
      var which = open && open.closest("[data-connection]");
      var id = which && which.getAttribute("data-connection");
      target.innerHTML = event.data;
      if (id) {
        var again = target.querySelector('[data-connection="' + CSS.escape(id) + '"] details.menu');
        if (again) again.open = true;
      }
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) target.removeAttribute("data-live");
    };
  });
  document.querySelectorAll("[data-live-rows]").forEach(function (target) {
    if (!window.EventSource) return;
    var source = new EventSource(target.getAttribute("data-live-rows"));
    source.addEventListener("rows", function (event) {
      target.insertAdjacentHTML("afterbegin", event.data);
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
});
