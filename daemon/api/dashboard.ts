/**
 * The seller's web dashboard: one self-contained page (inline CSS and script, no
 * external resources, so it works on an offline router) that polls `/api/status`
 * and `/api/earnings` and renders them with `textContent` only. Served with a
 * Content-Security-Policy that admits exactly this page's script and style (by hash).
 */
import { createHash } from 'node:crypto'

/** How often the page polls the API. */
export const DASHBOARD_POLL_MS = 3000

const STYLE = String.raw`
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --ok:#12805c; --warn:#b54708; --bad:#b42318; --accent:#3b5bdb; }
@media (prefers-color-scheme: dark) { :root { --bg:#11141a; --card:#191d25; --ink:#e6e8ec; --muted:#98a2b3; --line:#2a303b; --ok:#3ccb8f; --warn:#f79009; --bad:#f97066; --accent:#8ea2ff; } }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
header { display:flex; align-items:center; gap:12px; padding:16px 24px; border-bottom:1px solid var(--line); background:var(--card); flex-wrap:wrap; }
header h1 { font-size:20px; margin:0; letter-spacing:.2px; }
header h1 span { color:var(--accent); }
.pill { padding:3px 10px; border-radius:999px; font-size:13px; font-weight:600; background:var(--line); }
.pill.ok { background:color-mix(in srgb, var(--ok) 18%, transparent); color:var(--ok); }
.pill.off { background:color-mix(in srgb, var(--warn) 18%, transparent); color:var(--warn); }
.pill.bad { background:color-mix(in srgb, var(--bad) 18%, transparent); color:var(--bad); }
#updated { margin-left:auto; color:var(--muted); font-size:13px; }
main { max-width:1100px; margin:0 auto; padding:20px 24px 40px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(160px,1fr)); gap:12px; margin-bottom:20px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; min-width:0; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.6px; }
.card .value { font-size:21px; font-weight:650; margin-top:2px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.card .value.id { font-size:16px; font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; padding:3px 0 2px; }
.card .sub { color:var(--muted); font-size:12px; overflow-wrap:anywhere; }
.card .sub.id { font-size:11px; font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; margin-bottom:16px; overflow-x:auto; }
section h2 { font-size:15px; margin:0 0 10px; }
table { width:100%; border-collapse:collapse; font-size:14px; }
th { text-align:left; color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.5px; padding:6px 8px; border-bottom:1px solid var(--line); }
td { padding:7px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
.mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
.empty { color:var(--muted); font-style:italic; padding:6px 8px; }
.warn { color:var(--warn); }
#error[hidden] { display:none; }
.pill:empty { display:none; }
#error { background:color-mix(in srgb, var(--bad) 14%, var(--card)); color:var(--bad); border:1px solid var(--bad); border-radius:10px; padding:10px 14px; margin-bottom:16px; }
footer { color:var(--muted); font-size:12px; line-height:1.7; }
footer .mono { font-size:12px; }
`

