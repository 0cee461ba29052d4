// The workbench's feed of decisions: every few seconds, the gateway's fragment of the
// latest decisions replaces the list (a short request each: no connection is held).
(function () {
  "use strict";
  var feed = document.getElementById("feed");
  if (!feed) { return; }
  var EVERY_MS = 5000;
  function refresh() {
    fetch(feed.dataset.source, {credentials: "same-origin", redirect: "error"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) { feed.innerHTML = html; } })
      .catch(function () { /* signed out or offline: keep what is shown */ })
      .finally(function () { window.setTimeout(refresh, EVERY_MS); });
  }
  window.setTimeout(refresh, EVERY_MS);
})();
