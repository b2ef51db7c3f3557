// The customer's touch screen. It renders kioskd's screen snapshots (one WebSocket, /ws) and
// sends back begin / answer / cancel / touch. Every word comes from the message catalogue
// (/messages.json, transactions/messages.json): nothing a customer reads is written here.
// No framework, no build step: this file is what Chromium runs.
"use strict";

const ATTRACT_AFTER_MS = 45000;   // home screen untouched this long: the attract screen with notices
const RESULT_FOR_MS = 30000;      // a finished visit's result stays this long unless dismissed
const WARN_BEFORE_S = 15;         // the walk-away countdown shows this long before the timeout
const TOUCH_EVERY_MS = 2000;      // keypad presses tell kioskd "still here" at most this often
const CASH_KEYS = new Set(["insert_cash", "paid_so_far", "bill_too_large", "cash_rejected", "note_returned"]);
const CASH_WARN_KEYS = new Set(["bill_too_large", "cash_rejected", "note_returned"]);
const QUIET_KEYS = new Set(["insert_cash", "paid_so_far", "crediting", "dispensing_card", "take_card",
  "confirm_number", "sms_code_sent"]);

const ui = {
  words: null, lang: "zh", large: false,
  ws: null, connected: false, everConnected: false, backoff: 300,
  snap: null, snapAt: 0, cashAt: 0, cashShown: -1,
  entry: "", entryFor: null, readback: false,
  dismissed: null, lastTouch: Date.now(), lastTouchSent: 0, attract: false,
  toast: null, toastTimer: null,
};

// -- words ------------------------------------------------------------------------------
function t(key, fmt, lang) {
  const entry = ui.words && ui.words[key];
  if (!entry) { console.warn("no message", key); return key; }
  const l = lang || ui.lang;
  return entry[l].replace(/\{(\w+)\}/g, (m, k) => (fmt && k in fmt ? inLang(fmt[k], l) : m));
}
function inLang(value, lang) { // a value with words of its own (a plan's names): {zh, en}
  return value !== null && typeof value === "object" ? String(value[lang || ui.lang] || value.zh) : String(value);
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function yuan(fen) { // integer fen to "50" / "0.50" without floats
  const f = Math.abs(fen), s = `${Math.floor(f / 100)}.${String(f % 100).padStart(2, "0")}`;
  return (fen < 0 ? "-" : "") + (s.endsWith(".00") ? s.slice(0, -3) : s);
}
function coin(fen) { return fen < 100 ? t("ui_jiao", {amount: fen / 10}) : t("ui_yuan", {amount: yuan(fen)}); }
function groupPhone(p) { return p.length === 11 ? `${p.slice(0, 3)} ${p.slice(3, 7)} ${p.slice(7)}` : p; }
function optionLabel(prompt, value, labels) {
  if (labels && labels[value]) return inLang(labels[value]);
  if (prompt === "choose_amount") return t("ui_yuan", {amount: yuan(parseInt(value, 10))});
  if (prompt === "choose_card") return t("ui_card_face", {amount: yuan(parseInt(value, 10))});
  if (prompt === "choose_month" && /^\d{4}-\d{2}$/.test(value)) {
    const [year, month] = value.split("-");
    return t("ui_month", {year, month: parseInt(month, 10)});
  }
  if (ui.words["option_" + value]) return t("option_" + value);
  return value; // months (2026-10), numbers: shown as they are
}

async function loadWords() {
  try {
    const r = await fetch("/messages.json", {cache: "no-store"});
    ui.words = await r.json();
    localStorage.setItem("kiosk-words", JSON.stringify(ui.words));
  } catch (e) { // kioskd restarting while the page loads: the last catalogue seen still speaks
    ui.words = JSON.parse(localStorage.getItem("kiosk-words") || "null");
    if (!ui.words) { setTimeout(loadWords, 1000); return; }
  }
  render();
}

// -- the socket ---------------------------------------------------------------------------
function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ui.ws = ws;
  ws.onopen = () => { ui.connected = true; ui.everConnected = true; ui.backoff = 300; render(); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "screen") onSnapshot(msg);
    else if (msg.type === "refused") { console.warn("kioskd refused:", msg.error); showToast("ui_refused"); }
  };
  ws.onclose = () => {
    ui.connected = false; ui.ws = null; render();
    setTimeout(connect, ui.backoff);
    ui.backoff = Math.min(ui.backoff * 2, 2000);
  };
}
function send(obj) {
  if (ui.ws && ui.connected) ui.ws.send(JSON.stringify(obj));
}

