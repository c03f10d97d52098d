/* Live status of the backup console: while a backup or restore on the page is pending or running,
 * poll the console's status JSON and update the marked elements in place (no page reload).
 *
 * Markup: a root element #backup-console with data-status-url (and data-stats="1" to refresh the
 * stats panel); values as <span data-backup-id="7" data-field="size"> or data-restore-id; elements
 * with data-usable-backup="7" are shown once backup 7 has completed; a value that is a link <a> gets
 * the item's links[field] as its href (no href while there is nothing to link to).
 */
(function () {
  "use strict";
  var ACTIVE = { pending: true, running: true };
  var INTERVAL = 1500;

  function activeIds(kind) {
    var ids = [];
    document.querySelectorAll("[data-" + kind + "-id][data-field=status]").forEach(function (badge) {
      var id = badge.getAttribute("data-" + kind + "-id");
      if (ACTIVE[badge.getAttribute("data-status")] && ids.indexOf(id) < 0) ids.push(id);
    });
    return ids;
  }

  function update(kind, item) {
    document.querySelectorAll("[data-" + kind + "-id='" + item.id + "']").forEach(function (element) {
      var field = element.getAttribute("data-field");
      if (!(field in item.fields)) return;
      element.textContent = item.fields[field];
      if (element.tagName === "A" && item.links && field in item.links) {
        if (item.links[field]) element.setAttribute("href", item.links[field]);
        else element.removeAttribute("href");
      }
      if (field === "status") {
        element.setAttribute("data-status", item.status);
        element.className = "backup-badge backup-badge--" + item.status;
      }
    });
    if (kind === "backup" && (item.status === "completed" || item.status === "restored")) {
      document.querySelectorAll("[data-usable-backup='" + item.id + "']").forEach(function (element) {
        element.hidden = false;
      });
    }
    if (kind === "restore" && !item.active) {
      document.querySelectorAll("[data-restore-done='" + item.id + "']").forEach(function (element) {
        element.hidden = false;
      });
    }
  }

  function start(root) {
    var url = root.getAttribute("data-status-url");
    var withStats = root.getAttribute("data-stats") === "1";

    function poll() {
      var backups = activeIds("backup");
      var restores = activeIds("restore");
      if (!backups.length && !restores.length) return; // nothing moves any more: stop polling
      var query = "?backups=" + backups.join(",") + "&restores=" + restores.join(",") + (withStats ? "&stats=1" : "");
      fetch(url + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status);
          return response.json();
        })
        .then(function (data) {
          data.backups.forEach(function (item) { update("backup", item); });
          data.restores.forEach(function (item) { update("restore", item); });
          var panel = document.getElementById("backup-stats");
          if (panel && data.stats_html) panel.outerHTML = data.stats_html;
        })
        .catch(function () { /* a failed poll is retried at the next tick */ })
        .then(function () { window.setTimeout(poll, INTERVAL); });
    }
    window.setTimeout(poll, INTERVAL);
  }

  // The restore confirmation says what to type for the database chosen in its select.
  function followConfirmHints() {
    var select = document.querySelector("select[name=database]");
    var hints = document.querySelectorAll("[data-confirm-hint]");
    if (!select || !hints.length) return;
    select.addEventListener("change", function () {
      hints.forEach(function (hint) { hint.hidden = hint.getAttribute("data-confirm-hint") !== select.value; });
    });
  }

  function init() {
    var root = document.getElementById("backup-console");
    if (root) start(root);
    followConfirmHints();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
