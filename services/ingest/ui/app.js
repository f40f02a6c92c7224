// The mailstream operator dashboard. Every figure on the page comes from the ingest HTTP API, asked with the
// API key the operator signed in with (kept in sessionStorage: gone when the tab closes). Text from the API is
// only ever set as textContent, never parsed as HTML. No framework, no build step.
"use strict";

const KEY = "mailstream.api_key";
const REFRESH_MS = 5000; // overview and queues; the message table refreshes when asked
const ROW_METRICS_MS = 30000;
const LIVE = ["scheduled", "ready", "in_delivery", "suspended", "deferred"]; // not final: still queued

// Queue operations: the route each takes and the fields it uses. suspend, resume and bounce are the controls'
// own routes; the rest go to POST /api/queue/operations (a QueueOperation, answered with its
// QueueOperationResult) and are offered only when this ingest's OpenAPI document lists that route
// (`probeOperations`), so an older ingest shows just the controls.
const QUEUE_OPERATIONS = "/api/queue/operations";
const OPERATIONS = {
  suspend: { method: "POST", path: "/api/admin/suspend", fields: ["reason", "duration"],
    help: "Hold the scope's queued mail (new mail waits too) until resumed or the duration ends." },
  resume: { method: "DELETE", path: "/api/admin/suspend", fields: [],
    help: "Lift a suspension on exactly this scope." },
  bounce: { method: "POST", path: "/api/admin/bounce", fields: ["reason", "duration"], requires: ["reason"],
    help: "Cancel the scope's queued mail, and new mail that matches for the duration (default 5 minutes)." },
  rebind: { method: "POST", path: QUEUE_OPERATIONS, fields: ["to_queue", "to_pool", "reason"], optional: true,
    help: "Move the scope's queued mail to another queue of the same tenant, or to another egress pool." },
  retry: { method: "POST", path: QUEUE_OPERATIONS, fields: ["reason"], optional: true,
    help: "Make the scope's deferred and scheduled mail due now." },
  cancel: { method: "POST", path: QUEUE_OPERATIONS, fields: ["reason"], optional: true,
    help: "Cancel the scope's queued mail now (each ends cancelled, with a report)." },
  purge: { method: "POST", path: QUEUE_OPERATIONS, fields: ["reason"], optional: true,
    help: "Remove the scope's queued mail without bounce reports." },
  set_priority: { method: "POST", path: QUEUE_OPERATIONS, fields: ["priority", "reason"], requires: ["priority"],
    optional: true, help: "Set the priority (0-10, higher first) of the scope's queued mail." },
};

// The body of POST /api/queue/operations: a scope (or message ids) and the operation's metadata.
function operationBody(name, scope, extra) {
  const body = { operation: name, metadata: {} };
  if (scope.message_ids) body.message_ids = scope.message_ids;
  for (const [field, key] of [["queue", "queue_name"], ["tenant", "tenant"], ["campaign", "campaign"],
    ["domain", "domain"]]) if (scope[field]) body[key] = scope[field];
  if (extra.reason) body.reason = extra.reason;
  if (extra.to_queue) body.metadata.queue = extra.to_queue;
  if (extra.to_pool) body.metadata.egress_pool = extra.to_pool;
  if (extra.priority !== undefined && extra.priority !== "") body.metadata.priority = extra.priority;
  return body;
}

const $ = (id) => document.getElementById(id);
const state = { cursors: [null], page: 0, next: null, filters: null, timer: null, detail: null, rowMetrics: new Map(),
  offered: new Set() };

// ---- the API ----

class ApiError extends Error {
  constructor(status, body) {
    let text = `HTTP ${status}`;
    if (body && typeof body === "object" && body.title) {
      text = `${body.title} (${status})${body.detail ? ": " + body.detail : ""}`;
      for (const e of body.errors || []) text += ` [${e.field}: ${e.message}]`;
    }
    super(text);
    this.status = status;
  }
}

async function api(method, path, params, body) {
  const key = sessionStorage.getItem(KEY);
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== null && v !== undefined && v !== "") url.searchParams.append(name, String(v));
    }
  }
  const headers = { Accept: "application/json", Authorization: `Bearer ${key}` };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(url, init);
  let data = null;
  try { data = await answer.json(); } catch { data = null; }
  if (!answer.ok) {
    if (answer.status === 401) signOut("The API key was refused: sign in again.");
    throw new ApiError(answer.status, data);
  }
  return data;
}