function freshCustomer() { // the next customer: Chinese first, the hall's text size ([ui] large_text)
  ui.lang = "zh"; ui.large = !!(ui.snap && ui.snap.large_text);
}

function onSnapshot(s) {
  const old = ui.snap;
  ui.snap = s; ui.snapAt = Date.now();
  const v = s.visit;
  if ((!old || old.large_text !== s.large_text) && !(v && v.busy)) ui.large = !!s.large_text; // reloaded
  if (v) {
    // the walk-away time restarts with each cash message (a coin): known by its number, since the
    // snapshot carries only the visit's last messages
    const cashIdx = lastIndex(v.shown, (m) => CASH_KEYS.has(m.key)), cashN = cashIdx < 0 ? -1 : v.shown[cashIdx].n;
    if (cashN !== ui.cashShown || !old || !old.visit || old.visit.n !== v.n) { ui.cashShown = cashN; ui.cashAt = Date.now(); }
    const q = v.question;
    if (!q || ui.entryFor !== `${s.session}:${v.n}:${q.n}`) {
      ui.entry = ""; ui.readback = false; ui.entryFor = q ? `${s.session}:${v.n}:${q.n}` : null;
    }
    if (v.busy) ui.attract = false;
  }
  document.body.dataset.seq = s.seq;
  render();
}
function lastIndex(a, pred) { for (let i = a.length - 1; i >= 0; i--) if (pred(a[i])) return i; return -1; }

// -- what to show -------------------------------------------------------------------------
function screenName() {
  if (!ui.words) return "loading";
  if (!ui.connected || !ui.snap) return "wait";
  const s = ui.snap, v = s.visit;
  if (v && v.busy) {
    const q = v.question;
    if (q && q.options) return "default" in q ? "decide" : "choose";
    if (q && q.kind) return q.kind === "phone" && ui.readback ? "readback" : "keypad";
    const c = lastIndex(v.shown, (m) => CASH_KEYS.has(m.key));
    if (c >= 0 && !v.shown.slice(c + 1).some((m) => !CASH_KEYS.has(m.key))) return "cash";
    return "progress";
  }
  if (v && v.last && ui.dismissed !== `${s.session}:${v.n}` && Date.now() - ui.snapAt < RESULT_FOR_MS) return "result";
  if (s.enrolment) return "enrolling";
  if (s.mode === "maintenance") return "maintenance";
  if (s.mode === "out_of_service") return "out_of_service";
  if (ui.attract) return "attract";
  return "home";
}

function header() {
  const l = (lang, key) => `<button class="seg${ui.lang === lang ? " on" : ""}" data-action="lang" data-value="${lang}">${esc(t(key, null, lang))}</button>`;
  return `<header><div class="brand">${esc(t("ui_title"))}<small>${esc(ui.snap ? ui.snap.kiosk : "")}</small></div>
    <div class="tools">${l("zh", "ui_lang_zh")}${l("en", "ui_lang_en")}
    <button class="seg${ui.large ? " on" : ""}" data-action="large">${esc(t(ui.large ? "ui_normal_text" : "ui_large_text"))}</button></div></header>`;
}

