// Live updates (one server-sent event stream) and actions with a confirmation step.
"use strict";
(function () {
  const body = document.body;
  const watched = (body.dataset.watch || "").split(" ");
  const key = body.dataset.key || "";
  const live = document.getElementById("live");
  let timer = null;

  function refresh() {
    // Re-render <main> from the dashboard's cache: no reload, no API call per object.
    const url = new URL(location.href);
    url.searchParams.set("fragment", "1");
    fetch(url).then(function (r) {
      // 404: the object is gone (or not there yet); the answer says so.
      return r.ok || r.status === 404 ? r.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) {
        document.getElementById("main").innerHTML = html;
        body.dispatchEvent(new CustomEvent("refreshed"));
      }
    });
  }

  function relevant(notice) {
    if (!watched.includes(notice.kind)) { return false; }
    if (!key || notice.resync || notice.problem) { return true; }
    const [plural, ns, name] = key.split("/");
    if (notice.kind === plural) { return notice.namespace === ns && notice.name === name; }
    return notice.namespace === ns;  // a run of this PeriodicTask, maybe
  }

  const events = new EventSource("/events");
  events.onopen = function () {
    // Catch up on what changed between this page's render and the stream's (re)start.
    live.className = "on";
    refresh();
  };
  events.onerror = function () { live.className = "off"; };
  events.onmessage = function (message) {
    if (!relevant(JSON.parse(message.data))) { return; }
    clearTimeout(timer);
    timer = setTimeout(refresh, 200);
  };

  const dialog = document.getElementById("confirm");
  const flash = document.getElementById("flash");
  let pending = null;

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button.action");
    if (!button) { return; }
    pending = button.dataset;
    document.getElementById("confirm-text").textContent = button.dataset.confirm;
    dialog.showModal();
  });

  dialog.addEventListener("close", function () {
    if (dialog.returnValue !== "ok" || !pending) { pending = null; return; }
    const data = pending;
    pending = null;
    fetch("/action", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Dashboard-Token": body.dataset.token},
      body: JSON.stringify({action: data.action, plural: data.plural,
                            namespace: data.namespace, name: data.name,
                            terminate: data.terminate === "true"}),
    }).then(function (r) { return r.json(); }).then(function (answer) {
      flash.textContent = answer.message;
      flash.className = answer.ok ? "ok" : "error";
    }).catch(function (error) {
      flash.textContent = "error: " + error;
      flash.className = "error";
    });
  });
})();
