// Drag-and-drop media upload with a progress bar per file (templates/partials/media_upload.html).
//
// Why not htmx: htmx sends a whole form as one request. Its htmx:xhr:progress event can
// drive one bar, but files dropped on a zone are not in a form, several files would share
// one request (one bar, one refusal failing them all, one body over the size limit), and
// the server's per-file answer (the media_item partial or a reason) could not be placed
// per file. So each file is its own XMLHttpRequest (fetch() still has no upload progress),
// and the returned partial is handed to htmx.process() so its markup behaves like any other.
(function () {
  "use strict";
  if (window.okkMediaUpload) return; // the partial may be included more than once
  window.okkMediaUpload = true;

  var queue = [];
  var busy = false;

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["x-csrftoken"] || "";
    } catch (e) {
      return "";
    }
  }

  function listFor(widget) {
    var list = document.querySelector(widget.dataset.list || "#media-list");
    if (!list) { // a page without a list of its own: keep one inside the widget
      list = widget.querySelector(".media-list") || document.createElement("ul");
      list.className = "media-list";
      widget.appendChild(list);
    }
    return list;
  }

  function mediaChanged() {
    document.body.dispatchEvent(new CustomEvent("media-changed", { bubbles: true }));
  }

  function megabytes(bytes) {
    return Math.round(bytes / 1048576) + " MB";
  }

  // A quick refusal before sending: the browser's type guess is only a hint (the server
  // decides by content), but it saves sending a 2 GB file just to hear it is too large.
  function tooLarge(widget, file) {
    var limit = Number(file.type.indexOf("image/") === 0 ? widget.dataset.maxImage : widget.dataset.maxVideo);
    return limit && file.size > limit ? "Too large: at most " + megabytes(limit) + "." : "";
  }

  function row(widget, file) {
    var li = document.createElement("li");
    li.className = "upload-row";
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Uploading " + file.name);
    var status = document.createElement("span");
    status.className = "upload-status muted small";
    status.textContent = "Waiting…";
    li.append(name, bar, status);
    widget.querySelector(".upload-queue").appendChild(li);
    return { li: li, bar: bar, status: status };
  }

  function fail(item, message) {
    item.li.classList.add("upload-failed");
    item.bar.remove();
    item.status.classList.remove("muted");
    item.status.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn-ghost btn-small";
    close.setAttribute("aria-label", "Dismiss");
    close.innerHTML = '<span class="i i-close" aria-hidden="true"></span>';
    close.addEventListener("click", function () { item.li.remove(); });
    item.li.appendChild(close);
  }

  function errorText(xhr) {
    var box = document.createElement("template");
    box.innerHTML = xhr.responseText || "";
    var node = box.content.querySelector("[data-upload-error]");
    if (node) return node.textContent.trim();
    if (xhr.status === 413) return "The file is too large.";
    return "Upload failed (" + (xhr.status || "network error") + ").";
  }

  function send(job) {
    var item = job.item;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/media");
    xhr.setRequestHeader("x-csrftoken", csrfToken());
    xhr.setRequestHeader("HX-Request", "true"); // answer with the HTML partial
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      item.bar.value = Math.round((event.loaded / event.total) * 100);
      item.status.textContent = item.bar.value + "%";
    });
    xhr.upload.addEventListener("load", function () {
      item.bar.removeAttribute("value"); // indeterminate while the server checks the file
      item.status.textContent = "Checking…";
    });
    xhr.addEventListener("load", function () {
      var redirect = xhr.getResponseHeader("HX-Redirect");
      if (xhr.status === 401 && redirect) {
        window.location.href = redirect;
        return;
      }
      if (xhr.status === 201) {
        var box = document.createElement("template");
        box.innerHTML = xhr.responseText.trim();
        var added = box.content.firstElementChild;
        var list = listFor(job.widget);
        var existing = added && added.id ? list.querySelector("#" + CSS.escape(added.id)) : null;
        if (existing) existing.replaceWith(added); // the same file again: one entry
        else if (added) list.appendChild(added);
        if (added && window.htmx) window.htmx.process(added);
        item.li.remove();
        mediaChanged();
      } else {
        fail(item, errorText(xhr));
      }
    });
    xhr.addEventListener("error", function () { fail(item, "Upload failed: the connection was lost."); });
    xhr.addEventListener("loadend", next);
    var form = new FormData();
    form.append("file", job.file, job.file.name);
    item.status.textContent = "0%";
    xhr.send(form);
  }

  // One upload at a time: bars that move one after the other, and a 1 GB video does not
  // compete with the images queued behind it.
  function next() {
    busy = false;
    var job = queue.shift();
    if (!job) return;
    busy = true;
    send(job);
  }

  function add(widget, files) {
    Array.prototype.forEach.call(files, function (file) {
      var item = row(widget, file);
      var refusal = tooLarge(widget, file);
      if (refusal) {
        fail(item, refusal);
        return;
      }
      queue.push({ widget: widget, file: file, item: item });
    });
    if (!busy) next();
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    var widget = input.closest && input.closest("[data-media-upload]");
    if (!widget || input.type !== "file") return;
    event.stopPropagation(); // the composer must not validate on a file pick
    add(widget, input.files);
    input.value = "";
  }, true);

  function zoneOf(event) {
    var zone = event.target.closest && event.target.closest("[data-media-upload] .drop-zone");
    // A file dropped beside the zone must not make the browser leave the page to show it.
    if (!zone && document.querySelector("[data-media-upload]")) event.preventDefault();
    return zone;
  }

  ["dragenter", "dragover"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var zone = zoneOf(event);
      if (!zone) return;
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var zone = zoneOf(event);
      if (!zone) return;
      event.preventDefault();
      zone.classList.remove("dragging");
      if (name === "drop" && event.dataTransfer) {
        add(zone.closest("[data-media-upload]"), event.dataTransfer.files);
      }
    });
  });

  // Remove: the item leaves the list (and so the form) at once; the server deletes the
  // upload unless a scheduled or published post still uses it (then it answers 409 and
  // keeps the file for that post, which is what we want here too).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-media-remove]");
    if (!button) return;
    var xhr = new XMLHttpRequest();
    xhr.open("DELETE", button.getAttribute("data-media-remove"));
    xhr.setRequestHeader("x-csrftoken", csrfToken());
    xhr.setRequestHeader("HX-Request", "true");
    xhr.send();
    var li = button.closest(".media-item");
    if (li) li.remove();
    mediaChanged();
  });
})();