function lastMessage(v, skipQuiet) {
  for (let i = v.shown.length - 1; i >= 0; i--) {
    const m = v.shown[i];
    if (skipQuiet && (CASH_KEYS.has(m.key) || m.key.startsWith("welcome_"))) continue;
    return m;
  }
  return null;
}
function bothLangs(key) {
  const other = ui.lang === "zh" ? "en" : "zh";
  return `<h1>${esc(t(key))}</h1><h2 class="also" lang="${other === "zh" ? "zh-CN" : "en"}">${esc(t(key, null, other))}</h2>`;
}
function serviceTitle(v) { return v && v.service ? t("service_" + v.service) : ""; }

function cancelButton() {
  return `<button class="cancel" data-action="cancel">${esc(t("option_cancel"))}</button>`;
}

function countdown() {
  const s = ui.snap, v = s && s.visit;
  if (!v || !v.busy) return "";
  let left = null, key = null;
  if (v.question && "default" in v.question) return ""; // the decide screen shows its own time
  if (v.question) { left = v.question.idle_left_s - (Date.now() - ui.snapAt) / 1000; key = "ui_countdown"; }
  else if (screenName() === "cash") { left = s.cash.idle_timeout_s - (Date.now() - ui.cashAt) / 1000; key = "ui_countdown_cash"; }
  if (left === null || left > WARN_BEFORE_S) return "";
  const secs = Math.max(0, Math.ceil(left));
  const more = v.question ? `<button class="primary" data-action="touch">${esc(t("ui_more_time"))}</button>` : "";
  return `<div class="countdown" role="alert" data-seconds="${secs}"><span>${esc(t(key, {seconds: secs}))}</span>${more}</div>`;
}