// ---- small DOM helpers (text only) ----

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const two = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d${two(h)}h`;
  if (h) return `${h}h${two(m)}m`;
  if (m) return `${m}m${two(s)}s`;
  return `${s}s`;
}

function when(iso) {
  if (!iso) return "-";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? String(iso) : t.toISOString().replace("T", " ").slice(0, 19);
}

function num(v, digits = 1) {
  if (v === null || v === undefined) return "-";
  return Number.isInteger(v) ? v.toLocaleString("en") : Number(v).toFixed(digits);
}

function cell(v) {
  if (v === null || v === undefined || v === "") return "-";
  if (Array.isArray(v)) return v.join(", ") || "-";
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${k}=${x}`).join(" ") || "-";
  return String(v);
}

// columns: [header, row => value, {right, cls}]; onRow(row, tr) adds per-row behaviour
function fillTable(table, columns, rows, onRow, empty = "nothing to show") {
  const head = table.tHead;
  head.replaceChildren();
  const hr = head.insertRow();
  for (const [title, , opt] of columns) hr.appendChild(el("th", title, opt && opt.right ? "num" : ""));
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  if (!rows.length) {
    const td = tbody.insertRow().insertCell();
    td.colSpan = columns.length;
    td.textContent = empty;
    td.className = "muted";
    return;
  }
  for (const row of rows) {
    const tr = tbody.insertRow();
    for (const [title, get, opt] of columns) {
      const value = get(row);
      const td = tr.insertCell();
      if (value instanceof Node) td.appendChild(value); else td.textContent = cell(value);
      td.dataset.col = title;
      if (opt && opt.right) td.classList.add("num");
      if (opt && opt.cls) td.classList.add(opt.cls(row));
    }
    if (onRow) onRow(row, tr);
  }
}

function say(text, kind = "error") {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = kind;
  banner.hidden = false;
}

function quiet() { $("banner").hidden = true; }

// ---- confirmation ----

function confirmAction(title, text) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// ---- sign in / out ----

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  try {
    await api("GET", "/api/queue/stats");
  } catch (err) {
    sessionStorage.removeItem(KEY);
    throw err;
  }
  showDashboard();
}

function signOut(reason) {
  sessionStorage.removeItem(KEY);
  state.rowMetrics.clear(); // another key may see other figures
  clearInterval(state.timer);
  state.timer = null;
  $("dashboard").hidden = true;
  $("sign-in-panel").hidden = false;
  $("sign-out").hidden = $("refresh").hidden = true;
  $("who").textContent = "";
  if (reason) say(reason);
}

async function showDashboard() {
  $("sign-in-panel").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = $("refresh").hidden = false;
  $("who").textContent = "signed in";
  quiet();
  await probeOperations();
  await Promise.all([refreshLive(), searchMessages()]);
  clearInterval(state.timer);
  state.timer = setInterval(refreshLive, REFRESH_MS);
}

// An operation is offered when the API's own OpenAPI document lists its route (asking the route itself would
// leave a refused operation in the audit trail on every sign-in).
async function probeOperations() {
  let paths = {};
  try {
    const answer = await fetch("/openapi.json", { credentials: "omit", cache: "no-store" });
    paths = answer.ok ? (await answer.json()).paths || {} : {};
  } catch { paths = {}; }
  const select = $("op-name");
  select.replaceChildren();
  state.offered.clear();
  for (const [name, op] of Object.entries(OPERATIONS)) {
    const route = paths[op.path];
    if (!op.optional || (route && route[op.method.toLowerCase()])) {
      select.appendChild(el("option", name));
      state.offered.add(name);
    }
  }
  showOperationFields();
}

// ---- overview: widgets, the delivery-rate chart, domain health ----

async function refreshLive() {
  try {
    const [metrics, timeline, stats] = await Promise.all([
      api("GET", "/api/queue/metrics"),
      api("GET", "/api/queue/metrics/timeline", { hours: 6, points: 72 }),
      api("GET", "/api/queue/stats"),
    ]);
    renderWidgets(metrics);
    renderChart(timeline);
    renderHealth(metrics);
    await renderQueues(stats.data);
    $("updated").textContent = `updated ${when(new Date().toISOString())} UTC`;
  } catch (err) {
    if (sessionStorage.getItem(KEY)) say(`Could not refresh: ${err.message}`);
  }
}

