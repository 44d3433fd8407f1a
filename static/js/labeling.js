// RewardLab labeling page: keyboard shortcuts, the drag-and-drop ranking board, time spent per task.
// Progressive enhancement over plain forms: without this file every task still submits as a normal form.
// No inline scripts anywhere, so a Content-Security-Policy can forbid them.
(function () {
  "use strict";

  document.documentElement.classList.add("has-js");

  var startedAt = performance.now();
  var board = null; // the ranking board of the current task, if any

  function workspace() { return document.getElementById("workspace"); }
  function kind() { var w = workspace(); return w ? w.dataset.kind : ""; }
  function taskForm() { return document.getElementById("task-form"); }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && el.type !== "radio" && el.type !== "checkbox";
  }

  function digitOf(event) {
    var m = /^(?:Digit|Numpad)([1-9])$/.exec(event.code || "");
    return m ? Number(m[1]) : null;
  }

  function flash(message) {
    var w = workspace();
    if (!w) return;
    var toast = w.querySelector(".toast");
    if (!toast) {
      toast = document.createElement("div");
      toast.className = "toast";
      toast.setAttribute("role", "status");
      w.appendChild(toast);
    }
    toast.textContent = message;
    toast.classList.add("is-visible");
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { toast.classList.remove("is-visible"); }, 2600);
  }

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open) dialog.showModal();
  }

  function openSkip() {
    var skip = document.querySelector("[data-skip]");
    if (!skip) return;
    skip.open = true;
    var select = skip.querySelector("select");
    if (select) select.focus();
  }

  function submitTask() {
    var form = taskForm();
    if (!form) return;
    if (board && !board.complete()) {
      flash("Place every reply first: " + board.unplaced() + " left.");
      return;
    }
    form.requestSubmit();
  }

  // --- the ranking board -----------------------------------------------------------------------------------
  // The per-candidate "Place" selects are what the form posts (1 = best; equal numbers tie). The board is a
  // friendlier view of the same thing: tiers of chips, filled by keys or by dragging.

  function ordinal(n) {
    if (n === 1) return "Best";
    var suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
    return n + suffix;
  }

  function RankBoard(root) {
    this.root = root;
    this.tiersEl = root.querySelector("[data-tiers]");
    this.poolEl = root.querySelector("[data-pool]");
    this.candidates = {};
    this.order = [];
    var self = this;
    document.querySelectorAll(".candidate[data-candidate]").forEach(function (card) {
      var number = Number(card.dataset.candidate);
      var body = card.querySelector(".candidate__body");
      self.candidates[number] = {
        card: card,
        select: card.querySelector("select[data-place-for]"),
        snippet: body ? body.textContent.trim().replace(/\s+/g, " ").slice(0, 48) : "",
      };
      self.order.push(number);
    });
    this.tiers = this.fromSelects();
    this.placed = [].concat.apply([], this.tiers); // placement history, for undo
    this.sortables = [];
    this.sync();
  }

  RankBoard.prototype.fromSelects = function () {
    var byPlace = {};
    var self = this;
    this.order.forEach(function (n) {
      var value = Number(self.candidates[n].select.value);
      if (value) (byPlace[value] = byPlace[value] || []).push(n);
    });
    return Object.keys(byPlace).map(Number).sort(function (a, b) { return a - b; }).map(function (k) { return byPlace[k]; });
  };

  RankBoard.prototype.isPlaced = function (n) {
    return this.tiers.some(function (tier) { return tier.indexOf(n) !== -1; });
  };
  RankBoard.prototype.unplaced = function () {
    var self = this;
    return this.order.filter(function (n) { return !self.isPlaced(n); }).length;
  };
  RankBoard.prototype.complete = function () { return this.unplaced() === 0; };

  RankBoard.prototype.remove = function (n) {
    this.tiers = this.tiers.map(function (tier) { return tier.filter(function (m) { return m !== n; }); })
      .filter(function (tier) { return tier.length; });
    this.placed = this.placed.filter(function (m) { return m !== n; });
  };

  RankBoard.prototype.place = function (n, tie) {
    if (!this.candidates[n]) return;
    this.remove(n);
    if (tie && this.tiers.length) this.tiers[this.tiers.length - 1].push(n);
    else this.tiers.push([n]);
    this.placed.push(n);
    this.sync();
  };

  RankBoard.prototype.undo = function () {
    var last = this.placed[this.placed.length - 1];
    if (last === undefined) return;
    this.remove(last);
    this.sync();
  };

  RankBoard.prototype.reset = function () {
    this.tiers = [];
    this.placed = [];
    this.sync();
  };

  RankBoard.prototype.sync = function () {
    var self = this;
    this.order.forEach(function (n) {
      var c = self.candidates[n];
      var index = -1;
      self.tiers.forEach(function (tier, i) { if (tier.indexOf(n) !== -1) index = i; });
      c.select.value = index === -1 ? "" : String(index + 1);
      c.card.classList.toggle("is-placed", index !== -1);
      var label = c.card.querySelector("[data-tier-label]");
      if (label) label.textContent = index === -1 ? "" : ordinal(index + 1) + (self.tiers[index].length > 1 ? " (tie)" : "");
    });
    this.render();
  };

  RankBoard.prototype.chip = function (n) {
    var chip = document.createElement("span");
    chip.className = "chip-reply";
    chip.dataset.number = n;
    chip.setAttribute("aria-label", "Reply " + n);
    var label = document.createElement("strong");
    label.textContent = n;
    var snippet = document.createElement("span");
    snippet.textContent = this.candidates[n].snippet; // textContent: reply text is never parsed as HTML
    chip.appendChild(label);
    chip.appendChild(snippet);
    return chip;
  };

  RankBoard.prototype.render = function () {
    var self = this;
    this.sortables.forEach(function (s) { s.destroy(); });
    this.sortables = [];
    this.tiersEl.textContent = "";
    this.poolEl.textContent = "";
    var rows = this.tiers.concat([[]]);
    rows.forEach(function (tier, i) {
      var isNew = i === self.tiers.length;
      var li = document.createElement("li");
      li.className = "tier" + (isNew ? " tier--new" : "");
      li.dataset.tier = isNew ? "new" : String(i);
      var name = document.createElement("span");
      name.className = "tier__name";
      name.textContent = isNew ? "New tier" : ordinal(i + 1);
      var items = document.createElement("div");
      items.className = "tier__items";
      tier.forEach(function (n) { items.appendChild(self.chip(n)); });
      li.appendChild(name);
      li.appendChild(items);
      self.tiersEl.appendChild(li);
    });
    this.order.forEach(function (n) { if (!self.isPlaced(n)) self.poolEl.appendChild(self.chip(n)); });

    if (typeof window.Sortable === "undefined") return;
    var lists = Array.prototype.slice.call(this.tiersEl.querySelectorAll(".tier__items")).concat([this.poolEl]);
    lists.forEach(function (list) {
      self.sortables.push(window.Sortable.create(list, {
        group: "ranking", animation: 120, onEnd: function () { self.fromBoard(); },
      }));
    });
    self.sortables.push(window.Sortable.create(this.tiersEl, {
      handle: ".tier__name", filter: ".tier--new", animation: 120, onEnd: function () { self.fromBoard(); },
    }));
  };

  RankBoard.prototype.fromBoard = function () {
    var tiers = [];
    this.tiersEl.querySelectorAll(".tier").forEach(function (li) {
      var tier = Array.prototype.map.call(li.querySelectorAll(".chip-reply"), function (chip) { return Number(chip.dataset.number); });
      if (tier.length) tiers.push(tier);
    });
    var before = this.placed;
    var now = [].concat.apply([], tiers);
    // Keep the history for undo: what was placed stays in order, newly dragged replies go last.
    this.placed = before.filter(function (n) { return now.indexOf(n) !== -1; })
      .concat(now.filter(function (n) { return before.indexOf(n) === -1; }));
    this.tiers = tiers;
    this.sync();
  };

  // --- keys ------------------------------------------------------------------------------------------------

  function onKey(event) {
    if (!workspace()) return;
    if (document.querySelector("dialog[open]")) return; // Esc closes it natively
    var target = event.target;

    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      if (target.closest && target.closest("[data-skip]")) return;
      event.preventDefault();
      submitTask();
      return;
    }
    if (target.closest && target.closest("[data-skip]") && target.tagName === "SELECT" && event.key === "Enter") {
      event.preventDefault();
      target.form.requestSubmit();
      return;
    }
    if (isTyping(target)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Enter" && target.closest && target.closest("a, button, summary")) return;

    var handled = true;
    var digit = digitOf(event);
    var k = kind();
    if (event.key === "?") openDialog("help-dialog");
    else if (event.key === "g") openDialog("guidelines-dialog");
    else if (event.key === "s") openSkip();
    else if (event.key === "Enter") submitTask();
    else if (k === "demonstrate" && event.key === "c") document.querySelector("[data-composer]").focus();
    else if (k === "rank" && board && digit) board.place(digit, event.shiftKey);
    else if (k === "rank" && board && (event.key === "Backspace" || event.key === "u")) board.undo();
    else if (k === "rank" && board && event.key === "r") board.reset();
    else if (k === "rank" && event.key === "n") toggle("[data-none]");
    else if (k === "compare" && digit && digit <= 8 && !event.shiftKey) check('input[name="choice"][data-key="' + digit + '"]');
    else if (k === "compare" && event.key === "b") toggle("[data-both-bad]");
    else if (k === "rate" && digit && event.shiftKey) toggle('input[data-flag="' + digit + '"]');
    else if (k === "rate" && digit && digit <= 7) check('input[name="score"][data-key="' + digit + '"]');
    else handled = false;
    if (handled) event.preventDefault();
  }

  function check(selector) {
    var input = document.querySelector(selector);
    if (input) input.checked = true;
  }

  function toggle(selector) {
    var input = document.querySelector(selector);
    if (input) input.checked = !input.checked;
  }

  // --- wiring ----------------------------------------------------------------------------------------------

  function init() {
    var w = workspace();
    if (!w) return;
    startedAt = performance.now();
    var root = w.querySelector("[data-rankboard]");
    board = root ? new RankBoard(root) : null;
    var composer = w.querySelector("[data-composer]");
    if (composer) composer.focus();
  }

  document.addEventListener("keydown", onKey);

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      event.preventDefault();
      openDialog(opener.dataset.dialog);
      return;
    }
    var closer = event.target.closest("dialog [data-close]");
    if (closer) closer.closest("dialog").close();
  });

  // Record the time spent on the task just before the form is sent (htmx or not).
  document.addEventListener("submit", function (event) {
    var field = event.target.querySelector && event.target.querySelector("[data-time-spent]");
    if (field) field.value = String(Math.round(performance.now() - startedAt));
  }, true);

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "workspace") init();
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
