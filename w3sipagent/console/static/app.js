// w3sipagent operator console: a hash-routed page over the JSON API. No dependencies.
// The bearer token lives in sessionStorage (gone when the tab closes); live pushes use
// server-sent events opened with a short-lived ticket (never the token) in the URL.
"use strict";
const S = { token: sessionStorage.getItem("w3.token"), me: null, tenants: [], es: null, blob: null };
const $main = () => document.getElementById("main");

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) el.append(k instanceof Node ? k : String(k));
  return el;
}
function say(msg) { document.getElementById("status").textContent = msg || ""; }
function fmtDur(s) { if (s == null) return "-"; s = Math.round(s); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; }
function fmtMs(v) { return v == null ? "-" : `${Math.round(v)} ms`; }
function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : "-"; }
function enc(s) { return encodeURIComponent(s); }

class ApiError extends Error { constructor(status, detail) { super(typeof detail === "string" ? detail : `HTTP ${status}`); this.status = status; this.detail = detail; } }
async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${S.token}` };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  if (r.status === 401) { logout("Your token was refused: log in again."); throw new ApiError(401, "unauthorized"); }
  const ct = r.headers.get("content-type") || "";
  const data = ct.includes("json") ? await r.json() : null;
  if (!r.ok) throw new ApiError(r.status, data && data.detail !== undefined ? data.detail : `HTTP ${r.status}`);
  return opts.raw ? r : data;
}
function problem(e) {
  if (e.status === 404) return h("div", { class: "card", role: "alert" }, h("strong", {}, "Not found. "), "It does not exist, or it is not yours to see.");
  if (e.status === 403) return h("div", { class: "card", role: "alert" }, h("strong", {}, "Not allowed. "), "This needs an admin token.");
  return h("div", { class: "card", role: "alert" }, h("strong", {}, "Error: "), String(e.message));
}

// ---- session
function logout(msg) {
  sessionStorage.removeItem("w3.token"); S.token = null; S.me = null; closeStream();
  document.getElementById("nav").hidden = true; document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  location.hash = "#/login"; if (msg) say(msg);
}
async function whoami() {
  S.tenants = await api("/api/tenants");
  let admin = true;
  try { await api("/api/calls"); } catch (e) { if (e.status === 403) admin = false; else throw e; }
  S.me = { admin, tenant: admin ? null : (S.tenants[0] || {}).id };
  document.getElementById("who").textContent = admin ? "admin: every tenant" : `tenant ${S.me.tenant}`;
  document.getElementById("nav").hidden = false; document.getElementById("logout").hidden = false;
}
function viewLogin() {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "token-help" });
  const err = h("p", { id: "login-error", class: "error", role: "alert" });
  const form = h("form", { class: "login card", onsubmit: async (ev) => {
    ev.preventDefault(); S.token = input.value.trim();
    try { await whoami(); sessionStorage.setItem("w3.token", S.token); location.hash = "#/live"; }
    catch (e) { S.token = null; err.textContent = e.status === 401 ? "Unknown token." : String(e.message); input.setAttribute("aria-invalid", "true"); input.focus(); }
  } },
    h("h1", {}, "Log in"),
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input,
      h("small", { id: "token-help", class: "muted" }, "An admin token sees every tenant; a tenant token, its own. Kept in this tab only.")),
    err, h("button", { type: "submit", id: "login" }, "Log in"));
  $main().replaceChildren(form); input.focus();
}

// ---- live calls (server-sent events)
function closeStream() { if (S.es) { S.es.close(); S.es = null; } }
async function openStream(params, handlers) {
  closeStream();
  const { ticket } = await api("/api/live/ticket", { method: "POST" });
  const es = new EventSource(`/api/live/stream?${new URLSearchParams({ ticket, ...params })}`);
  S.es = es;
  for (const [ev, fn] of Object.entries(handlers)) es.addEventListener(ev, (m) => fn(JSON.parse(m.data)));
  es.onerror = () => { if (S.es !== es) return; es.close(); setTimeout(() => { if (S.es === es) openStream(params, handlers).catch(() => {}); }, 1000); };
}
const STATE_BADGE = { talking: "ok", connecting: "warn", fallback: "bad", transferring: "warn" };
function liveTable(rows) {
  if (!rows.length) return h("p", { id: "no-live" }, "No call in progress.");
  const cols = [["Tenant", "tenant"], ["Store", "store_id"], ["Agent", "agent"], ["Caller", "caller"], ["Codec", "codec"], ["Backend", "backend"], ["Duration", "duration_s"], ["State", "state"], ["Last turn", "last_turn_ms"]];
  return h("div", { class: "scroll" }, h("table", { class: "stack", id: "live-table" },
    h("thead", {}, h("tr", {}, cols.map(([t]) => h("th", { scope: "col" }, t)), h("th", {}, "Open"))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-call": r.call_id }, cols.map(([t, k]) => h("td", { "data-label": t },
      k === "duration_s" ? fmtDur(r[k]) : k === "last_turn_ms" ? fmtMs(r[k]) : k === "state" ? h("span", { class: `badge ${STATE_BADGE[r.state] || ""}` }, r.state) : (r[k] ?? "-"))),
      h("td", { "data-label": "Open" }, h("a", { href: `#/live/${enc(r.call_id)}` }, "View")))))));
}
async function viewLive() {
  const box = h("div", { id: "live" }, h("p", {}, "Connecting…"));
  $main().replaceChildren(h("h1", {}, "Live calls"), h("p", { class: "muted" }, "Updated as it happens."), box);
  let pushes = 0; // each push counted on the box (data-pushes): a page can tell it is live
  await openStream({}, { calls: (rows) => { box.replaceChildren(liveTable(rows)); box.dataset.pushes = String(++pushes); } });
}
function timeline(transcript, tools, partial) {
  const items = transcript.map((e) => ({ at: e.at, who: e.speaker, text: e.text }));
  // an utterance under way: its words so far, marked as not final by a word, not only a style
  for (const p of partial || []) items.push({ at: p.at, who: p.speaker, text: p.text, partial: true });
  for (const t of tools || []) items.push({ at: t.at, who: "tool", text: `${t.name}(${JSON.stringify(t.arguments)}) → ${t.error ? "error: " + t.error : JSON.stringify(t.result)}` });
  items.sort((a, b) => a.at - b.at);
  if (!items.length) return h("p", { class: "muted" }, "Nothing said yet.");
  return h("ol", { class: "timeline", id: "transcript" }, items.map((i) => h("li", { class: `spk-${i.who}${i.partial ? " partial" : ""}` },
    h("span", { class: "t" }, `${i.at.toFixed(1)} s`), h("span", { class: "who-l" }, i.partial ? `${i.who} (speaking…)` : i.who), h("span", { class: "msg" }, i.text))));
}
function actionFailed(e) { say(e.status === 404 ? "The call has ended." : `Refused: ${Array.isArray(e.detail) ? e.detail.map((d) => d.msg).join("; ") : e.message}`); }
async function viewLiveCall(callId) {
  const head = h("dl", { class: "kv" }); const tl = h("div", {}); const acts = h("div", { class: "actions" });
  $main().replaceChildren(h("p", {}, h("a", { href: "#/live" }, "← Live calls")), h("h1", {}, `Call ${callId}`), head, acts, h("h2", {}, "Transcript"), tl);
  const show = (c) => {
    head.replaceChildren(...[["Tenant", c.tenant], ["Store", c.store_id], ["Agent", c.agent], ["Caller", c.caller], ["Codec", c.codec], ["Backend", c.backend], ["Duration", fmtDur(c.duration_s)], ["State", c.state], ["Last turn", fmtMs(c.last_turn_ms)],
      ["Transfer", c.transfer ? `${c.transfer.destination}: ${c.transfer.outcome}${c.transfer.status ? " " + c.transfer.status : ""}` : "none"]]
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", { id: { "Last turn": "last-turn", Transfer: "transfer-state" }[k] || null }, v ?? "-")]));
    tl.replaceChildren(timeline(c.transcript, c.tool_calls, c.partial));
    const st = document.getElementById("status");
    if (c.transfer && c.transfer.outcome !== "pending" && st.textContent.startsWith("Transferring")) say(`Transfer to ${c.transfer.destination}: ${c.transfer.outcome}.`);
  };
  try { show(await api(`/api/live/calls/${enc(callId)}`)); } catch (e) { $main().append(problem(e)); return; }
  if (S.me.admin) {
    const dests = await api(`/api/live/destinations/${enc(callId)}`).catch(() => []);
    const sel = h("select", { id: "dest" }, dests.map((d) => h("option", { value: d }, d)));
    acts.append(h("button", { class: "danger", type: "button", id: "hangup", onclick: async () => { say("Hanging up…"); await api(`/api/live/calls/${enc(callId)}/hangup`, { method: "POST" }).catch(actionFailed); } }, "Hang up"));
    if (dests.length) acts.append(h("label", { for: "dest" }, "Destination", sel),
      h("button", { type: "button", class: "secondary", id: "transfer", onclick: async () => { say(`Transferring to ${sel.value}…`); await api(`/api/live/calls/${enc(callId)}/transfer`, { method: "POST", body: { destination: sel.value } }).catch(actionFailed); } }, "Transfer"));
  }
  await openStream({ call: callId }, {
    call: show,
    ended: () => { closeStream(); acts.replaceChildren(h("p", { id: "ended", class: "badge" }, "Call ended"), " ", h("a", { href: `#/calls` }, "Find it in the call records")); },
  });
}

// ---- call records
function tenantSelect(id, value, withAll) {
  const ids = S.tenants.map((t) => t.id);
  if (value && !ids.includes(value)) ids.push(value); // asked for in the URL: the API answers
  return h("select", { id, name: "tenant" }, withAll ? h("option", { value: "" }, "(choose)") : null,
    ids.map((t) => h("option", { value: t, selected: t === value }, t)));
}
const DISPOSITIONS = ["", "answered", "caller_hangup", "agent_hangup", "transferred", "failed", "rejected", "fallback", "timeout", "in_progress"];
async function viewCalls(params) {
  const p = new URLSearchParams(params);
  const tenant = p.get("tenant") || (S.tenants[0] || {}).id || "";
  const fld = (name, label, type = "text") => h("label", { for: `f-${name}` }, label, h("input", { id: `f-${name}`, name, type, value: p.get(name) || "" }));
  const form = h("form", { class: "filters", role: "search", onsubmit: (ev) => {
    ev.preventDefault(); const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/calls?${q}`;
  } }, h("label", { for: "f-tenant" }, "Tenant", tenantSelect("f-tenant", tenant)),
    fld("store_id", "Store"), fld("agent", "Agent"), fld("number", "Number"), fld("since", "From", "date"), fld("until", "To", "date"),
    h("label", { for: "f-disposition" }, "Disposition", h("select", { id: "f-disposition", name: "disposition" }, DISPOSITIONS.map((d) => h("option", { value: d, selected: d === (p.get("disposition") || "") }, d || "(any)")))),
    fld("q", "Words in transcript", "search"), h("button", { type: "submit" }, "Search"));
  const out = h("div", {});
  $main().replaceChildren(h("h1", {}, "Call records"), form, out);
  if (!tenant) { out.append(h("p", {}, "No tenant to show.")); return; }
  const q = new URLSearchParams();
  for (const k of ["store_id", "agent", "number", "disposition", "q"]) if (p.get(k)) q.set(k, p.get(k));
  if (p.get("since")) q.set("since", `${p.get("since")}T00:00:00Z`);
  if (p.get("until")) q.set("until", `${p.get("until")}T23:59:59Z`);
  let rows;
  try { rows = await api(`/api/tenants/${enc(tenant)}/cdrs?${q}`); } catch (e) { out.append(problem(e)); return; }
  const download = (name, type, text) => { const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name }); document.body.append(a); a.click(); a.remove(); };
  const cols = ["invite_at", "call_id", "store_id", "agent", "caller", "did", "duration_s", "disposition"];
  const csv = () => [cols.join(","), ...rows.map((r) => cols.map((c) => `"${String(r[c] ?? "").replaceAll('"', '""')}"`).join(","))].join("\r\n");
  out.append(h("div", { class: "actions" }, h("span", {}, `${rows.length} call${rows.length === 1 ? "" : "s"}`),
    h("button", { type: "button", class: "secondary", id: "export-csv", onclick: () => download(`calls-${tenant}.csv`, "text/csv", csv()) }, "Export CSV"),
    h("button", { type: "button", class: "secondary", id: "export-json", onclick: () => download(`calls-${tenant}.json`, "application/json", JSON.stringify(rows, null, 2)) }, "Export JSON")));
  out.append(h("div", { class: "scroll" }, h("table", { class: "stack", id: "cdr-table" },
    h("thead", {}, h("tr", {}, ["When", "Store", "Agent", "Caller", "Number", "Duration", "Disposition", "Call"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", { "data-label": "When" }, fmtTime(r.invite_at)), h("td", { "data-label": "Store" }, r.store_id ?? "-"), h("td", { "data-label": "Agent" }, r.agent ?? "-"),
      h("td", { "data-label": "Caller" }, r.caller ?? "-"), h("td", { "data-label": "Number" }, r.did ?? "-"), h("td", { "data-label": "Duration" }, fmtDur(r.duration_s)),
      h("td", { "data-label": "Disposition" }, r.disposition),
      h("td", { "data-label": "Call" }, h("a", { href: `#/calls/${enc(tenant)}/${enc(r.call_id)}` }, "Open"))))))));
}
function latencyChart(values) {
  if (!values.length) return h("p", { class: "muted" }, "No turns measured.");
  const W = 640, H = 220, L = 60, B = 30, max = Math.max(...values) * 1.15, bw = (W - L - 10) / values.length;
  const ms = (v) => (max < 10 ? v.toFixed(1) : String(Math.round(v)));
  const ns = "http://www.w3.org/2000/svg"; const s = (tag, a, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(a)) e.setAttribute(k, v); if (text) e.textContent = text; return e; };
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": "lat-title", id: "latency-chart" });
  svg.append(s("title", { id: "lat-title" }, `Per-turn latency: ${values.map((v, i) => `turn ${i + 1} ${ms(v)} ms`).join(", ")}`));
  for (const f of [0, 0.5, 1]) { const y = H - B - f * (H - B - 10); svg.append(s("line", { x1: L, x2: W - 10, y1: y, y2: y, stroke: "#d0d7de" }), s("text", { x: 4, y: y + 4 }, `${ms(f * max)} ms`)); }
  values.forEach((v, i) => { const bh = (v / max) * (H - B - 10), x = L + i * bw + 4, y = H - B - bh;
    svg.append(s("rect", { x, y, width: Math.max(4, bw - 8), height: bh, fill: "#0b5cad" }), s("text", { x: x + 2, y: y - 3 }, `${ms(v)} ms`), s("text", { x: x + 2, y: H - 10 }, `#${i + 1}`)); });
  return svg;
}
// The cascade's stages of each turn: ms from the caller's speech end (CDR "turn" events),
// cut into the spans STT / model / TTS an operator asks about; a table carries the same figures.
const STAGES = [["turn end", "end_of_turn", "#8c959f"], ["STT", "transcript_final", "#0b5cad"], ["model", "first_sentence", "#b35900"], ["TTS", "tts_first_byte", "#1a7f37"], ["send", "first_rtp", "#6e40c9"]];
function stageSpans(st) {
  let prev = 0;
  return STAGES.map(([name, key]) => {
    const v = st[key];
    if (typeof v !== "number") return [name, null];
    const span = Math.max(0, v - prev); prev = Math.max(prev, v); return [name, span];
  });
}
function stageChart(stages) {
  if (!stages.length) return null;
  const rows = stages.map(stageSpans), totals = rows.map((r) => r.reduce((a, [, v]) => a + (v || 0), 0));
  const W = 640, L = 44, R = 70, RH = 26, H = rows.length * RH + 34, max = Math.max(1, ...totals);
  const ns = "http://www.w3.org/2000/svg"; const s = (tag, a, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(a)) e.setAttribute(k, v); if (text) e.textContent = text; return e; };
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": "stage-title", id: "stage-chart" });
  svg.append(s("title", { id: "stage-title" }, `Per-stage latency: ${rows.map((r, i) => `turn ${i + 1}: ${r.map(([n, v]) => `${n} ${v == null ? "not seen" : Math.round(v) + " ms"}`).join(", ")}`).join("; ")}`));
  rows.forEach((r, i) => {
    const y = 4 + i * RH; let x = L;
    svg.append(s("text", { x: 4, y: y + 16 }, `#${i + 1}`));
    r.forEach(([name, v], k) => {
      if (!v) return; const w = (v / max) * (W - L - R);
      svg.append(s("rect", { x, y, width: Math.max(1, w), height: RH - 8, fill: STAGES[k][2], "data-stage": name }));
      if (w > 34) svg.append(s("text", { x: x + 3, y: y + 13, fill: "#fff", class: "in-bar" }, name));
      x += w;
    });
    svg.append(s("text", { x: x + 4, y: y + 14 }, `${Math.round(totals[i])} ms`));
  });
  const ly = H - 10; let lx = L;
  for (const [name, , color] of STAGES) { svg.append(s("rect", { x: lx, y: ly - 9, width: 10, height: 10, fill: color }), s("text", { x: lx + 13, y: ly }, name)); lx += 13 + name.length * 7 + 16; }
  const table = h("table", { id: "stage-table", class: "stack figures" }, h("caption", {}, "Per-stage latency, ms"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Turn"), STAGES.map(([n]) => h("th", { scope: "col" }, n)), h("th", { scope: "col" }, "Total"))),
    h("tbody", {}, rows.map((r, i) => h("tr", {}, h("th", { scope: "row", "data-label": "Turn" }, `#${i + 1}`),
      r.map(([n, v]) => h("td", { "data-label": n }, v == null ? "-" : String(Math.round(v)))), h("td", { "data-label": "Total" }, String(Math.round(totals[i])))))));
  return h("div", { id: "stages" }, h("p", { class: "muted" }, "Cascade: from the caller's speech end, the end of turn detection, speech-to-text, the model to its first sentence, text-to-speech to its first audio, and the first RTP packet sent."), svg, h("div", { class: "scroll" }, table));
}
async function viewRecord(tenant, callId) {
  let c;
  try { c = await api(`/api/tenants/${enc(tenant)}/cdrs/${enc(callId)}`); } catch (e) { $main().replaceChildren(h("h1", {}, "Call"), problem(e)); return; }
  const dur = c.answer_at && c.end_at ? (new Date(c.end_at) - new Date(c.answer_at)) / 1000 : null;
  const audio = h("audio", { controls: true, id: "recording", preload: "metadata" });
  const rec = h("div", {}, c.recording_path ? audio : h("p", { class: "muted" }, "No recording kept for this call."));
  const tr = c.transfer;
  const stages = (c.events || []).filter((e) => e.kind === "turn" && e.stages).map((e) => e.stages);
  $main().replaceChildren(
    h("p", {}, h("a", { href: `#/calls?tenant=${enc(tenant)}` }, "← Call records")), h("h1", {}, `Call ${c.call_id}`),
    h("div", { class: "grid" },
      h("dl", { class: "kv card" }, ...[["Tenant", c.tenant], ["Store", c.store_id], ["Agent", c.agent], ["Caller", c.caller], ["Number", c.did], ["Started", fmtTime(c.invite_at)], ["Duration", fmtDur(dur)], ["Disposition", c.disposition], ["Ended by", c.hangup_by], ["Codec", `${c.codec ?? "-"} ↔ ${c.ai_format ?? "-"}`]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "-")])),
      h("dl", { class: "kv card", id: "rtp" }, h("dt", {}, "Transfer"), h("dd", {}, tr ? `${tr.destination} (${tr.uri}): ${tr.outcome}${tr.status ? " " + tr.status : ""}` : "none"),
        ...Object.entries(c.rtp || {}).flatMap(([k, v]) => [h("dt", {}, `RTP ${k}`), h("dd", {}, typeof v === "number" ? String(Math.round(v * 100) / 100) : String(v))]),
        h("dt", {}, "Tokens"), h("dd", {}, String(c.usage ? c.usage.total_tokens : 0)))),
    h("h2", {}, "Recording (caller left, agent right)"), rec,
    h("h2", {}, "Transcript and tool calls"), timeline(c.transcript || [], c.tool_calls || []),
    h("h2", {}, "Per-turn latency"), latencyChart(c.turn_latencies_ms || []),
    ...(stages.length ? [h("h2", {}, "Per-stage latency"), stageChart(stages)] : []),
    h("h2", {}, "Tool calls"), (c.tool_calls || []).length ? h("div", {}, c.tool_calls.map((t) => h("div", { class: "card" }, h("strong", {}, t.name), ` ${fmtMs(t.duration_ms)}`,
      h("pre", {}, `arguments: ${JSON.stringify(t.arguments, null, 1)}\n${t.error ? "error: " + t.error : "result: " + JSON.stringify(t.result, null, 1)}`)))) : h("p", { class: "muted" }, "None."));
  if (c.recording_path) {
    try {
      const r = await api(`/api/tenants/${enc(tenant)}/cdrs/${enc(callId)}/recording`, { raw: true });
      if (S.blob) URL.revokeObjectURL(S.blob);
      S.blob = URL.createObjectURL(await r.blob()); audio.src = S.blob;
    } catch (e) { rec.replaceChildren(problem(e)); }
  }
}

// ---- tenants and their objects
const KINDS = { stores: "id", agents: "name", dids: "number", trunks: "name", destinations: "name" };
async function viewTenants() {
  $main().replaceChildren(h("h1", {}, "Tenants"), h("ul", { id: "tenant-list" }, S.tenants.map((t) => h("li", {}, h("a", { href: `#/tenants/${enc(t.id)}` }, t.id),
    ` ${t.name || ""} `, t.source === "file" ? h("span", { class: "badge" }, "config file, read-only") : null))));
}
async function viewTenant(tid) {
  const box = h("div", { id: "tenant-objects", "aria-busy": "true" });
  $main().replaceChildren(h("p", {}, h("a", { href: "#/tenants" }, "← Tenants")), h("h1", {}, `Tenant ${tid}`), box);
  for (const [kind, key] of Object.entries(KINDS)) {
    let items;
    try { items = await api(`/api/tenants/${enc(tid)}/${kind}`); } catch (e) { box.append(h("h2", {}, kind), problem(e)); if (e.status === 404) return; continue; }
    box.append(h("h2", {}, kind), items.length ? h("ul", {}, items.map((it) => h("li", {}, h("a", { href: `#/tenants/${enc(tid)}/${kind}/${enc(it[key])}` }, it[key]),
      " ", h("span", { class: "muted" }, kind === "dids" ? `→ ${it.target_type} ${it.target_ref ?? ""}` : kind === "destinations" ? it.uri : kind === "agents" ? `voice ${it.voice ?? "-"}` : it.name ?? "")))) : h("p", { class: "muted" }, "None."));
  }
  box.setAttribute("aria-busy", "false");
}
const SIMPLE = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);
async function viewItem(tid, kind, key) {
  let it;
  try { it = await api(`/api/tenants/${enc(tid)}/${kind}/${enc(key)}`); } catch (e) { $main().replaceChildren(h("h1", {}, key), problem(e)); return; }
  const inputs = {};
  const fields = Object.entries(it).filter(([k]) => k !== "tenant_id").map(([k, v]) => {
    const id = `e-${k}`, eid = `${id}-error`;
    const long = k === "instructions" || k === "greeting";
    const inp = SIMPLE(v) && !long ? h("input", { id, name: k, value: v ?? "", "aria-describedby": eid }) : h("textarea", { id, name: k, "aria-describedby": eid }, SIMPLE(v) ? (v ?? "") : JSON.stringify(v, null, 2));
    inputs[k] = { inp, orig: v, json: !SIMPLE(v), err: h("div", { id: eid, class: "error", role: "alert", hidden: true }) };
    return h("div", { class: "field" }, h("label", { for: id }, k), inp, inputs[k].err);
  });
  const form = h("form", { id: "edit-form", onsubmit: async (ev) => {
    ev.preventDefault(); const body = {};
    for (const x of Object.values(inputs)) { x.err.hidden = true; x.err.textContent = ""; x.inp.removeAttribute("aria-invalid"); }
    for (const [k, x] of Object.entries(inputs)) {
      const raw = x.inp.value;
      if (x.json) { try { body[k] = JSON.parse(raw || "null"); } catch { fieldError(x, "not valid JSON"); return; } }
      else if (typeof x.orig === "number") body[k] = raw === "" ? null : Number(raw);
      else if (typeof x.orig === "boolean") body[k] = raw === "true";
      else body[k] = raw === "" && x.orig === null ? null : raw;
    }
    try { await api(`/api/tenants/${enc(tid)}/${kind}/${enc(key)}`, { method: "PUT", body }); say("Saved."); document.getElementById("saved").textContent = "Saved."; }
    catch (e) {
      if (e.status === 422 && Array.isArray(e.detail)) {
        let shown = false;
        for (const d of e.detail) { const f = (d.loc || [])[1]; if (inputs[f]) { fieldError(inputs[f], d.msg); shown = true; } }
        if (!shown) say(e.detail.map((d) => d.msg).join("; "));
      } else form.append(problem(e));
    }
  } }, fields, h("div", { class: "actions" }, h("button", { type: "submit", id: "save" }, "Save"), h("span", { id: "saved", role: "status" })));
  $main().replaceChildren(h("p", {}, h("a", { href: `#/tenants/${enc(tid)}` }, `← Tenant ${tid}`)), h("h1", {}, `${kind.slice(0, -1)} ${key}`), form);
}
function fieldError(x, msg) { x.err.textContent = msg; x.err.hidden = false; x.inp.setAttribute("aria-invalid", "true"); x.inp.focus(); }

