// Live updates without reloading: every few seconds, fetch this page again and swap in each
// element marked data-live (matched by id). Paused while the tab is hidden. If the dashboard
// itself stops answering, say so in #status until it answers again; a page that was served
// while the database was down (body[data-unavailable]) reloads once it is back.
(function () {
  "use strict";
  var period = Number(document.body.getAttribute("data-poll")) || 2000;
  var busy = false;

  function say(text) {
    var status = document.getElementById("status");
    if (!status) return;
    status.textContent = "";
    if (text) {
      var p = document.createElement("p");
      p.className = "flash error";
      p.textContent = text;
      status.appendChild(p);
    }
  }

  function tick() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(location.href, { credentials: "same-origin", cache: "no-store", redirect: "error" })
      .then(function (response) {
        if (response.ok && document.body.hasAttribute("data-unavailable")) location.reload();
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) old.replaceWith(document.importNode(next, true));
        });
      })
      .catch(function () { say("The dashboard is not answering; retrying every " + period / 1000 + " s."); })
      .then(function () { busy = false; });
  }

  setInterval(tick, period);
})();
