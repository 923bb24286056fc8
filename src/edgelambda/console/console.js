// edgelambda console: plain JavaScript, no framework, no build step. Every figure comes from
// the gateway's JSON API under /console/api (see the README); /console/api/live sends the
// live document (containers, queues, per-minute activity, events) whenever it changes.
"use strict";

const API = "/console/api";
const STATES = ["busy", "ready", "frozen", "thawing", "starting", "stopped"];
const STATE_LABEL = { ready: "idle" };
const AUTH_KEY = "edgelambda.console.auth";

const state = {
  live: null, page: null, stream: null, detailSeen: "", boxAt: 0, reloadAt: 0,
  openLogs: new Map(),  // request id -> the log lines shown under it (kept across refreshes)
};

// -- small helpers ----------------------------------------------------------------------

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const $ = (selector) => document.querySelector(selector);
const when = (epochS) => (epochS ? new Date(epochS * 1000).toLocaleTimeString() : "—");
const ms = (value) => (value == null ? "—" : `${Number(value).toFixed(value < 10 ? 2 : 0)} ms`);

// A link to VictoriaLogs' UI: ":9428/..." is on the console's own host (EDGELAMBDA_VICTORIALOGS_UI_URL).
const onHost = (url) => (url.startsWith(":") ? `${location.protocol}//${location.hostname}${url}` : url);

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "m"], [s % 60, "s"]];
  return parts.filter(([n], i) => n || i === 3).map(([n, u]) => `${n}${u}`).join(" ");
}

// -- the login, kept in this browser tab's session ----------------------------------------

function credentials() {
  try { return JSON.parse(sessionStorage.getItem(AUTH_KEY)); } catch { return null; }
}

function authHeaders() {
  const auth = credentials();
  if (!auth) return {};
  return auth.kind === "jwt" ? { Authorization: `Bearer ${auth.value}` } : { "x-api-key": auth.value };
}