function body(name) {
  const s = ui.snap, v = s && s.visit;
  switch (name) {
    case "loading":
      return `<main class="wait" data-screen="loading"><div class="spinner"></div></main>`;
    case "wait":  // both languages at once: whoever stands there reads one of them
      return `<main class="wait" data-screen="wait"><div class="spinner"></div>
        <h1>${esc(t("ui_please_wait", null, "zh"))}</h1><h2>${esc(t("ui_please_wait", null, "en"))}</h2>
        ${ui.everConnected ? `<p>${esc(t("ui_reconnecting", null, "zh"))}<br>${esc(t("ui_reconnecting", null, "en"))}</p>` : ""}</main>`;
    case "enrolling": { // first boot, before the hall has given this kiosk its certificate: both languages
      const e = s.enrolment, both = (key, fmt) => `${esc(t(key, fmt, "zh"))}<br>${esc(t(key, fmt, "en"))}`;
      const retry = e.state === "retrying" && e.retry_at ? `<p class="retry">${both("ui_enrol_retry", {attempt: e.attempt, at: e.retry_at})}</p>` : "";
      return `<main class="wait" data-screen="enrolling" data-attempt="${e.attempt}" data-state="${esc(e.state)}"><div class="spinner"></div>
        <h1>${esc(t("ui_enrolling", null, "zh"))}</h1><h2>${esc(t("ui_enrolling", null, "en"))}</h2>
        ${retry}<p>${both("ui_enrol_closed")}</p></main>`;
    }
    case "home": {
      const tiles = Object.entries(s.services).map(([name, ok]) =>
        `<button class="tile${ok ? "" : " off"}" data-action="begin" data-value="${name}"${ok ? "" : " disabled"}>
          <span class="tname">${esc(t("service_" + name))}</span>${ok ? "" : `<span class="tnote">${esc(t("ui_unavailable"))}</span>`}</button>`).join("");
      return `<main data-screen="home"><h1 class="welcome">${esc(t("welcome"))}</h1><div class="tiles">${tiles}</div>${notices(s, true)}</main>`;
    }
    case "attract":
      return `<main class="attract" data-screen="attract" data-action="wake"><h1>${esc(t("ui_touch_to_start"))}</h1>
        ${notices(s, false)}</main>`;
    case "maintenance":  // nothing to tap: the other language alongside, for whoever stands there
      return `<main class="closed" data-screen="maintenance">${bothLangs("ui_maintenance")}${notices(s, false)}</main>`;
    case "out_of_service":
      return `<main class="closed" data-screen="out_of_service">${bothLangs("out_of_service")}${notices(s, false)}</main>`;
    case "choose": {
      const q = v.question, m = lastMessage(v, true);
      const note = m && m.key !== q.prompt ? `<p class="note">${esc(t(m.key, m.fmt))}</p>` : "";
      const opts = q.options.map((o) => `<button class="option" data-action="answer" data-value="${esc(o)}">${esc(optionLabel(q.prompt, o, q.labels))}</button>`).join("");
      return `<main data-screen="choose" data-prompt="${esc(q.prompt)}"><div class="service">${esc(serviceTitle(v))}</div>${note}
        <h1>${esc(t(q.prompt, q.fmt))}</h1><div class="options n${q.options.length}">${opts}</div>
        <footer>${cancelButton()}</footer></main>`;
    }
    case "decide": { // a question a device cannot wait on (a note in escrow): its own time, then its default
      const q = v.question;
      const secs = Math.max(0, Math.ceil(q.idle_left_s - (Date.now() - ui.snapAt) / 1000));
      const opts = q.options.map((o) => `<button class="${o === q.default ? "secondary" : "primary"} big" data-action="answer" data-value="${esc(o)}">${esc(optionLabel(q.prompt, o, q.labels))}</button>`).join("");
      return `<main data-screen="decide" data-prompt="${esc(q.prompt)}"><div class="service">${esc(serviceTitle(v))}</div>
        <h1 class="question">${esc(t(q.prompt, q.fmt))}</h1><div class="row center">${opts}</div>
        <p class="auto" data-seconds="${secs}">${esc(t("ui_default_in", {seconds: secs, choice: optionLabel(q.prompt, q.default, q.labels)}))}</p></main>`;
    }
    case "keypad": {
      const q = v.question, m = lastMessage(v, true);
      const note = m && m.key !== q.prompt ? `<p class="note${/invalid|wrong/.test(m.key) ? " warn" : ""}">${esc(t(m.key, m.fmt))}</p>` : "";
      const phone = q.kind === "phone";
      const max = phone ? 11 : 6;
      const shownEntry = phone ? groupPhone(ui.entry) : "●".repeat(ui.entry.length);
      const hint = phone ? "ui_phone_digits" : q.kind === "sms_code" ? "ui_sms_code_hint" : "ui_password_hint";
      const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map((d) => `<button class="key" data-action="digit" data-value="${d}">${d}</button>`).join("")
        + `<button class="key fn" data-action="clear">${esc(t("ui_clear"))}</button><button class="key" data-action="digit" data-value="0">0</button>`
        + `<button class="key fn" data-action="backspace">${esc(t("ui_backspace"))}</button>`;
      const ready = phone ? ui.entry.length === 11 : ui.entry.length >= 4;
      const go = phone ? `<button class="primary next" data-action="readback"${ready ? "" : " disabled"}>${esc(t("ui_next"))}</button>`
        : `<button class="primary next" data-action="submit"${ready ? "" : " disabled"}>${esc(t("option_confirm"))}</button>`;
      return `<main class="split" data-screen="keypad" data-kind="${esc(q.kind)}"><section class="left"><div class="service">${esc(serviceTitle(v))}</div>${note}
        <h1>${esc(t(q.prompt, q.fmt))}</h1><div class="entry" data-max="${max}" aria-label="entry">${esc(shownEntry) || `<span class="hint">${esc(t(hint))}</span>`}</div>
        <div class="row">${cancelButton()}${go}</div></section><section class="keypad">${keys}</section></main>`;
    }
    case "readback":
      return `<main data-screen="readback"><div class="service">${esc(serviceTitle(v))}</div><h1>${esc(t("ui_check_number"))}</h1>
        <div class="readback">${esc(groupPhone(ui.entry))}</div>
        <div class="row center"><button class="secondary" data-action="edit">${esc(t("ui_edit"))}</button>
        <button class="primary" data-action="submit">${esc(t("option_confirm"))}</button></div><footer>${cancelButton()}</footer></main>`;
    case "cash": {
      const cashMsgs = v.shown.filter((m) => m.key === "insert_cash" || m.key === "paid_so_far");
      const last = cashMsgs[cashMsgs.length - 1] || {fmt: {}};
      const due = last.fmt.due || "0.00", paid = last.fmt.paid || "0.00";
      const tail = v.shown[v.shown.length - 1];
      const warn = tail && CASH_WARN_KEYS.has(tail.key) ? `<p class="note warn">${esc(t(tail.key, tail.fmt))}</p>` : "";
      const dens = s.cash.denominations;
      const coins = dens.filter((d) => d <= 100).map(coin).join(" · ");
      const notes = dens.filter((d) => d >= 100).map((d) => t("ui_yuan", {amount: yuan(d)})).join(" · ");
      const left = Math.max(0, fenOf(due) - fenOf(paid));
      return `<main data-screen="cash"><div class="service">${esc(serviceTitle(v))}</div>
        <h1>${esc(t("insert_cash", {due, paid}))}</h1>
        <div class="amounts"><div><span>${esc(t("ui_due"))}</span><b data-amount="due">${esc(t("ui_yuan", {amount: due}))}</b></div>
          <div class="paid"><span>${esc(t("ui_paid"))}</span><b data-amount="paid">${esc(t("ui_yuan", {amount: paid}))}</b></div>
          <div><span>${esc(t("ui_still_due"))}</span><b data-amount="left">${esc(t("ui_yuan", {amount: yuan(left)}))}</b></div></div>
        ${warn}<p class="accepted">${esc(t("ui_accepted"))} ${esc(t("ui_notes"))} ${esc(notes)} ; ${esc(t("ui_coins"))} ${esc(coins)}</p>
        <footer>${cancelButton()}</footer></main>`;
    }
    case "progress": {
      const m = lastMessage(v, false);
      const text = m && !m.key.startsWith("welcome_") ? t(m.key, m.fmt) : t("ui_working");
      return `<main class="wait" data-screen="progress" data-key="${esc(m ? m.key : "")}"><div class="service">${esc(serviceTitle(v))}</div>
        <div class="spinner"></div><h1>${esc(text)}</h1></main>`;
    }
    case "result": {
      const last = v.last, ok = last.state === "done";
      const msgs = v.shown.filter((m) => !QUIET_KEYS.has(m.key) && !m.key.startsWith("welcome_") && m.key !== "voucher_issued" && !CASH_KEYS.has(m.key)).slice(-4);
      const vouchers = v.shown.filter((m) => m.key === "voucher_issued");
      const vbox = vouchers.map((m) => `<div class="voucher" data-code="${esc(m.fmt.code)}"><b>${esc(t("ui_voucher", m.fmt))}</b></div>`).join("");
      const ref = last.txn ? `<p class="ref">${esc(t("ui_txn_ref", {txn: last.txn}))}</p>` : "";
      return `<main class="result ${ok ? "ok" : "bad"}" data-screen="result" data-state="${esc(last.state)}"><div class="service">${esc(serviceTitle(v))}</div>
        <h1>${esc(t(ok ? "ui_done_title" : "ui_failed_title"))}</h1>
        ${vbox}${msgs.map((m) => `<p class="msg" data-key="${esc(m.key)}">${esc(t(m.key, m.fmt))}</p>`).join("")}${ref}
        <footer><button class="primary" data-action="home">${esc(t("ui_home"))}</button></footer></main>`;
    }
  }
  return "";
}
function fenOf(y) { const [a, b = "0"] = String(y).split("."); return parseInt(a, 10) * 100 + parseInt((b + "0").slice(0, 2), 10); }