const SCRIPT = String.raw`
"use strict";
var POLL_MS = __POLL_MS__;
var NATIVE = "0x0000000000000000000000000000000000000000";
var REASONS = { "available": "sharing", "outside-schedule": "outside sharing hours", "monthly-cap-reached": "monthly cap reached", "link-busy": "uplink busy", "limit-reached": "bandwidth limit reached", "unknown-capacity": "capacity unknown" };
function $(id) { return document.getElementById(id); }
function el(tag, text, cls) { var e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; }
function short(s, n) { s = String(s); n = n || 6; return s.length <= 2 * n + 3 ? s : s.slice(0, n + 2) + "\u2026" + s.slice(-n); }
function units(value, decimals) {
  var v = BigInt(value); var neg = v < 0n; if (neg) v = -v;
  var base = 10n ** BigInt(decimals); var whole = v / base; var digits = (v % base).toString().padStart(decimals, "0");
  var keep = whole > 0n ? 6 : Math.max(6, digits.search(/[1-9]/) + 3);
  var frac = digits.slice(0, keep).replace(/0+$/, "");
  return (neg ? "-" : "") + whole.toLocaleString("en-US") + (frac ? "." + frac : "");
}
function tokenName(token) { return token.toLowerCase() === NATIVE ? "native coin" : short(token, 4); }
function amount(value, token) { return token.toLowerCase() === NATIVE ? units(value, 18) : BigInt(value).toLocaleString("en-US") + " units"; }
function bytes(value) {
  var b = Number(value); var u = ["B", "KiB", "MiB", "GiB", "TiB"]; var i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b.toFixed(0) : b.toFixed(b < 10 ? 2 : 1)) + " " + u[i];
}
function mbps(bps) { return (bps / 1e6).toFixed(bps >= 1e8 ? 0 : 1) + " Mbit/s"; }
function ago(ms) {
  var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago"; if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago"; return new Date(ms).toLocaleDateString();
}
function table(host, heads, rows, emptyText) {
  host.replaceChildren();
  if (rows.length === 0) { host.appendChild(el("div", emptyText, "empty")); return; }
  var t = el("table"); var hr = el("tr");
  heads.forEach(function (h) { hr.appendChild(el("th", h.label, h.num ? "num" : "")); });
  t.appendChild(el("thead")).appendChild(hr);
  var tb = el("tbody");
  rows.forEach(function (r) {
    var tr = el("tr");
    r.forEach(function (cell, i) {
      var td = el("td", cell && cell.text !== undefined ? cell.text : cell, (heads[i].num ? "num " : "") + (cell && cell.cls ? cell.cls : ""));
      if (cell && cell.title) td.title = cell.title;
      tr.appendChild(td);
    });
    tb.appendChild(tr);
  });
  t.appendChild(tb); host.appendChild(t);
}
function card(label, value, sub, id, isId) {
  var c = el("div", null, "card"); if (id) c.id = id;
  c.appendChild(el("div", label, "label")); c.appendChild(el("div", value, isId ? "value id" : "value"));
  if (sub) c.appendChild(el("div", sub, isId ? "sub id" : "sub"));
  return c;
}
function render(status, earnings) {
  var pill = $("sharing");
  var sharing = status.spareUplinkBps > 0;
  pill.textContent = sharing ? "Sharing" : "Not sharing: " + (REASONS[status.sharing] || status.sharing);
  pill.className = "pill " + (sharing ? "ok" : "off");
  var main = earnings.tokens[0];
  var cards = $("cards"); cards.replaceChildren(
    card("Peer id", status.peerId.slice(0, 4) + "\u2026" + status.peerId.slice(-6), status.peerId, "peer", true),
    card("Payout address", short(status.payout, 4), status.payout, "payout", true),
    card("Spare uplink", mbps(status.spareUplinkBps), REASONS[status.sharing] || status.sharing),
    card("Live sessions", status.sessions.length, status.sessions.length === 1 ? "buyer connected" : "buyers connected"),
    card("Earned", main ? amount(main.settled, main.token) : "0", (main ? tokenName(main.token) + ", " : "") + "settled on chain"),
    card("Owed", main ? amount(main.owed, main.token) : "0", earnings.lastSettlement ? "not settled yet; last settlement " + ago(earnings.lastSettlement.confirmedAt) : "not settled yet")
  );
  table($("earnings"), [{ label: "Token" }, { label: "Settled", num: true }, { label: "Owed", num: true }, { label: "At risk (live, unpaid)", num: true }, { label: "Channels", num: true }],
    earnings.tokens.map(function (t) { return [{ text: tokenName(t.token), title: t.token, cls: "mono" }, amount(t.settled, t.token), amount(t.owed, t.token), amount(t.unpaidLive, t.token), t.channels]; }),
    "No tokens configured.");
  table($("sessions"), [{ label: "Buyer" }, { label: "Channel" }, { label: "Relayed", num: true }, { label: "Paid", num: true }, { label: "Unpaid", num: true }, { label: "State" }],
    status.sessions.map(function (s) {
      var token = s.token || NATIVE;
      return [{ text: short(s.peer, 6), title: s.peer, cls: "mono" }, { text: short(s.channelId, 4), title: s.channelId, cls: "mono" }, bytes(s.deliveredBytes), amount(s.paidAmount, token), amount(s.unpaidAmount, token), s.starved ? { text: "waiting for payment", cls: "warn" } : "active"];
    }),
    "No buyer connected right now.");
  table($("batches"), [{ label: "When" }, { label: "Transaction" }, { label: "Vouchers", num: true }, { label: "Paid", num: true }, { label: "Gas", num: true }, { label: "Status" }],
    earnings.batches.map(function (b) {
      var paid = b.paid.map(function (p) { return amount(p.amount, p.token) + (p.token.toLowerCase() === NATIVE ? "" : " " + tokenName(p.token)); }).join(", ") || "0";
      return [{ text: ago(b.confirmedAt), title: new Date(b.confirmedAt).toString() }, { text: short(b.txHash, 6), title: b.txHash, cls: "mono" }, b.vouchers + (b.skipped ? " (+" + b.skipped + " skipped)" : ""), paid, Number(b.gasUsed).toLocaleString("en-US"), b.status === "success" ? "settled" : { text: b.status, cls: "warn" }];
    }),
    earnings.inFlight.length ? earnings.inFlight.length + " batch(es) waiting to be mined." : "No settlement yet. Vouchers are settled in batches on chain.");
  $("inflight").textContent = earnings.inFlight.length ? earnings.inFlight.length + " batch(es) in flight" : "";
  var f = $("facts"); f.replaceChildren();
  [["chain", String(status.chainId)], ["contract", status.contract], ["hot key (pays gas)", status.hotAddress], ["gas spent", units(earnings.gasSpent, 18) + " native coin over " + earnings.batchCount + " batch(es)"], ["voucher check", status.verifierBackend]]
    .concat(status.addresses.map(function (a) { return ["listening", a]; }))
    .forEach(function (kv) { var d = el("div"); d.appendChild(el("span", kv[0] + ": ")); d.appendChild(el("span", kv[1], "mono")); f.appendChild(d); });
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}
var lastShown = null;
function fail(message) { var e = $("error"); e.textContent = message; e.hidden = false; $("sharing").textContent = "Unreachable"; $("sharing").className = "pill bad"; }
async function getJson(path) {
  var res = await fetch(path, { cache: "no-store" });
  var body = await res.json();
  if (!res.ok) throw new Error((body && body.message) || ("HTTP " + res.status));
  return body;
}
async function poll() {
  try {
    var both = await Promise.all([getJson("/api/status"), getJson("/api/earnings")]);
    $("error").hidden = true;
    render(both[0], both[1]);
    lastShown = new Date();
    document.body.dataset.loaded = "true";
  } catch (err) {
    fail("Cannot reach the spareband daemon (" + err.message + ")" + (lastShown ? "; the figures below are from " + lastShown.toLocaleTimeString() : "") + ". Is it running? Start it with: spareband start");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
poll();
`.replace('__POLL_MS__', String(DASHBOARD_POLL_MS))

const BODY = `
<header>
  <h1><span>spare</span>band</h1>
  <span id="sharing" class="pill">Loading…</span>
  <span id="inflight" class="pill"></span>
  <span id="updated"></span>
</header>
<main>
  <div id="error" role="alert" hidden></div>
  <div id="cards" class="cards"></div>
  <section><h2>Earnings</h2><div id="earnings"><div class="empty">Loading…</div></div></section>
  <section><h2>Live sessions</h2><div id="sessions"><div class="empty">Loading…</div></div></section>
  <section><h2>Recent settlements</h2><div id="batches"><div class="empty">Loading…</div></div></section>
  <footer id="facts"></footer>
</main>`

function sha256 (text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`
}

/** The dashboard page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>spareband</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`

/** Response headers of the page: a CSP that admits only its own inline script and style. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': `default-src 'none'; script-src ${sha256(SCRIPT)}; style-src ${sha256(STYLE)}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  'X-Frame-Options': 'DENY'
}
