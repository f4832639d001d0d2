// Streaming markdown for the demo chat: answers are rendered as sanitized markdown
// while they arrive, at a cost per byte that does not grow with the answer.
//
// The text is cut into blocks at line ends (a blank line outside a code fence, a
// fence's start and end, or a block grown past MAX_BLOCK). A finished block is
// rendered once and never touched again; only the one open block at the end is
// re-rendered, at most once per animation frame. Fenced code is never parsed: its
// lines go into a <pre><code> as text nodes. So the work of an update is bounded
// by MAX_BLOCK plus the text that arrived since the last frame (itself at most
// FRAME_BUDGET a frame), whatever the length of the answer.
//
// Raw HTML in an answer is shown as text (marked's html tokens are escaped), and
// everything marked produces goes through DOMPurify (no handlers, no javascript:).
// The cuts depend on the text only, not on how it arrived, so a live answer ends
// up rendered exactly as the same text rendered at once (the history).
(function () {
  "use strict";

  const MAX_BLOCK = 4096; // characters an open block may reach before it is closed
  const FRAME_BUDGET = 16384; // characters taken in per frame, all views together
  const FALLBACK_MS = 200; // a hidden tab runs no animation frames: a timer goes on

  const FENCE_OPEN = /^( {0,3})(`{3,}(?=[^`]*$)|~{3,})(.*)$/;
  const BLANK = /^[ \t]*\r?\n?$/;

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, function (c) { return ESCAPES[c]; });
  }

  const parser = new marked.Marked({ gfm: true, breaks: false });
  parser.use({
    renderer: {
      // Raw HTML (block or inline) is shown as the text it is.
      html(token) { return escapeHtml(token.text); },
    },
  });

  DOMPurify.addHook("afterSanitizeAttributes", function (node) {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });

  function sanitized(markdown) {
    return DOMPurify.sanitize(parser.parse(markdown), {
      RETURN_DOM_FRAGMENT: true,
      FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
      FORBID_ATTR: ["style", "class", "id"],
    });
  }

  // What the page did, for the tests (and the curious): work per update, not time.
  const stats = {
    updates: 0, // open-block renders (at most one per view and frame)
    parsedChars: 0, // characters given to the markdown parser, in all
    maxParsedChars: 0, // the most in one update
    nodes: 0, // DOM nodes created or removed, in all
    maxNodes: 0, // the most in one update
    frames: 0,
    parseMs: 0,
    frameMs: 0, // time spent rendering, in all (for reports only)
    maxFrameMs: 0, // the longest frame's rendering
    // The latest updates, one [answer length, characters taken in, parsed, nodes] each.
    log: [],
  };
  const LOG_LIMIT = 100000;

  function countNodes(fragment) {
    return fragment.childNodes.length + fragment.querySelectorAll("*").length;
  }

  function fenceOf(line) {
    const found = FENCE_OPEN.exec(line.replace(/\r?\n$/, ""));
    if (!found) return null;
    return {
      indent: found[1].length,
      marker: found[2],
      info: found[3].trim().split(/\s+/)[0] || "",
    };
  }

  function closesFence(line, fence) {
    const text = line.replace(/\r?\n$/, "");
    const found = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(text);
    return Boolean(found && found[1][0] === fence.marker[0] && found[1].length >= fence.marker.length);
  }

  function dedent(line, indent) {
    let i = 0;
    while (i < indent && line[i] === " ") i++;
    return line.slice(i);
  }

  // Where a line with no end yet is cut (first space past MAX_BLOCK, else at twice
  // that, never inside a surrogate pair): a position in the line, so the same text
  // is cut the same way however it arrives. -1: not yet.
  function longLineCut(line) {
    const length = line.endsWith("\n") ? line.length - 1 : line.length;
    if (length <= MAX_BLOCK) return -1;
    const space = line.indexOf(" ", MAX_BLOCK);
    if (space !== -1 && space < Math.min(length, 2 * MAX_BLOCK)) return space + 1;
    if (length <= 2 * MAX_BLOCK) return -1;
    let cut = 2 * MAX_BLOCK;
    const code = line.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
    return cut;
  }

  const dirty = new Set();
  let scheduled = false;

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    let timer = 0;
    const run = function () {
      if (!scheduled) return;
      window.clearTimeout(timer);
      scheduled = false;
      frame();
    };
    window.requestAnimationFrame(run);
    timer = window.setTimeout(run, FALLBACK_MS);
  }

  function frame() {
    const started = performance.now();
    stats.frames += 1;
    let budget = FRAME_BUDGET;
    for (const view of Array.from(dirty)) {
      budget -= view.work(budget);
      dirty.delete(view);
      if (view.pending) dirty.add(view); // to the back: views take turns
      if (budget <= 0) break;
    }
    if (dirty.size) schedule();
    // Reported by the tests, never asserted: they count work, not time.
    const took = performance.now() - started;
    stats.frameMs += took;
    if (took > stats.maxFrameMs) stats.maxFrameMs = took;
  }

  // One element showing one growing markdown text.
  class View {
    constructor(element, scroller) {
      this.element = element;
      this.scroller = scroller || null;
      this.reset();
    }

    reset() {
      this.element.replaceChildren();
      this.source = ""; // all text given, rendered or not (for tests)
      this.pending = ""; // given, not yet taken in
      this.lines = []; // the open block's finished lines
      this.chars = 0; // their length
      this.line = ""; // the open line (no line end yet)
      this.fence = null; // the open code fence, if the open block is one
      this.cut = false; // the open line continues a line cut for its length
      this.tail = null; // the open block's element
      this.rendered = null; // the source the open block was rendered from
      this.stale = false;
      dirty.delete(this);
    }

    setText(text) {
      this.reset();
      this.append(text);
    }

    append(text) {
      if (!text) return;
      this.source += text;
      this.pending += text;
      dirty.add(this);
      schedule();
    }

    idle() {
      return !this.pending;
    }

    // Renders everything given so far now (the tests' reference rendering).
    flush() {
      while (this.pending) this.work(Infinity);
      dirty.delete(this);
    }

    // Takes in up to `budget` characters and renders the open block; returns what it took.
    work(budget) {
      const follow = this.scroller ? this.atBottom() : false;
      let taken = this.pending;
      if (taken.length > budget) {
        let cut = budget;
        const code = taken.charCodeAt(cut - 1);
        if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
        taken = taken.slice(0, Math.max(cut, 1));
      }
      this.pending = this.pending.slice(taken.length);
      this.nodes = 0;
      this.parsed = 0;
      this.takeIn(taken);
      this.renderTail();
      stats.updates += 1;
      stats.parsedChars += this.parsed;
      stats.nodes += this.nodes;
      if (this.parsed > stats.maxParsedChars) stats.maxParsedChars = this.parsed;
      if (this.nodes > stats.maxNodes) stats.maxNodes = this.nodes;
      if (stats.log.length < LOG_LIMIT) {
        stats.log.push([this.source.length - this.pending.length, taken.length, this.parsed, this.nodes]);
      }
      if (follow) this.scroller.scrollTop = this.scroller.scrollHeight;
      return taken.length;
    }

    atBottom() {
      const s = this.scroller;
      return s.scrollTop + s.clientHeight >= s.scrollHeight - 24;
    }

    takeIn(text) {
      for (let start = 0; start < text.length; ) {
        const end = text.indexOf("\n", start);
        const stop = end === -1 ? text.length : end + 1;
        this.line += text.slice(start, stop);
        this.cutLongLine();
        start = stop;
        if (end === -1) break;
        const line = this.line;
        const continued = this.cut;
        this.line = "";
        this.cut = false;
        if (continued && this.fence) this.codeText(line);
        else this.addLine(line);
      }
      if (this.fence || this.line) this.stale = true;
    }

    // A line too long for one block goes on in the next (see longLineCut).
    cutLongLine() {
      for (let cut = longLineCut(this.line); cut !== -1; cut = longLineCut(this.line)) {
        const head = this.line.slice(0, cut);
        this.line = this.line.slice(cut);
        const continued = this.cut;
        this.cut = true;
        if (this.fence) {
          this.codeText(continued ? head : dedent(head, this.fence.indent));
        } else {
          this.lines.push(head);
          this.chars += head.length;
          this.closeBlock();
        }
      }
    }

    addLine(line) {
      if (this.fence) {
        if (closesFence(line, this.fence)) {
          this.closeFence();
        } else {
          this.codeText(dedent(line, this.fence.indent));
        }
        return;
      }
      const fence = fenceOf(line);
      if (fence) {
        this.closeBlock();
        this.openFence(fence);
        return;
      }
      if (BLANK.test(line)) {
        this.closeBlock();
        return;
      }
      this.lines.push(line);
      this.chars += line.length;
      this.stale = true;
      if (this.chars > MAX_BLOCK) this.closeBlock();
    }

    block() {
      const div = document.createElement("div");
      div.className = "md-block";
      this.element.appendChild(div);
      this.nodes += 1;
      return div;
    }

    // The open block's lines as a finished block: rendered once more if they changed.
    closeBlock() {
      if (!this.lines.length) return;
      const text = this.lines.join("");
      if (this.rendered !== text) this.renderInto(this.tail || this.block(), text);
      this.lines = [];
      this.chars = 0;
      this.tail = null;
      this.rendered = null;
      this.stale = false;
    }

    renderInto(div, text) {
      const t0 = performance.now();
      const fragment = sanitized(text);
      stats.parseMs += performance.now() - t0;
      this.parsed += text.length;
      this.nodes += div.childNodes.length + countNodes(fragment);
      div.replaceChildren(fragment);
    }

    openFence(fence) {
      // The open block may show the opening line, rendered while it had no end yet.
      const div = this.tail || this.block();
      this.nodes += div.childNodes.length;
      div.replaceChildren();
      this.rendered = null;
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      if (/^[\w+#.-]{1,40}$/.test(fence.info)) code.className = "language-" + fence.info;
      pre.appendChild(code);
      div.appendChild(pre);
      this.nodes += 2;
      fence.code = code;
      fence.open = document.createTextNode(""); // the open line, shown as it grows
      code.appendChild(fence.open);
      this.fence = fence;
      this.tail = div;
    }

    codeText(text) {
      this.fence.code.insertBefore(document.createTextNode(text), this.fence.open);
      this.nodes += 1;
    }

    closeFence() {
      this.fence.open.data = "";
      this.fence = null;
      this.tail = null;
    }

    renderTail() {
      if (!this.stale) return;
      this.stale = false;
      if (this.fence) {
        if (this.fence.open.data !== this.line) this.fence.open.data = this.line;
        return;
      }
      const text = this.lines.join("") + this.line;
      if (!text.trim()) return;
      this.renderInto(this.tail || (this.tail = this.block()), text);
      this.rendered = text;
    }
  }

  function allIdle() {
    return dirty.size === 0;
  }

  window.ptsMarkdown = {
    View: View,
    stats: stats,
    idle: allIdle,
    MAX_BLOCK: MAX_BLOCK,
    FRAME_BUDGET: FRAME_BUDGET,
  };
})();