function notices(s, small) {
  if (!s.notices || !s.notices.length) return "";
  return `<aside class="notices${small ? " small" : ""}"><h2>${esc(t("ui_notices"))}</h2><ul>${s.notices.map((n) => `<li>${esc(n)}</li>`).join("")}</ul></aside>`;
}

function showToast(key) {
  ui.toast = key; clearTimeout(ui.toastTimer);
  ui.toastTimer = setTimeout(() => { ui.toast = null; render(); }, 3000);
  render();
}

function render() {
  const name = screenName();
  document.documentElement.classList.toggle("large", ui.large);
  document.documentElement.lang = ui.lang === "zh" ? "zh-CN" : "en";
  document.body.dataset.screen = name;
  const toast = ui.toast ? `<div class="toast" role="status">${esc(t(ui.toast))}</div>` : "";
  const html = (ui.words ? header() : "") + body(name) + (ui.snap && ui.connected ? countdown() : "") + toast;
  if (html !== ui.html) { ui.html = html; document.getElementById("app").innerHTML = html; } // a finger mid-press keeps its button
}

// -- touch --------------------------------------------------------------------------------
function stillHere() {
  ui.lastTouch = Date.now();
  if (Date.now() - ui.lastTouchSent > TOUCH_EVERY_MS) { ui.lastTouchSent = Date.now(); send({type: "touch"}); }
}

