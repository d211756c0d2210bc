// The Settings page's own script. Served from this origin and run under a Content-Security-Policy
// that allows no inline code, so it binds everything by data attributes:
// - <time datetime data-local>: shown in the browser's time zone; the UTC value stays in `title`.
// - <button data-copy="ID">: copies the value of the input ID, and says so in
//   [data-copy-status="ID"].
// - [data-shown-once]: removed when the page is left, so the back button (or the browser's page
//   cache) can never show it again: the one-time view of a new signing secret.
// - htmx requests carry the sign-in's CSRF token from <meta name="csrf-token">.
(function () {
  "use strict";

  var dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZoneName: "short",
  });

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        el.textContent = dateFormat.format(when);
      }
    });
  }

  function say(id, text) {
    var status = document.querySelector('[data-copy-status="' + id + '"]');
    if (status) {
      status.textContent = text;
    }
  }

  function copyButtons(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      if (button.dataset.bound) {
        return;
      }
      button.dataset.bound = "true";
      button.addEventListener("click", function () {
        var id = button.getAttribute("data-copy");
        var input = document.getElementById(id);
        if (!input) {
          return;
        }
        var fallback = function () {
          input.focus();
          input.select();
          say(id, "Selected: press Ctrl+C (or ⌘C) to copy.");
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(function () {
            say(id, "Copied to the clipboard.");
          }, fallback);
        } else {
          fallback();
        }
      });
    });
  }

  function enhance(root) {
    localTimes(root);
    copyButtons(root);
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var token = document.querySelector('meta[name="csrf-token"]');
    if (token) {
      event.detail.headers["X-CSRF-Token"] = token.getAttribute("content");
    }
  });
  document.addEventListener("htmx:load", function (event) {
    enhance(event.detail.elt);
  });
  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
  });
  window.addEventListener("pagehide", function () {
    document.querySelectorAll("[data-shown-once]").forEach(function (el) {
      el.remove();
    });
  });
})();
