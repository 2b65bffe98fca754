/* Supportdesk chat: the small glue htmx's WebSocket extension does not provide.
 *
 * - a client_message_id per message, kept until the server echoes it, so resends
 *   (double click, retry, reconnect) are idempotent;
 * - on every (re)connect: resync from the last complete message we hold;
 * - close codes 4401/4403 explain themselves; other drops reconnect with backoff;
 * - no socket? the form falls back to a plain POST;
 * - uploads with a progress bar (XHR), drag and drop;
 * - local times, Enter to send, scrolling.
 * The page works without this file: forms post and links navigate.
 */
(function () {
  "use strict";
  var chat = document.getElementById("chat");
  var form = document.getElementById("composer");
  if (!chat || !form || !window.htmx) return;

  var box = document.getElementById("content");
  var clientId = document.getElementById("client-message-id");
  var attachmentIds = document.getElementById("attachment-ids");
  var uploads = document.getElementById("uploads");
  var fileInput = document.getElementById("file-input");
  var conn = document.getElementById("conn");
  var messages = document.getElementById("messages");
  var maxMb = parseInt(chat.getAttribute("data-attachment-max-mb") || "10", 10);
  var allowed = (fileInput.getAttribute("accept") || "").split(",").map(function (t) { return t.replace(".", "").toLowerCase(); });
  var connected = false;
  var socket = null;
  var pending = null; // {id, frame}: sent, not yet echoed back
  var closeRetries = 0;

  htmx.config.wsReconnectDelay = function (attempt) {
    return Math.min(500 * Math.pow(2, attempt), 10000) * (0.5 + Math.random() / 2);
  };

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function setConn(text) {
    conn.textContent = text;
    conn.hidden = !text;
  }

  function lastCompleteId() {
    var last = 0;
    var articles = messages.querySelectorAll("article[data-id]");
    for (var i = 0; i < articles.length; i++) {
      if (articles[i].getAttribute("data-status") === "streaming") break;
      last = Math.max(last, parseInt(articles[i].getAttribute("data-id"), 10));
    }
    return last;
  }

  function dropAfter(id) {
    messages.querySelectorAll("article[data-id]").forEach(function (a) {
      if (parseInt(a.getAttribute("data-id"), 10) > id) a.closest("li").remove();
    });
  }

  function scrollDown() {
    var last = messages.lastElementChild;
    if (last) last.scrollIntoView({block: "end"});
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) t.textContent = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
      t.setAttribute("data-local", "1");
    });
  }

  function showProblem(code) {
    var text = code === 4403 ? "This chat has expired — start a new one."
      : "We couldn't find this chat — start a new one.";
    document.getElementById("socket-problem-text").textContent = text;
    document.getElementById("socket-problem").hidden = false;
    form.querySelectorAll("textarea, button, input").forEach(function (el) { el.disabled = true; });
    setConn("");
  }

  document.body.addEventListener("htmx:wsOpen", function (e) {
    connected = true;
    document.body.dataset.connected = "true"; // for styling, and for tests that must not race the socket
    closeRetries = 0;
    socket = e.detail.socketWrapper;
    setConn("");
    var after = lastCompleteId();
    dropAfter(after);
    socket.sendImmediately(JSON.stringify({action: "resync", after: after}));
    if (pending) socket.sendImmediately(pending.frame);
  });

  document.body.addEventListener("htmx:wsClose", function (e) {
    connected = false;
    document.body.dataset.connected = "false";
    var code = e.detail.event.code;
    if (code === 4401 || code === 4403) return showProblem(code);
    setConn("Connection lost — reconnecting…");
    // htmx itself retries 1006/1011/1012/1013; any other close gets the same treatment here.
    if ([1006, 1011, 1012, 1013].indexOf(code) < 0) {
      var wrapper = e.detail.socketWrapper;
      setTimeout(function () { wrapper.reconnect(); }, htmx.config.wsReconnectDelay(closeRetries++));
    }
  });

  form.addEventListener("htmx:wsConfigSend", function (e) {
    var submit = e.detail.triggeringEvent;
    if (!connected) { e.preventDefault(); return; } // let the browser POST the form instead
    if (!box.value.trim() && !attachmentIds.value) {
      submit && submit.preventDefault();
      e.preventDefault();
      box.focus();
      return;
    }
    var frame = {action: "message", content: box.value, client_message_id: clientId.value,
                 attachment_ids: attachmentIds.value};
    e.detail.messageBody = JSON.stringify(frame);
    pending = {id: clientId.value, frame: e.detail.messageBody};
  });

  document.body.addEventListener("htmx:wsAfterMessage", function () {
    if (pending && messages.querySelector('[data-client-id="' + pending.id + '"]')) {
      pending = null;
      box.value = "";
      attachmentIds.value = "";
      uploads.innerHTML = "";
      clientId.value = newId();
      var welcome = document.getElementById("welcome");
      if (welcome) welcome.remove();
    }
    localTimes(messages);
    scrollDown();
  });

  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (form.requestSubmit) form.requestSubmit(); else form.querySelector("#send").click();
    }
  });

  // --- attachments: XHR upload with progress, drag and drop --------------------

  function syncIds() {
    var ids = [];
    uploads.querySelectorAll("[data-attachment-id]").forEach(function (li) {
      if (li.getAttribute("data-attachment-id")) ids.push(li.getAttribute("data-attachment-id"));
    });
    attachmentIds.value = ids.join(",");
  }

  function failed(li, text) {
    li.className = "upload upload-failed";
    li.innerHTML = '<span class="error"></span> <button type="button" class="remove" aria-label="Dismiss">×</button>';
    li.querySelector(".error").textContent = text;
  }

  function upload(file) {
    var li = document.createElement("li");
    li.className = "upload";
    li.innerHTML = '<span class="name"></span> <progress max="100" value="0"></progress>';
    li.querySelector(".name").textContent = file.name;
    uploads.appendChild(li);
    var ext = (file.name.split(".").pop() || "").toLowerCase();
    if (allowed.indexOf(ext) < 0) return failed(li, "Unsupported file type");
    if (file.size > maxMb * 1024 * 1024) return failed(li, "File too large (max " + maxMb + " MB)");
    var data = new FormData();
    data.append("file", file);
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/attachments/");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) li.querySelector("progress").value = Math.round(100 * e.loaded / e.total);
    };
    xhr.onload = function () {
      var holder = document.createElement("ul");
      holder.innerHTML = xhr.responseText;
      var chip = holder.querySelector("li");
      if (chip) li.replaceWith(chip); else failed(li, "Upload failed — please try again.");
      syncIds();
    };
    xhr.onerror = function () { failed(li, "Upload failed — please try again."); };
    xhr.send(data);
  }

  fileInput.addEventListener("change", function () {
    Array.prototype.forEach.call(fileInput.files, upload);
    fileInput.value = ""; // uploaded already: the message only carries the ids
  });

  uploads.addEventListener("click", function (e) {
    if (e.target.classList.contains("remove")) {
      e.target.closest("li").remove();
      syncIds();
    }
  });

  var zone = document.getElementById("drop-zone");
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    Array.prototype.forEach.call(e.dataTransfer.files, upload);
  });

  localTimes(document);
  scrollDown();
})();