function renderWidgets(m) {
  const widgets = [
    ["Queue depth", num(m.queue_depth)],
    ["Delivered / hour", num(m.delivery_rate, 0)],
    ["Oldest queued", age(m.oldest_message_age)],
    ["Bounce rate", `${num(m.bounce_rate)} %`],
    ["Retry rate", `${num(m.retry_rate)} %`],
    ["Avg delivery time", age(m.average_delivery_time)],
    ["Messages (24 h)", num(m.messages_last_24h)],
    ["Total messages", num(m.total_messages)],
  ];
  const box = $("widgets");
  box.replaceChildren();
  for (const [title, value] of widgets) {
    const w = el("div", null, "widget");
    w.appendChild(el("div", value, "value"));
    w.appendChild(el("div", title, "label"));
    w.dataset.widget = title;
    box.appendChild(w);
  }
  const byStatus = el("div", null, "widget wide");
  byStatus.appendChild(el("div", Object.entries(m.messages_by_status).filter(([, n]) => n)
    .map(([s, n]) => `${s} ${n}`).join(" · ") || "none", "value small"));
  byStatus.appendChild(el("div", "Messages by status", "label"));
  box.appendChild(byStatus);
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderChart(t) {
  const W = 640, H = 180, left = 44, bottom = 20, top = 8;
  const points = t.points;
  const max = Math.max(1, ...points.map((p) => p.delivery_rate), ...points.map((p) => p.bounced * 3600 / t.bucket_seconds));
  const step = (W - left) / points.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "deliveries per hour" });
  chart.appendChild(svg("line", { x1: left, y1: y(0), x2: W, y2: y(0), class: "axis" }));
  chart.appendChild(svg("text", { x: left - 4, y: y(max) + 4, class: "tick", "text-anchor": "end" }, num(max, 0)));
  chart.appendChild(svg("text", { x: left - 4, y: y(0), class: "tick", "text-anchor": "end" }, "0"));
  points.forEach((p, i) => {
    const bounceRate = p.bounced * 3600 / t.bucket_seconds;
    const x = left + i * step;
    const bar = svg("rect", { x: x + 0.5, y: y(p.delivery_rate), width: Math.max(1, step - 1),
      height: y(0) - y(p.delivery_rate), class: "delivered" });
    bar.appendChild(svg("title", {}, `${when(p.at)}: ${p.delivered} delivered, ${p.bounced} bounced`));
    chart.appendChild(bar);
    if (p.bounced) {
      chart.appendChild(svg("rect", { x: x + step / 4, y: y(bounceRate), width: Math.max(1, step / 2),
        height: y(0) - y(bounceRate), class: "bounced" }));
    }
  });
  chart.appendChild(svg("text", { x: left, y: H - 4, class: "tick" }, when(t.since).slice(11, 16)));
  chart.appendChild(svg("text", { x: W, y: H - 4, class: "tick", "text-anchor": "end" }, when(t.until).slice(11, 16)));
  const total = points.reduce((n, p) => n + p.delivered, 0);
  const bounced = points.reduce((n, p) => n + p.bounced, 0);
  $("chart-legend").textContent = `(${total} delivered, ${bounced} bounced; ${age(t.bucket_seconds)} buckets, UTC)`;
  $("chart").replaceChildren(chart);
}

function renderHealth(m) {
  const rows = Object.values(m.domain_health_scores).sort((a, b) => a.score - b.score);
  const scoreCell = (r) => {
    const box = el("span", null, "score");
    const bar = el("meter");
    bar.min = 0; bar.max = 100; bar.low = 50; bar.high = 80; bar.optimum = 100; bar.value = r.score;
    box.append(bar, el("span", num(r.score, 0)));
    return box;
  };
  fillTable($("health"), [
    ["domain", (r) => r.domain],
    ["score", scoreCell, { right: true }],
    ["bounce %", (r) => num(r.bounce_rate), { right: true }],
    ["deferral %", (r) => num(r.deferral_rate), { right: true }],
    ["delivery time", (r) => age(r.average_delivery_time), { right: true }],
    ["last success", (r) => when(r.last_successful_delivery)],
  ], rows, null, "no traffic in the last 24 hours");
}