// ---- activity and overview
async function viewActivity(params) {
  const tenant = new URLSearchParams(params).get("tenant") || (S.tenants[0] || {}).id;
  const sel = tenantSelect("a-tenant", tenant); sel.addEventListener("change", () => { location.hash = `#/activity?tenant=${enc(sel.value)}`; });
  const out = h("div", {});
  $main().replaceChildren(h("h1", {}, "Activity"), h("label", { for: "a-tenant" }, "Tenant", sel), out);
  if (!tenant) return;
  let rows; try { rows = await api(`/api/tenants/${enc(tenant)}/activity`); } catch (e) { out.append(problem(e)); return; }
  const diff = (b, a) => Object.keys({ ...(b || {}), ...(a || {}) }).filter((k) => JSON.stringify((b || {})[k]) !== JSON.stringify((a || {})[k]))
    .map((k) => `${k}: ${JSON.stringify((b || {})[k] ?? null)} → ${JSON.stringify((a || {})[k] ?? null)}`).join("\n");
  out.append(h("div", { class: "scroll" }, h("table", { class: "stack", id: "activity-table" }, h("thead", {}, h("tr", {}, ["When", "Who", "What", "Change"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", { "data-label": "When" }, fmtTime(r.at)), h("td", { "data-label": "Who" }, r.actor),
      h("td", { "data-label": "What" }, `${r.action} ${r.entity} ${r.ref}`), h("td", { "data-label": "Change" }, h("pre", {}, r.action === "update" ? diff(r.before, r.after) : JSON.stringify(r.after || r.before))))))))); 
}
async function viewOverview() {
  let o; try { o = await api("/api/overview"); } catch (e) { $main().replaceChildren(h("h1", {}, "Overview"), problem(e)); return; }
  const hours = o.hours, since = new Date(o.since);
  $main().replaceChildren(h("h1", {}, "Overview"), h("p", { class: "muted" }, `The last ${hours} hours.`), h("div", { id: "overview" }, o.tenants.map((t) => {
    const max = Math.max(1, ...t.calls_per_hour), W = 480, H = 90;
    const ns = "http://www.w3.org/2000/svg"; const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("class", "chart"); svg.setAttribute("role", "img");
    const title = document.createElementNS(ns, "title"); title.textContent = `Calls per hour for ${t.tenant}: ${t.calls_per_hour.join(", ")}`; svg.append(title);
    t.calls_per_hour.forEach((n, i) => { const r = document.createElementNS(ns, "rect"); const bh = (n / max) * (H - 20);
      Object.entries({ x: i * (W / hours) + 1, y: H - 15 - bh, width: Math.max(1, W / hours - 2), height: bh, fill: "#0b5cad" }).forEach(([k, v]) => r.setAttribute(k, v)); svg.append(r); });
    const lbl = document.createElementNS(ns, "text"); lbl.setAttribute("x", 2); lbl.setAttribute("y", H - 2); lbl.textContent = `${since.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} → now, max ${max}/h`; svg.append(lbl);
    const cap = (used, c, unit) => c ? `${used} / ${c} ${unit} (${Math.round((100 * used) / c)} %)` : `${used} ${unit} (no cap)`;
    return h("section", { class: "card", "aria-label": `tenant ${t.tenant}` }, h("h2", {}, t.tenant), svg,
      h("dl", { class: "kv" }, ...[["Calls", t.calls], ["Dispositions", Object.entries(t.dispositions).map(([k, v]) => `${k} ${v}`).join(", ") || "-"], ["AI errors", t.ai_errors],
        ["Turn latency p50 / p99", `${fmtMs(t.p50_ms)} / ${fmtMs(t.p99_ms)} (${t.turns} turns)`], ["Minutes today", cap(t.usage_today.minutes, t.caps.minutes_per_day, "min")],
        ["Tokens today", cap(t.usage_today.tokens, t.caps.tokens_per_day, "tokens")]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
  })));
}

// ---- router
async function route() {
  const [path, query] = (location.hash.slice(1) || "/live").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  closeStream(); say("");
  if (!S.token) { viewLogin(); return; }
  if (!S.me) { try { await whoami(); } catch (e) { if (e.status !== 401) $main().replaceChildren(problem(e)); return; } }
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", false);
  const cur = document.querySelector(`nav a[href="#/${parts[0] || "live"}"]`); if (cur) cur.setAttribute("aria-current", "page");
  try {
    const [p0, p1, p2, p3] = parts;
    if (p0 === "login") viewLogin();
    else if (p0 === "live" && p1) await viewLiveCall(p1);
    else if (p0 === "calls" && p2) await viewRecord(p1, p2);
    else if (p0 === "calls") await viewCalls(query || "");
    else if (p0 === "tenants" && p3) await viewItem(p1, p2, p3);
    else if (p0 === "tenants" && p1) await viewTenant(p1);
    else if (p0 === "tenants") await viewTenants();
    else if (p0 === "activity") await viewActivity(query || "");
    else if (p0 === "overview") await viewOverview();
    else await viewLive();
  } catch (e) { if (e.status !== 401) $main().append(problem(e)); }
  if (S.token) document.getElementById("main").focus({ preventScroll: true });
}
window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  // the skip link moves the focus without touching the hash (the hash is the page's route)
  document.querySelector(".skip").addEventListener("click", (ev) => { ev.preventDefault(); $main().focus(); });
  route();
});
