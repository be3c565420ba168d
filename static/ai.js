// The composer's Suggest panel: POST the panel's form with fetch, read the
// text/event-stream answer as it arrives, show each suggestion growing, then offer
// "Insert" into the main text or a platform's override. Loaded once; listens on document.
(function () {
  "use strict";
  if (window.okkAi) return;
  window.okkAi = true;

  var NAMES = { "": "Main text", x: "X", instagram: "Instagram", tiktok: "TikTok", facebook: "Facebook" };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  }

  function insert(target, text) {
    var field = document.getElementById(target ? "override-" + target : "text");
    if (!field) return;
    if (target) {
      var details = field.closest("details");
      if (details) details.open = true;
    }
    field.value = text;
    field.dispatchEvent(new Event("input", { bubbles: true })); // live checks re-run
    field.focus();
  }

  function card(results, platform) {
    var item = el("li", "ai-result");
    item.appendChild(el("strong", "", NAMES[platform] || platform));
    var body = el("p", "ai-text");
    item.appendChild(body);
    var meta = el("p", "muted small ai-meta");
    item.appendChild(meta);
    results.appendChild(item);
    return { item: item, body: body, meta: meta };
  }

  function finish(c, data) {
    c.body.textContent = data.text;
    var parts = [];
    if (data.limit) parts.push(data.used + " / " + data.limit);
    if (data.note) parts.push(data.note);
    c.meta.textContent = parts.join(" · ");
    if (data.over) c.item.classList.add("ai-over");
    var actions = el("div", "ai-actions");
    var targets = data.platform ? [data.platform, ""] : ["", "x", "instagram", "tiktok", "facebook"];
    targets.forEach(function (t) {
      if (t && !document.getElementById("override-" + t)) return;
      var button = el("button", "btn-ghost small", t ? "Insert as " + NAMES[t] + " text" : "Insert into main text");
      button.type = "button";
      button.addEventListener("click", function () { insert(t, data.text); });
      actions.appendChild(button);
    });
    c.item.appendChild(actions);
  }

  function handle(state, event, data) {
    if (event === "start") {
      state.cards[data.index] = card(state.results, data.platform);
    } else if (event === "chunk") {
      var c = state.cards[data.index];
      if (c) c.body.textContent += data.delta;
    } else if (event === "done") {
      finish(state.cards[data.index], data);
    } else if (event === "error") {
      state.status.textContent = data.message;
      state.status.classList.add("ai-error");
      state.failed = true;
    } else if (event === "end" && !state.failed) {
      state.status.textContent = "";
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.id !== "ai-form") return;
    event.preventDefault();
    var data = new FormData(form);
    var submitter = event.submitter;
    var action = submitter && submitter.value ? submitter.value : "suggest";
    data.set("action", action);
    if (action !== "suggest") {
      var main = document.getElementById("text");
      data.set("text", main ? main.value : "");
    }
    var state = {
      results: document.getElementById("ai-results"),
      status: document.getElementById("ai-status"),
      cards: {},
      failed: false,
    };
    state.results.textContent = "";
    state.status.classList.remove("ai-error");
    state.status.textContent = "Writing…";
    // (not form.action: the buttons named "action" shadow it)
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    var headers = { accept: "text/event-stream", "x-csrftoken": data.get("_csrf_token") || "" };
    fetch(form.getAttribute("action"), { method: "POST", body: new URLSearchParams(data), headers: headers })
      .then(function (response) {
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (step) {
            buffer += decoder.decode(step.value || new Uint8Array(), { stream: !step.done });
            var blocks = buffer.split("\n\n");
            buffer = blocks.pop();
            blocks.forEach(function (block) {
              var name = "message", lines = [];
              block.split("\n").forEach(function (line) {
                if (line.indexOf("event: ") === 0) name = line.slice(7);
                else if (line.indexOf("data: ") === 0) lines.push(line.slice(6));
              });
              if (lines.length) handle(state, name, JSON.parse(lines.join("\n")));
            });
            if (!step.done) return pump();
          });
        }
        return pump();
      })
      .catch(function (error) {
        state.status.textContent =
          "Suggestions are unavailable right now (" + error.message + "). Your post is unaffected.";
        state.status.classList.add("ai-error");
      })
      .finally(function () {
        buttons.forEach(function (b) { b.disabled = false; });
      });
  });
})();