// ---- queues and the controls in force ----

// How a control applies to a (tenant, campaign) row: "whole", "part" (it names a queue or domain), or null.
function covers(s, row) {
  for (const name of ["tenant", "campaign"]) {
    if (s[name] !== null && s[name] !== undefined && s[name] !== row[name]) return null;
  }
  return s.queue || s.domain ? "part" : "whole";
}

function rowState(suspensions, row) {
  let found = "active";
  for (const s of suspensions) {
    const how = covers(s, row);
    if (how === "whole") return s.state || "suspended";
    if (how === "part") found = `part ${s.state || "suspended"}`;
  }
  return found;
}

// A row's oldest age and rate cost the server a few scans each: asked again only every ROW_METRICS_MS.
async function rowMetrics(tenant, campaign) {
  const key = JSON.stringify([tenant, campaign]);
  const held = state.rowMetrics.get(key);
  if (held && Date.now() - held.at < ROW_METRICS_MS) return held.value;
  const value = await api("GET", "/api/queue/metrics", { tenant_id: tenant, campaign_id: campaign }).catch(() => null);
  state.rowMetrics.set(key, { at: Date.now(), value });
  return value;
}

async function renderQueues(stats) {
  const rows = stats.campaigns.slice(0, 100);
  const metrics = await Promise.all(rows.map((r) => rowMetrics(r.tenant, r.campaign)));
  rows.forEach((r, i) => {
    r.state = rowState(stats.suspensions, r);
    r.depth = LIVE.reduce((n, s) => n + (r.by_status[s] || 0), 0);
    r.oldest = metrics[i] ? metrics[i].oldest_message_age : null;
    r.rate = metrics[i] ? metrics[i].delivery_rate : null;
  });
  const actions = (r) => {
    const box = el("span", null, "actions");
    const scope = { tenant: r.tenant, campaign: r.campaign };
    const active = r.state === "active" || r.state.startsWith("part");
    const b = el("button", active ? "Suspend" : "Resume");
    b.type = "button";
    b.dataset.action = active ? "suspend" : "resume";
    b.addEventListener("click", () => runOperation(active ? "suspend" : "resume", scope, {}));
    box.appendChild(b);
    return box;
  };
  const count = (status) => [status.replace("_", " "), (r) => r.by_status[status] || 0, { right: true }];
  fillTable($("queues"), [
    ["tenant", (r) => r.tenant],
    ["campaign", (r) => r.campaign],
    ["pool", (r) => r.egress_pool],
    ["state", (r) => r.state, { cls: (r) => `state-${r.state.replace(" ", "-")}` }],
    ["depth", (r) => r.depth, { right: true }],
    ...["scheduled", "ready", "in_delivery", "deferred", "suspended"].map(count),
    ["oldest", (r) => (r.depth ? age(r.oldest) : "-"), { right: true }],
    ["delivered / h", (r) => num(r.rate, 0), { right: true }],
    ["sent", (r) => r.total_sent, { right: true }],
    ["failed", (r) => r.total_failed, { right: true }],
    ["", actions],
  ], rows, (r, tr) => { tr.dataset.tenant = r.tenant || ""; tr.dataset.campaign = r.campaign || ""; },
  "no queues yet");

  const lift = (s) => {
    if (s.state === "bounce") return el("span", "until it lapses", "muted");
    const b = el("button", "Resume");
    b.type = "button";
    b.dataset.action = "resume";
    const scope = {};
    for (const k of ["queue", "tenant", "campaign", "domain"]) if (s[k]) scope[k] = s[k];
    b.addEventListener("click", () => runOperation("resume", scope, {}));
    return b;
  };
  fillTable($("controls"), [
    ["state", (s) => s.state],
    ["queue", (s) => s.queue], ["tenant", (s) => s.tenant], ["campaign", (s) => s.campaign],
    ["domain", (s) => s.domain], ["reason", (s) => s.reason],
    ["since", (s) => when(s.since)], ["until", (s) => when(s.until)], ["by", (s) => s.issued_by],
    ["", lift],
  ], stats.suspensions, null, "no suspensions, drains or bounces in force");
}

