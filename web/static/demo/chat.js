// The demo chat's page script: drives the latest answer over HTTP (left pane),
// feeds both panes and the history to the markdown renderer (markdown.js), keeps
// the panes' figures, and wires Stop, the copy buttons and the message box. The
// right pane's connection is htmx's SSE extension (it swaps the status in; its
// text events go to the renderer, never into the page as HTML).
// It lives in /static because the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  const FINAL = new Set(["done", "error", "timeout", "aborted", "deleted"]);
  // Bounds: an answer has far fewer chunks; a pane gives up resuming after this many tries.
  const MAX_READS = 1000000;
  const MAX_RESUMES = 5;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function byTestId(root, id) {
    return root.querySelector('[data-testid="' + id + '"]');
  }

  // Unescapes pts's HTML-escaped SSE text (format=html escapes & < > " ' only).
  const UNESCAPES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'" };
  function unescapeHtml(text) {
    return text.replace(/&(?:amp|lt|gt|quot|#x27);/g, function (e) { return UNESCAPES[e]; });
  }

  // A pane's text as markdown: the server sent it as text (escaped), so its
  // textContent is the markdown persisted so far.
  function markdownView(element, scroller) {
    if (element.ptsView) return element.ptsView;
    const text = element.textContent;
    const view = new window.ptsMarkdown.View(element, scroller);
    view.setText(text);
    element.ptsView = view;
    element.setAttribute("data-rendered", "");
    return view;
  }

  // Calls `render` once per animation frame at most (a timer in hidden tabs).
  function coalesced(render) {
    let pending = false;
    return function () {
      if (pending) return;
      pending = true;
      let timer = 0;
      const run = function () {
        if (!pending) return;
        pending = false;
        window.clearTimeout(timer);
        render();
      };
      window.requestAnimationFrame(run);
      timer = window.setTimeout(run, 200);
    };
  }

  // Live figures of one pane: bytes reached, time to first byte, number of updates.
  class Figures {
    constructor(widget, prefix, bytes) {
      this.bytesEl = byTestId(widget, prefix + "-bytes");
      this.ttfbEl = byTestId(widget, prefix + "-ttfb");
      this.updatesEl = byTestId(widget, prefix + "-updates");
      this.bytes = bytes;
      this.updates = 0;
      this.ttfb = null;
      this.start = performance.now();
      this.later = coalesced(this.render.bind(this));
      this.render();
    }
    restart() {
      this.start = performance.now();
      this.ttfb = null;
    }
    update(bytes) {
      if (this.ttfb === null) this.ttfb = performance.now() - this.start;
      this.updates += 1;
      this.bytes = bytes;
      this.later();
    }
    render() {
      this.bytesEl.textContent = this.bytes.toLocaleString("en");
      this.ttfbEl.textContent = this.ttfb === null ? "–" : Math.round(this.ttfb) + " ms";
      this.updatesEl.textContent = this.updates.toLocaleString("en");
    }
  }

  function setComposerBusy(busy) {
    const button = document.querySelector('#send-form [data-testid="send-button"]');
    if (button) button.disabled = busy;
  }

  // -- the answer widget ------------------------------------------------------------

  function initAnswer(widget) {
    if (widget.ptsAnswer) return;
    const offset = Number(widget.dataset.offset) || 0;
    const answer = {
      widget: widget,
      streamId: widget.dataset.streamId,
      drivenText: byTestId(widget, "driven-text"),
      drivenView: null,
      subscriberView: null,
      mode: byTestId(widget, "driven-mode"),
      title: byTestId(widget, "driven-title"),
      status: byTestId(widget, "stream-status"),
      stop: byTestId(widget, "stop-button"),
      driven: new Figures(widget, "driven", offset),
      subscriber: new Figures(widget, "subscriber", offset),
      source: null, // the subscriber pane's EventSource (htmx's)
      follower: null, // the driving pane's EventSource, when it follows instead
      resumes: 0,
      finished: false,
    };
    widget.ptsAnswer = answer;
    answer.drivenView = markdownView(answer.drivenText, answer.drivenText);
    const subscriberText = byTestId(widget, "subscriber-text");
    answer.subscriberView = markdownView(subscriberText, subscriberText);
    if (FINAL.has(widget.dataset.status)) {
      answer.finished = true;
      return;
    }
    setComposerBusy(true);
    if (answer.stop) answer.stop.addEventListener("click", function () { stop(answer); });
    if (widget.dataset.driveUrl) {
      drive(answer, widget.dataset.driveUrl, offset);
    } else {
      follow(answer, offset);
    }
  }

  function setMode(answer, text) {
    answer.mode.textContent = text;
  }

  // The left pane's heading says what this browser does with the answer.
  function setTitle(answer, title, how) {
    answer.title.firstChild.textContent = title + " ";
    answer.title.querySelector("span").textContent = how;
  }

  // The driving path: POST to the app's HTTP action and render the body as it arrives.
  async function drive(answer, url, offset) {
    const figures = answer.driven;
    answer.widget.dataset.driven = "driving";
    figures.restart();
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
    } catch (err) {
      return recover(answer, "the HTTP action failed (" + err + ")");
    }
    if (response.status === 409) {
      // Another tab drives it already: no second generation, subscribe instead.
      answer.widget.dataset.driven = "following";
      setTitle(answer, "This browser", "following, not driving");
      setMode(answer, "driven elsewhere: following the subscription from byte " + offset);
      return follow(answer, offset);
    }
    if (!response.ok || !response.body) {
      return recover(answer, "the HTTP action answered " + response.status);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let bytes = offset;
    try {
      for (let reads = 0; reads < MAX_READS; reads++) {
        const chunk = await reader.read();
        if (chunk.done) break;
        bytes += chunk.value.byteLength;
        answer.drivenView.append(decoder.decode(chunk.value, { stream: true }));
        figures.update(bytes);
      }
      answer.drivenView.append(decoder.decode());
    } catch (err) {
      // The response was cut off (network, server): the database has the text.
      return recover(answer, "the HTTP stream broke off");
    }
    answer.widget.dataset.driven = "complete";
    setMode(answer, "fetch() + stream reader: HTTP response complete");
  }

  // Falls back to the database: take the persisted text, then follow from its end.
  async function recover(answer, why) {
    answer.widget.dataset.driven = "following";
    setTitle(answer, "This browser", "following, not driving");
    if (answer.finished || answer.resumes >= MAX_RESUMES) {
      setMode(answer, why);
      return;
    }
    answer.resumes += 1;
    try {
      const response = await fetch("/streams/" + answer.streamId, { credentials: "same-origin" });
      if (!response.ok) throw new Error("status " + response.status);
      const view = await response.json();
      answer.drivenView.setText(view.text);
      answer.driven.update(view.size);
      setMode(answer, why + ": resumed from byte " + view.size + " of the database");
      if (!FINAL.has(view.status)) follow(answer, view.size, true);
    } catch (err) {
      setMode(answer, why + "; resuming failed (" + err + ")");
      window.setTimeout(function () { recover(answer, why); }, 1000 * answer.resumes);
    }
  }

  // The driving pane's fallback: pts's SSE route (plain text events) from `offset`.
  // A dropped connection is resumed by EventSource itself, with Last-Event-ID.
  function follow(answer, offset, keepMode) {
    const figures = answer.driven;
    answer.widget.dataset.driven = "following";
    if (!keepMode && !answer.widget.dataset.driveUrl) {
      setMode(answer, "not driving here: following the subscription from byte " + offset);
    }
    figures.restart();
    const source = new EventSource("/streams/" + answer.streamId + "/events?offset=" + offset);
    answer.follower = source;
    source.addEventListener("text", function (event) {
      answer.drivenView.append(event.data);
      figures.update(Number(event.lastEventId));
    });
    source.addEventListener("status", function (event) {
      const status = JSON.parse(event.data).status;
      if (FINAL.has(status)) {
        source.close();
        answer.widget.dataset.driven = "complete";
      }
    });
    source.onerror = function () {
      // CLOSED: the server refused (EventSource retries everything else itself).
      if (source.readyState === EventSource.CLOSED && !answer.finished) {
        recover(answer, "the subscription was refused");
      }
    };
  }

  async function stop(answer) {
    answer.stop.disabled = true;
    try {
      const response = await fetch("/streams/" + answer.streamId + "/cancel", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
        body: JSON.stringify({ reason: "stopped in the browser" }),
      });
      // The new status (and the text flushed on cancel) reaches every viewer,
      // this page included, through the subscription.
      if (!response.ok) answer.stop.disabled = false;
    } catch (err) {
      answer.stop.disabled = false;
    }
  }

  async function finish(answer, status) {
    if (answer.finished) return;
    answer.finished = true;
    answer.widget.dataset.status = status;
    answer.status.className = "status " + status;
    if (answer.source) answer.source.close(); // else EventSource would reconnect forever
    if (answer.stop) answer.stop.hidden = true;
    setComposerBusy(false);
    if (status === "done" || status === "deleted") return;
    try {
      const response = await fetch("/streams/" + answer.streamId, { credentials: "same-origin" });
      const view = await response.json();
      byTestId(answer.widget, "stream-reason").textContent = view.abort_reason || view.error || "";
    } catch (err) {
      // The reason is a nicety; the status is what counts.
    }
  }

  function answerOf(element) {
    const widget = element.closest("[data-answer]");
    return widget ? widget.ptsAnswer : undefined;
  }

  // -- htmx's SSE events (the subscriber pane) --------------------------------------

  // The text events go to the subscriber pane's markdown view (never swapped in as
  // HTML by htmx); htmx swaps the status events into the status badge.
  document.addEventListener("htmx:sseOpen", function (event) {
    const answer = answerOf(event.target);
    if (!answer) return;
    const source = event.detail.source;
    answer.source = source;
    if (answer.finished) {
      source.close();
      return;
    }
    if (source.ptsText) return;
    source.ptsText = true;
    source.addEventListener("text", function (message) {
      answer.subscriberView.append(unescapeHtml(message.data));
      answer.subscriber.update(Number(message.lastEventId));
    });
  });

  document.addEventListener("htmx:sseMessage", function (event) {
    const answer = answerOf(event.target);
    if (!answer) return;
    const message = event.detail;
    if (message.type === "status") {
      answer.widget.dataset.status = message.data;
      answer.status.className = "status " + message.data;
      if (FINAL.has(message.data)) finish(answer, message.data);
    }
  });

  // -- the message box ----------------------------------------------------------------

  // A poll that raced with this tab's own send must not replace the conversation
  // the send returned (that one drives the new answer; a polled one never does).
  let sends = 0;
  let sending = false;

  function isPoll(element) {
    return Boolean(element && element.matches && element.matches('[data-testid="conversation-poll"]'));
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (isPoll(event.target)) {
      if (sending) event.preventDefault();
      else event.target.ptsSends = sends;
      return;
    }
    if (event.target.id !== "send-form") return;
    if (formIsBlank(event.target)) {
      event.preventDefault();
      return;
    }
    sends += 1;
    sending = true;
    byTestId(event.target, "send-error").textContent = "";
    setComposerBusy(true);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    const source = event.detail.requestConfig ? event.detail.requestConfig.elt : null;
    if (isPoll(source) && (sending || source.ptsSends !== sends)) event.detail.shouldSwap = false;
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.target;
    if (form.id !== "send-form") return;
    sending = false;
    if (event.detail.successful) {
      form.reset();
      return;
    }
    setComposerBusy(false);
    let detail = "sending failed";
    try {
      detail = JSON.parse(event.detail.xhr.responseText).detail || detail;
    } catch (err) {
      // Not JSON: keep the generic message.
    }
    byTestId(form, "send-error").textContent = detail;
  });

  const HINT_BLANK = "Type a message first: it is empty (or only spaces).";
  const HINT_BUSY = "Wait for the answer to finish, or press Stop, then send this.";

  function hint(form, text) {
    byTestId(form, "send-error").textContent = text;
  }

  // A blank message is not sent (the server would refuse it): say why instead.
  function formIsBlank(form) {
    const input = byTestId(form, "message-input");
    if (input.value.trim()) return false;
    hint(form, HINT_BLANK);
    return true;
  }

  document.addEventListener("keydown", function (event) {
    const input = event.target;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (!input.matches || !input.matches('#send-form [data-testid="message-input"]')) return;
    event.preventDefault();
    const button = byTestId(input.form, "send-button");
    if (formIsBlank(input.form)) return;
    if (button.disabled) hint(input.form, HINT_BUSY);
    else input.form.requestSubmit();
  });

  document.addEventListener("input", function (event) {
    const form = event.target.form;
    if (form && form.id === "send-form" && event.target.value.trim()) hint(form, "");
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  // Copy buttons: data-copy names the element (by test id) whose value or text to copy.
  async function copy(button) {
    const source = document.querySelector('[data-testid="' + button.dataset.copy + '"]');
    if (!source) return;
    const text = source.value !== undefined ? source.value : source.textContent;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (err) {
      // No clipboard (an insecure origin): select the text for Ctrl+C.
      if (source.select) source.select();
      button.textContent = "Press Ctrl+C";
    }
    button.dataset.copied = "true";
    window.setTimeout(function () {
      button.textContent = label;
      delete button.dataset.copied;
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("button[data-copy]");
    if (button && !button.dataset.copied) copy(button);
  });

  // A conversation replaced by a newer one (sent from another tab): stop its streams.
  document.addEventListener("htmx:beforeCleanupElement", function (event) {
    const answer = event.target.ptsAnswer;
    if (!answer) return;
    answer.finished = true;
    if (answer.source) answer.source.close();
    if (answer.follower) answer.follower.close();
  });

  function renderHistory(element) {
    markdownView(element, null);
  }

  htmx.onLoad(function (root) {
    if (!root.querySelectorAll) return;
    root.querySelectorAll("[data-markdown]").forEach(renderHistory);
    if (root.matches("[data-answer]")) initAnswer(root);
    root.querySelectorAll("[data-answer]").forEach(initAnswer);
  });
})();
