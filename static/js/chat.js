// RewardLab live chat: keyboard voting (1-8, Enter), "e" to rewrite the chosen reply, Ctrl/Cmd+Enter to send,
// time spent per vote. Progressive enhancement: without this file every form still posts. No inline scripts.
(function () {
  "use strict";

  var shownAt = performance.now();
  var seenState = "";

  function chat() { return document.getElementById("chat"); }
  function voteForm() { return document.getElementById("vote-form"); }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && el.type !== "radio" && el.type !== "checkbox";
  }

  function digitOf(event) {
    var m = /^(?:Digit|Numpad)([1-9])$/.exec(event.code || "");
    return m ? Number(m[1]) : null;
  }

  function chosenSide(form) {
    var checked = form.querySelector('input[name="choice"]:checked');
    if (!checked) return "";
    return Number(checked.value) < 0 ? "A" : "B";
  }

  function openEdit(form) {
    var details = form.querySelector("[data-edit]");
    var area = form.querySelector("[data-edit-text]");
    var side = chosenSide(form);
    if (!details || !area) return;
    details.open = true;
    if (!area.value && side) {
      var source = chat().querySelector('[data-reply-text="' + side + '"]');
      if (source) area.value = source.content ? source.content.textContent : source.textContent;
    }
    area.focus();
  }

  function onKey(event) {
    var form = voteForm();
    var target = event.target;
    // Ctrl/Cmd+Enter in a text field sends its form: the next message, or the vote with its rewrite.
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && target.closest && target.closest("#chat form")) {
      event.preventDefault();
      target.closest("form").requestSubmit();
      return;
    }
    if (isTyping(target) || event.altKey || event.ctrlKey || event.metaKey || !form) return;
    var digit = digitOf(event);
    if (digit && digit <= 8) {
      var input = form.querySelector('input[name="choice"][data-key="' + digit + '"]');
      if (input) { input.checked = true; input.focus(); event.preventDefault(); }
    } else if (event.key === "Enter") {
      if (form.querySelector('input[name="choice"]:checked')) { event.preventDefault(); form.requestSubmit(); }
    } else if (event.key === "e") {
      event.preventDefault();
      openEdit(form);
    }
  }

  function settle() {
    var root = chat();
    if (!root) return;
    var state = (root.querySelector("[data-turn-state]") || {}).dataset;
    var now = state ? state.turnState : "";
    if (now === "ready" && seenState !== "ready") shownAt = performance.now();
    seenState = now;
    if (now !== "ready") {
      var composer = root.querySelector("[data-composer]");
      if (composer && document.activeElement === document.body) composer.focus();
    }
  }

  document.addEventListener("keydown", onKey);
  document.addEventListener("submit", function (event) {
    var field = event.target.querySelector && event.target.querySelector("[data-time-spent]");
    if (field) field.value = String(Math.round(performance.now() - shownAt));
  }, true);
  document.addEventListener("htmx:afterSettle", settle);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", settle);
  else settle();
})();