// ---- operations ----

function describe(scope) {
  if (scope.message_ids) return `message ${scope.message_ids.join(", ")}`;
  return Object.entries(scope).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).join(" ") || "(no scope)";
}

async function runOperation(name, scope, extra) {
  const op = OPERATIONS[name];
  const clean = {};
  for (const [k, v] of Object.entries(scope)) if (v) clean[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== "" && v !== null && v !== undefined) clean[k] = v;
  for (const need of op.requires || []) {
    if (clean[need] === undefined) { say(`${name} needs a ${need}`); return; }
  }
  if (name === "rebind" && !clean.to_queue && !clean.to_pool) { say("rebind needs a queue or a pool to move to"); return; }
  const details = Object.entries(extra).filter(([, v]) => v !== "" && v !== undefined)
    .map(([k, v]) => `${k}: ${v}`).join(", ");
  const what = scope.message_ids ? describe(scope) : `the queues matching ${describe(scope)}`;
  const ok = await confirmAction(`${name}?`, `${name} ${what}${details ? ` (${details})` : ""}. ${op.help}`);
  if (!ok) return;
  try {
    const body = op.path === QUEUE_OPERATIONS ? operationBody(name, scope, extra) : clean;
    const answer = await api(op.method, op.path, {}, body);
    let told = `${name} accepted for ${describe(scope)}: the scheduler applies it in order.`;
    if (answer && answer.affected_messages !== undefined) {
      told = `${name} of ${describe(scope)}: ${answer.affected_messages} messages` +
        `${answer.done ? "" : " so far (still running)"}${answer.errors.length ? "; " + answer.errors.join("; ") : ""}.`;
    }
    say(told, answer && answer.errors && answer.errors.length ? "error" : "ok");
    setTimeout(refreshLive, 500);
  } catch (err) {
    say(`${name} refused: ${err.message}`);
  }
}

function showOperationFields() {
  const op = OPERATIONS[$("op-name").value];
  for (const label of document.querySelectorAll(".op-field")) {
    label.hidden = !op || !op.fields.includes(label.dataset.for);
  }
  $("op-help").textContent = op ? op.help : "";
}

function submitOperation(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const name = form.get("operation");
  const scope = {};
  for (const k of ["queue", "tenant", "campaign", "domain"]) scope[k] = String(form.get(k) || "").trim();
  const extra = {};
  for (const k of OPERATIONS[name].fields) {
    const v = String(form.get(k) || "").trim();
    extra[k] = k === "priority" && v !== "" ? Number(v) : v;
  }
  runOperation(name, scope, extra);
}

// ---- messages: filters, pages, detail ----

function filterParams(form) {
  const data = new FormData(form);
  const params = {};
  for (const [name, value] of data.entries()) {
    const v = String(value).trim();
    if (!v) continue;
    if (name === "status" || name === "queue_state") (params[name] = params[name] || []).push(v);
    else if (name === "tags") params.tags = v.split(",").map((s) => s.trim()).filter(Boolean);
    else if (name.endsWith("_after") || name.endsWith("_before")) params[name] = new Date(v + "Z").toISOString();
    else params[name] = v;
  }
  return params;
}

async function searchMessages(event) {
  if (event) event.preventDefault();
  state.filters = filterParams($("message-filters"));
  state.cursors = [null];
  state.page = 0;
  await loadPage();
}

async function loadPage() {
  const cursor = state.cursors[state.page];
  try {
    const page = await api("GET", "/api/messages", { ...state.filters, ...(cursor ? { cursor } : {}) });
    state.next = page.next_cursor;
    renderMessages(page.messages);
    $("page-info").textContent = `page ${state.page + 1} · ${page.messages.length} messages`;
    $("page-prev").disabled = $("page-first").disabled = state.page === 0;
    $("page-next").disabled = !state.next;
  } catch (err) {
    say(`Search failed: ${err.message}`);
  }
}