async function api(path, options = {}) {
  const response = await fetch(path.startsWith("/") ? path : `${API}/${path}`, {
    ...options, headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (response.status === 401) { logout("Your login has expired or was refused."); throw new Error("unauthorised"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  const key = form.apikey.value, user = form.username.value, password = form.password.value;
  $("#login-error").textContent = "";
  try {
    if (user) {
      const response = await fetch(document.body.dataset.authPath, {
        method: "POST", headers: { "x-api-key": key, "Content-Type": "application/json" },
        body: JSON.stringify({ AuthParameters: { USERNAME: user, PASSWORD: password } }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
      sessionStorage.setItem(AUTH_KEY, JSON.stringify({ kind: "jwt", value: body.AuthenticationResult.IdToken }));
    } else {
      sessionStorage.setItem(AUTH_KEY, JSON.stringify({ kind: "key", value: key }));
    }
    await api("box");  // proves the login before anything is shown
  } catch (error) {
    sessionStorage.removeItem(AUTH_KEY);
    $("#login-error").textContent = `Login failed: ${error.message}`;
    return;
  }
  form.reset();
  start();
}

function logout(message) {
  sessionStorage.removeItem(AUTH_KEY);
  if (state.stream) state.stream.abort();
  state.stream = null;
  $("#nav").hidden = $("#logout").hidden = $("#live-status").hidden = true;
  $("#view").innerHTML = "";
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

// -- the live feed (server-sent events read through fetch, so the login header goes too) --

async function follow() {
  const controller = new AbortController();
  state.stream = controller;
  const status = $("#live-status");
  while (state.stream === controller) {
    try {
      const response = await fetch(`${API}/live`, { headers: authHeaders(), signal: controller.signal });
      if (response.status === 401) { logout("Your login has expired or was refused."); return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      status.textContent = "live"; status.classList.add("on");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (message.startsWith("data: ")) onLive(JSON.parse(message.slice(6)));
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    status.textContent = "reconnecting"; status.classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function onLive(document_) {
  state.live = document_;
  const page = state.page;
  if (!page) return;
  if (page.name === "functions") updateFunctionsLive();
  if (page.name === "function") updateDetailLive(page.fn);
  if (page.name === "routes" && document_.reload && document_.reload.at !== state.reloadAt) showRoutes();
  if (page.name === "box" && Date.now() - state.boxAt > 5000) showBox();
}

// -- charts: tiny inline SVG, no library ---------------------------------------------------

function bars(values, cls) {
  const w = 120, h = 26, n = values.length, max = Math.max(1, ...values);
  const bw = w / n;
  const rects = values.map((v, i) => {
    const bh = v ? Math.max(1.5, (v / max) * (h - 2)) : 0;
    return `<rect x="${(i * bw + 0.5).toFixed(1)}" y="${(h - bh).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${bh.toFixed(1)}"/>`;
  }).join("");
  return `<svg class="spark ${cls}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img"><title>${esc(values.join(", "))}</title><g fill="currentColor">${rects}</g></svg>`;
}

function lines(series, colours) {
  const w = 120, h = 26, n = series[0].length;
  const max = Math.max(1, ...series.flat().filter((v) => v != null));
  const paths = series.map((values, k) => {
    let d = "", dots = "";
    values.forEach((v, i) => {
      if (v == null) return;
      const x = ((i + 0.5) * (w / n)).toFixed(1), y = (h - 2 - (v / max) * (h - 4)).toFixed(1);
      d += `${d ? "L" : "M"}${x},${y}`;
      dots += `<circle cx="${x}" cy="${y}" r="1.6" fill="${colours[k]}"/>`;
    });
    return d ? `<path d="${d}" fill="none" stroke="${colours[k]}" stroke-width="1.5"/>${dots}` : "";
  }).join("");
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img"><title>p50 / p99 ms, max ${max.toFixed(1)}</title>${paths}</svg>`;
}

function charts(series) {
  const pick = (key) => series[key];
  const chart = (label, svg) => `<span class="chart">${svg}<span>${label}</span></span>`;
  const total = (key) => pick(key).reduce((a, b) => a + b, 0);
  return chart(`invocations/min (${total("invocations")})`, bars(pick("invocations"), "inv"))
    + chart(`errors/min (${total("errors")})`, bars(pick("errors"), "err"))
    + chart("p50 / p99", lines([pick("p50_ms"), pick("p99_ms")], ["#2563eb", "#dc2626"]))
    + chart(`cold starts (${total("cold_starts")})`, bars(pick("cold_starts"), "cold"));
}

function chips(containers) {
  const shown = STATES.filter((s) => containers[s]);
  if (!shown.length) return '<span class="chip none" data-state="none">no containers</span>';
  return shown.map((s) => `<span class="chip ${s}" data-state="${s}">${STATE_LABEL[s] || s} ${containers[s]}</span>`).join("");
}

// -- pages -------------------------------------------------------------------------------

async function showFunctions() {
  const { functions } = await api("functions");
  const rows = functions.map((f) => `
    <tr data-function="${esc(f.name)}">
      <td><a href="#/functions/${encodeURIComponent(f.name)}">${esc(f.name)}</a></td>
      <td>${esc(f.runtime)}</td>
      <td class="mono">${f.routes.map((r) => `${esc(r.methods.join(","))} ${esc(r.path)}`).join("<br>") || "—"}</td>
      <td>${f.memory_mb} MB · ${f.timeout_s} s · ×${f.max_concurrency}</td>
      <td class="mono code">${esc(f.code_hash || "not built yet")}</td>
      <td class="containers">${chips(f.containers)}</td>
      <td class="num queued">${f.queued}</td>
      <td class="charts">${charts(f.activity)}</td>
    </tr>`).join("");
  $("#view").innerHTML = `<h1>Functions <span class="hint">(${functions.length})</span></h1>
    <table id="functions"><thead><tr><th>Function</th><th>Runtime</th><th>Routes</th>
    <th>Memory · timeout · concurrency</th><th>Code</th><th>Containers</th><th>Queued</th>
    <th>Last 15 minutes</th></tr></thead><tbody>${rows}</tbody></table>`;
  updateFunctionsLive();
}

function updateFunctionsLive() {
  const live = state.live;
  if (!live) return;
  for (const row of document.querySelectorAll("#functions tr[data-function]")) {
    const name = row.dataset.function, now = live.functions[name];
    if (!now) continue;
    row.querySelector(".containers").innerHTML = chips(now.containers);
    row.querySelector(".queued").textContent = now.queued;
    if (now.code_hash) row.querySelector(".code").textContent = now.code_hash;
    if (live.activity[name]) row.querySelector(".charts").innerHTML = charts(live.activity[name]);
  }
}

async function showFunction(name) {
  const f = await api(`functions/${encodeURIComponent(name)}`);
  state.openLogs.clear();
  state.detailSeen = JSON.stringify(state.live?.activity?.[name] || "");
  const routes = f.routes.map((r) => `<code>${esc(r.methods.join(","))} ${esc(r.path)}</code> (${esc(r.auth)})`).join(", ") || "none";
  $("#view").innerHTML = `
    <h1>${esc(f.name)}</h1>
    <div class="grid">
      <div class="card"><dl class="kv">
        <dt>Runtime</dt><dd>${esc(f.runtime)} <span class="mono">${esc(f.handler)}</span></dd>
        <dt>Code</dt><dd class="mono" id="detail-code">${esc(f.image || f.code_hash || "not built yet")}</dd>
        <dt>Limits</dt><dd>${f.memory_mb} MB, ${f.timeout_s} s, ${f.max_concurrency} at once, ${f.min_warm} kept warm</dd>
        <dt>Idle</dt><dd>${f.freeze_after_s ? `frozen after ${f.freeze_after_s} s` : "never frozen"}, stopped after ${f.idle_timeout_s} s</dd>
        <dt>Routes</dt><dd>${routes}</dd>
        <dt>Schedules</dt><dd>${esc(f.schedules.join(", ") || "none")}</dd>
        <dt>Containers</dt><dd id="detail-containers">${chips(f.containers)}</dd>
        <dt>Queued</dt><dd id="detail-queued">${f.queued}</dd>
      </dl>
      <div class="row-actions">
        <button id="remove-idle" class="secondary" type="button">Remove idle containers</button>
        <span id="action-result" class="hint"></span>
      </div></div>
      <div class="card"><div id="detail-charts">${charts(f.activity)}</div></div>
    </div>
    <h2>Invoke</h2>
    <form id="invoke" class="card">
      <textarea name="payload" spellcheck="false">{}</textarea>
      <div class="row-actions">
        <select name="type"><option value="RequestResponse">synchronous</option><option value="Event">Event (asynchronous)</option></select>
        <button type="submit">Invoke</button>
        <span id="invoke-status" class="hint"></span>
      </div>
      <div id="invoke-output" hidden><h2>Result</h2><pre id="invoke-result"></pre><h2>Log</h2><pre id="invoke-log"></pre></div>
    </form>
    <h2>Recent invocations</h2>
    <div id="invocations">${invocationsTable(f)}</div>
    <h2>Dead letters</h2>
    <div id="dead-letters">${deadLettersTable(f)}</div>`;
  $("#invoke").addEventListener("submit", (event) => invoke(event, f.name));
  $("#remove-idle").addEventListener("click", () => act(`functions/${encodeURIComponent(f.name)}/remove-idle`,
    (r) => `removed ${r.removed} idle container(s)`));
  wireDetail(f);
}

function invocationsTable(f) {
  if (!f.invocations.length) return '<p class="hint">None since the gateway started.</p>';
  const rows = f.invocations.map((i) => {
    const open = state.openLogs.get(i.request_id);
    return `
    <tr data-request-id="${esc(i.request_id)}">
      <td>${when(i.time)}</td><td class="mono">${esc(i.request_id)}</td>
      <td class="mono">${esc(i.trace_id || "")}</td>
      <td class="outcome-${esc(i.outcome)}">${esc(i.outcome)}${i.error_type ? ` <span class="hint">${esc(i.error_type)}</span>` : ""}</td>
      <td class="num">${ms(i.duration_ms)}</td><td>${i.cold ? "cold" : "warm"}</td>
      <td class="mono">${esc(i.container)}</td>
      <td><a href="#" class="show-logs">logs</a></td>
    </tr><tr class="loglines-row" ${open ? "" : "hidden"}><td colspan="8"><div class="loglines">${open || ""}</div></td></tr>`;
  }).join("");
  return `<table id="invocation-table"><thead><tr><th>Time</th><th>Request id</th><th>Trace id</th>
    <th>Status</th><th>Duration</th><th>Start</th><th>Container</th><th></th></tr></thead>
    <tbody>${rows}</tbody></table>`;
}

function deadLettersTable(f) {
  if (!f.dead_letters.length) return '<p class="hint" id="no-dead-letters">None.</p>';
  const rows = f.dead_letters.map((d) => `
    <tr data-dead-letter="${esc(d.id)}"><td>${when(d.dead_at)}</td><td class="mono">${esc(d.id)}</td>
      <td class="num">${d.attempts}</td><td>${esc(d.reason)}</td><td class="mono">${esc(d.last_error || "")}</td>
      <td><button type="button" class="secondary replay-one">Replay</button></td></tr>`).join("");
  const shown = f.dead_letter_count > f.dead_letters.length ? ` <span class="hint">(the oldest ${f.dead_letters.length} shown)</span>` : "";
  return `<div class="row-actions"><button id="replay-all" type="button">Replay all ${f.dead_letter_count}</button>${shown}</div>
    <table id="dead-letter-table"><thead><tr><th>Dead since</th><th>Event id</th><th>Attempts</th><th>Reason</th>
    <th>Last error</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

function wireDetail(f) {
  for (const link of document.querySelectorAll("#invocations .show-logs")) {
    link.addEventListener("click", (event) => { event.preventDefault(); showLogs(f.name, link.closest("tr")); });
  }
  for (const button of document.querySelectorAll("#dead-letters .replay-one")) {
    const id = button.closest("tr").dataset.deadLetter;
    button.addEventListener("click", () => act(`dead-letters/${encodeURIComponent(id)}/replay`,
      (r) => `replayed ${r.replayed} event(s)`));
  }
  const all = $("#replay-all");
  if (all) all.addEventListener("click", () => act(`functions/${encodeURIComponent(f.name)}/replay`,
    (r) => `replayed ${r.replayed} event(s)${r.left ? `; ${r.left} left (the function's Event queue is full)` : ""}`));
}

async function act(path, describe) {
  const out = $("#action-result");
  try {
    out.textContent = describe(await api(path, { method: "POST" }));
    out.className = "ok";
  } catch (error) {
    out.textContent = error.message; out.className = "error";
  }
  refreshDetail();
}

async function showLogs(name, row) {
  const target = row.nextElementSibling, id = row.dataset.requestId;
  target.hidden = false;
  const box = target.querySelector(".loglines");
  box.textContent = "reading the log store…";
  let html;
  try {
    const result = await api(`functions/${encodeURIComponent(name)}/logs?request_id=${encodeURIComponent(id)}&since=1d`);
    const text = result.lines.map((l) => `${l.time || ""} ${l.message}`).join("\n") || "(no lines yet)";
    html = `<pre class="invocation-log">${esc(text)}</pre>${result.ui_url ? `<a target="_blank" rel="noopener" href="${esc(onHost(result.ui_url))}">Open in VictoriaLogs</a>` : ""}`;
  } catch (error) {
    html = `<span class="error">${esc(error.message)}</span>`;
  }
  state.openLogs.set(id, html);
  // The table may have been drawn again meanwhile: fill the row that is there now.
  const now = [...document.querySelectorAll("#invocation-table tr[data-request-id]")].find((r) => r.dataset.requestId === id);
  if (now) { now.nextElementSibling.hidden = false; now.nextElementSibling.querySelector(".loglines").innerHTML = html; }
}

async function invoke(event, name) {
  event.preventDefault();
  const form = event.target, status = $("#invoke-status");
  const type = form.type.value;
  status.textContent = "invoking…"; status.className = "hint";
  const started = performance.now();
  const response = await fetch(`/2015-03-31/functions/${encodeURIComponent(name)}/invocations`, {
    method: "POST", body: form.payload.value,
    headers: { ...authHeaders(), "X-Amz-Invocation-Type": type, "X-Amz-Log-Type": "Tail" },
  });
  const took = Math.round(performance.now() - started);
  const body = await response.text();
  const failed = !response.ok || response.headers.get("X-Amz-Function-Error");
  status.textContent = `HTTP ${response.status} in ${took} ms · request ${response.headers.get("x-amzn-RequestId") || ""}`;
  status.className = failed ? "error" : "ok";
  $("#invoke-output").hidden = false;
  $("#invoke-result").textContent = type === "Event" && response.status === 202 ? "(queued: an Event invocation answers 202)" : pretty(body);
  const tail = response.headers.get("X-Amz-Log-Result");
  $("#invoke-log").textContent = tail ? decodeBase64(tail) : "(no log tail for an Event invocation)";
  refreshDetail();
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

function decodeBase64(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

async function refreshDetail() {
  const page = state.page;
  if (!page || page.name !== "function") return;
  const f = await api(`functions/${encodeURIComponent(page.fn)}`).catch(() => null);
  if (!f || state.page !== page) return;
  $("#invocations").innerHTML = invocationsTable(f);
  $("#dead-letters").innerHTML = deadLettersTable(f);
  wireDetail(f);
}

function updateDetailLive(name) {
  const live = state.live, now = live.functions[name];
  if (!now) return;
  $("#detail-containers").innerHTML = chips(now.containers);
  $("#detail-queued").textContent = now.queued;
  if (now.code_hash && !$("#detail-code").textContent.includes(":")) $("#detail-code").textContent = now.code_hash;
  const activity = live.activity[name];
  if (activity) $("#detail-charts").innerHTML = charts(activity);
  // New invocations or dead letters: read the detail again (the gateway's memory, no engine).
  const seen = JSON.stringify([activity, live.events]);
  if (seen !== state.detailSeen) { state.detailSeen = seen; refreshDetail(); }
}

async function showRoutes() {
  const { file, reload, routes } = await api("routes");
  state.reloadAt = reload.at;
  const name = (reload.file || "").split("/").pop();
  const where = reload.line ? `${name}:${reload.line}` : name;
  const banner = reload.status === "accepted"
    ? `<div class="banner accepted" id="reload-status" title="${esc(file)}">${esc(file.split("/").pop())} loaded at ${when(reload.at)}</div>`
    : `<div class="banner rejected" id="reload-status" title="${esc(reload.error)}"><strong>The last edit was rejected</strong> at ${when(reload.at)};
       the table below keeps serving.<br>${where ? `<code>${esc(where)}</code>` : ""}${reload.key ? ` <code>${esc(reload.key)}</code>` : ""}:
       <span class="error" id="reload-error">${esc(reload.problem || reload.error)}</span></div>`;
  const rows = routes.map((r) => `<tr><td class="mono">${esc(r.methods.join(", "))}</td>
    <td class="mono">${esc(r.path)}</td><td><a href="#/functions/${encodeURIComponent(r.function)}">${esc(r.function)}</a></td>
    <td>${esc(r.auth)}</td><td>${esc(r.payload)}</td><td>${r.cors ? "yes" : ""}</td></tr>`).join("");
  $("#view").innerHTML = `<h1>Routes <span class="hint">(${routes.length})</span></h1>${banner}
    <table id="routes"><thead><tr><th>Methods</th><th>Path</th><th>Function</th><th>Auth</th><th>Payload</th>
    <th>CORS</th></tr></thead><tbody>${rows}</tbody></table>`;
}

async function showBox() {
  state.boxAt = Date.now();
  const b = await api("box");
  if (state.page?.name !== "box") return;
  const list = (items, render) => items.map(render).join("");
  const events = b.events.error ? `<span class="error">${esc(b.events.error)}</span>`
    : `${b.events.queued} queued, ${b.events.dead_letters} dead-lettered`;
  const shipper = b.log_shipper
    ? `${b.log_shipper.buffered} of ${b.log_shipper.capacity} buffered, <span id="dropped">${b.log_shipper.dropped}</span> dropped (to ${esc(b.log_shipper.url)})`
    : "off: function logs go to the gateway's stdout";
  $("#view").innerHTML = `<h1>Box</h1><div class="grid">
    <div class="card"><h2>Gateway</h2><dl class="kv">
      <dt>Version</dt><dd id="version">${esc(b.version)}</dd>
      <dt>Mode</dt><dd>${esc(b.mode)}</dd>
      <dt>Up</dt><dd>${duration(b.uptime_s)} (since ${new Date(b.started * 1000).toLocaleString()})</dd>
      <dt>Backend</dt><dd>${esc(b.engine.backend)}: ${esc(b.engine.version)}</dd>
      <dt>Containers</dt><dd>${chips(b.containers)}</dd>
      <dt>Events</dt><dd>${events}</dd>
      <dt>Log shipper</dt><dd>${shipper}</dd></dl></div>
    <div class="card"><h2>Background loops</h2><table id="loops"><tbody>${list(b.loops, (l) =>
      `<tr><td>${esc(l.name)}</td><td class="status-${esc(l.status)}">${esc(l.status)}</td><td class="mono">${esc(l.detail || "")}</td></tr>`)}</tbody></table></div>
    <div class="card"><h2>Data services</h2><table id="services"><tbody>${list(b.services, (s) =>
      `<tr><td>${esc(s.name)}</td><td class="status-${esc(s.status.replace(" ", "-"))}">${esc(s.status)}</td><td class="mono">${esc(s.url || "")}</td><td class="hint">${esc(s.detail || "")}</td></tr>`)}</tbody></table>
      ${b.logs_ui ? `<p><a target="_blank" rel="noopener" href="${esc(onHost(b.logs_ui.replace(/\/$/, "")))}/select/vmui/">VictoriaLogs UI</a></p>` : ""}</div>
  </div>`;
}

// -- navigation --------------------------------------------------------------------------

async function route() {
  if (!credentials()) { logout(); return; }
  const [, page = "functions", fn] = location.hash.split("/");
  state.page = fn ? { name: "function", fn: decodeURIComponent(fn) } : { name: page };
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === (fn ? "functions" : page));
  }
  try {
    if (fn) await showFunction(decodeURIComponent(fn));
    else if (page === "routes") await showRoutes();
    else if (page === "box") await showBox();
    else await showFunctions();
  } catch (error) {
    if (credentials()) $("#view").innerHTML = `<p class="error">${esc(error.message)}</p>`;
  }
}

function start() {
  $("#login").hidden = true;
  $("#nav").hidden = $("#logout").hidden = $("#live-status").hidden = false;
  if (!state.stream) follow();
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout());
  window.addEventListener("hashchange", route);
  if (credentials()) start(); else logout();
});
