// kedai workbench: live updates (server-sent events) and keyboard
// shortcuts. Loaded from /app/assets with the page's CSP; no inline code.
(function () {
  "use strict";

  var page = document.body.dataset.page || "";
  var live = document.querySelector("[data-live]");
  var status = document.getElementById("live-status");
  var selected = -1;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#inbox-list li.conversation"));
  }

  function select(index) {
    var list = rows();
    if (!list.length) { selected = -1; return; }
    selected = Math.max(0, Math.min(index, list.length - 1));
    list.forEach(function (row, i) { row.classList.toggle("selected", i === selected); });
    list[selected].scrollIntoView({ block: "nearest" });
  }

  // The parts of each page a refresh replaces.
  var parts = {
    inbox: ["inbox-list", "tabs"],
    conversation: ["thread", "summary-card", "holder", "approval-status"],
    approvals: ["requests"]
  }[page] || [];

  // Each part as the server last rendered it: a part whose fresh render is
  // the same is left alone, so what the person opened, selected or is
  // about to click stays as it is.
  var rendered = {};
  parts.forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { rendered[id] = el.outerHTML; }
  });

  // Replaces the parts that changed with the server's fresh render.
  function swap(html, ids) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    ids.forEach(function (id) {
      var fresh = doc.getElementById(id);
      var old = document.getElementById(id);
      if (!fresh || !old) { return; }
      var markup = fresh.outerHTML;
      if (rendered[id] === markup) { return; }
      rendered[id] = markup;
      old.replaceWith(document.adoptNode(fresh));
    });
  }

  var timer = null;
  function refresh() {
    if (timer) { return; }
    timer = setTimeout(function () {
      timer = null;
      fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (res) {
          if (res.redirected || !res.ok) { return null; }
          return res.text();
        })
        .then(function (html) {
          if (!html) { return; }
          var keep = selected;
          swap(html, parts);
          if (keep >= 0) { select(keep); }
          if (status) { status.textContent = "Updated " + new Date().toLocaleTimeString(); }
          document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
        })
        .catch(function () { /* the next change tries again */ });
    }, 150);
  }

  if (live && window.EventSource) {
    var events = new EventSource("/app/events");
    // What changed between this page's render and the stream's start sent
    // no event: fetch the page once when the stream is ready (and again
    // after a reconnect), so a reply delivered meanwhile is not shown as
    // waiting forever.
    events.addEventListener("ready", function () {
      document.body.dataset.liveReady = "1";
      refresh();
    });
    events.addEventListener("reload", refresh);
    events.addEventListener("change", function (e) {
      var change = {};
      try { change = JSON.parse(e.data); } catch (_) { return; }
      if (page === "conversation" && change.conversation !== live.dataset.conversation) { return; }
      refresh();
    });
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      var send = document.getElementById("send");
      if (send && e.target && e.target.form && e.target.form.id === "composer") {
        e.preventDefault();
        send.click();
      }
      return;
    }
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (page === "inbox") {
      if (e.key === "j") { select(selected + 1); e.preventDefault(); }
      else if (e.key === "k") { select(selected - 1); e.preventDefault(); }
      else if (e.key === "o" || e.key === "Enter") {
        var row = rows()[selected < 0 ? 0 : selected];
        if (row) { row.querySelector("a").click(); e.preventDefault(); }
      } else if ("1234".indexOf(e.key) >= 0) {
        var tab = document.querySelectorAll("#tabs a")[Number(e.key) - 1];
        if (tab) { tab.click(); }
      }
    } else if (page === "conversation") {
      if (e.key === "n" && live && live.dataset.next) { location.href = live.dataset.next; }
      else if (e.key === "r") { var text = document.getElementById("reply-text"); if (text) { text.focus(); e.preventDefault(); } }
      else if (e.key === "u") { location.href = "/app/inbox"; }
    }
  });
})();