function renderMessages(rows) {
  fillTable($("messages"), [
    ["id", (m) => { const a = el("a", m.id); a.href = "#"; return a; }],
    ["status", (m) => m.status, { cls: (m) => `status-${m.status}` }],
    ["queue state", (m) => m.queue_state],
    ["recipient", (m) => m.recipient],
    ["sender", (m) => m.sender],
    ["subject", (m) => m.headers.Subject],
    ["campaign", (m) => m.campaign_id],
    ["tries", (m) => m.num_attempts, { right: true }],
    ["created", (m) => when(m.created_at)],
    ["next attempt", (m) => when(m.next_attempt_at)],
    ["last reply", (m) => (m.smtp_response ? `${m.smtp_response.code} ${m.smtp_response.message}` : m.last_bounce_reason)],
  ], rows, (m, tr) => {
    tr.dataset.id = m.id;
    tr.classList.add("clickable");
    tr.addEventListener("click", (e) => { e.preventDefault(); openMessage(m.id); });
  }, "no messages match");
}

async function openMessage(id) {
  try {
    const m = await api("GET", `/api/messages/${encodeURIComponent(id)}`);
    state.detail = m;
    $("detail-id").textContent = m.id;
    const dl = $("detail-fields");
    dl.replaceChildren();
    for (const [k, v] of Object.entries(m)) {
      if (k === "attempts") continue;
      let shown = v;
      if (k.endsWith("_at") && typeof v === "string") shown = when(v);
      else if (k === "smtp_response" && v) shown = `${v.code} ${v.enhanced_code || ""} ${v.message} (${when(v.timestamp)})`;
      dl.append(el("dt", k), el("dd", cell(shown)));
    }
    fillTable($("attempts"), [
      ["#", (a) => a.attempt, { right: true }],
      ["outcome", (a) => a.outcome],
      ["code", (a) => a.smtp_response.code, { right: true }],
      ["enhanced", (a) => a.smtp_response.enhanced_code],
      ["reply", (a) => a.smtp_response.message],
      ["source", (a) => a.egress_source],
      ["path", (a) => a.egress_path],
      ["peer", (a) => a.peer_address],
      ["started", (a) => when(a.started_at)],
      ["completed", (a) => when(a.completed_at)],
    ], m.attempts, null, "no attempt yet");
    $("detail-cancel").disabled = !LIVE.includes(m.status);
    $("detail-retry").hidden = !state.offered.has("retry");
    $("detail-retry").disabled = !LIVE.includes(m.status);
    $("message-detail").hidden = false;
    $("message-detail").scrollIntoView({ block: "start" });
  } catch (err) {
    say(`Could not open ${id}: ${err.message}`);
  }
}

async function cancelMessage() {
  const m = state.detail;
  if (!m) return;
  const ok = await confirmAction("Cancel this message?",
    `Cancel ${m.id} to ${m.recipient}: it will not be delivered (a finished message is left as it is).`);
  if (!ok) return;
  try {
    const answer = await api("POST", `/api/transactions/${encodeURIComponent(m.id)}/cancel`, {}, {});
    say(answer.cancel_requested ? `Cancel of ${m.id} requested.` : `${m.id} had already finished (${answer.status}).`,
      "ok");
  } catch (err) {
    say(`Cancel refused: ${err.message}`);
  }
}

// ---- wiring ----

function start() {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    $("api-key").value = "";
    try { await signIn(key); } catch (err) { say(`Sign-in failed: ${err.message}`); }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => { quiet(); refreshLive(); loadPage(); });
  $("operation-form").addEventListener("submit", submitOperation);
  $("op-name").addEventListener("change", showOperationFields);
  $("message-filters").addEventListener("submit", searchMessages);
  $("message-filters").addEventListener("reset", () => setTimeout(searchMessages, 0));
  $("page-next").addEventListener("click", () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    loadPage();
  });
  $("page-prev").addEventListener("click", () => { if (state.page > 0) { state.page -= 1; loadPage(); } });
  $("page-first").addEventListener("click", () => { state.page = 0; loadPage(); });
  $("detail-close").addEventListener("click", () => { $("message-detail").hidden = true; });
  $("detail-cancel").addEventListener("click", cancelMessage);
  $("detail-retry").addEventListener("click", () => {
    if (state.detail) runOperation("retry", { message_ids: [state.detail.id] }, {});
  });
  if (sessionStorage.getItem(KEY)) {
    showDashboard().catch((err) => say(err.message));
  }
}

document.addEventListener("DOMContentLoaded", start);