document.addEventListener("click", (ev) => {
  const el = ev.target.closest("[data-action]");
  ui.lastTouch = Date.now();
  if (!el || el.disabled) return;
  const v = ui.snap && ui.snap.visit, q = v && v.question, value = el.dataset.value;
  switch (el.dataset.action) {
    case "lang": ui.lang = value; break;
    case "large": ui.large = !ui.large; break;
    case "wake": ui.attract = false; break;
    case "begin": ui.dismissed = null; send({type: "begin", service: value}); break;
    case "answer": if (q) send({type: "answer", n: q.n, value}); break;
    case "digit":
      if (q && ui.entry.length < (q.kind === "phone" ? 11 : 6)) ui.entry += value;
      stillHere(); break;
    case "backspace": ui.entry = ui.entry.slice(0, -1); stillHere(); break;
    case "clear": ui.entry = ""; stillHere(); break;
    case "readback": ui.readback = true; stillHere(); break;
    case "edit": ui.readback = false; stillHere(); break;
    case "submit": if (q) send({type: "answer", n: q.n, value: ui.entry}); break;
    case "cancel": send({type: "cancel"}); break;
    case "touch": ui.lastTouchSent = Date.now(); send({type: "touch"}); break;
    case "home":
      if (v) ui.dismissed = `${ui.snap.session}:${v.n}`;
      freshCustomer(); break;
  }
  render();
});

// kiosk mode: no context menu, no pinch or ctrl-zoom, no text selection, no keyboard way out
document.addEventListener("contextmenu", (e) => e.preventDefault());
document.addEventListener("selectstart", (e) => e.preventDefault());
document.addEventListener("gesturestart", (e) => e.preventDefault());
document.addEventListener("wheel", (e) => { if (e.ctrlKey) e.preventDefault(); }, {passive: false});
document.addEventListener("touchmove", (e) => { if (e.touches.length > 1) e.preventDefault(); }, {passive: false});
document.addEventListener("keydown", (e) => { if (e.ctrlKey || e.altKey || e.metaKey || /^F\d+$/.test(e.key)) e.preventDefault(); });

setInterval(() => {  // countdowns, the attract screen, the result screen's time-out
  if (!ui.snap) return;
  const name = screenName();
  if (name === "home" && Date.now() - ui.lastTouch > ATTRACT_AFTER_MS) { ui.attract = true; freshCustomer(); }
  if (name !== "home" && name !== "attract") ui.lastTouch = Date.now();
  render();
}, 1000);

render();
loadWords();
connect();
