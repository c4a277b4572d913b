// meshql web UI: catalog, product pages and SQL console over the JSON API (/api/v1).
// Plain DOM code, no dependencies. Text from the server is only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const VIEWS = ["login-view", "catalog-view", "product-view", "console-view"];
let me = null;
let running = null; // {id, controller}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function show(view) {
  for (const v of VIEWS) $(v).hidden = v !== view;
  $("nav").hidden = !me;
  $("logout").hidden = !me;
  $("who").textContent = me ? `${me.user}${me.groups.length ? " (" + me.groups.join(", ") + ")" : ""}` : "";
  $("nav-catalog").classList.toggle("active", view === "catalog-view" || view === "product-view");
  $("nav-console").classList.toggle("active", view === "console-view");
}

async function api(path, options) {
  const r = await fetch("/api/v1" + path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (r.status === 401) {
    me = null;
    show("login-view");
    throw new Error("not logged in");
  }
  return r;
}

async function json(path, options) {
  const r = await api(path, options);
  const body = await r.json();
  if (!r.ok) throw Object.assign(new Error(body.error ? `${body.error.code}: ${body.error.message}` : r.statusText), { body });
  return body;
}

// ---------------------------------------------------------------- login

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  const r = await fetch("/api/v1/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: $("login-user").value, password: $("login-password").value }),
  });
  const body = await r.json();
  if (!r.ok) {
    $("login-error").textContent = body.error ? body.error.message : "login failed";
    return;
  }
  me = { user: body.user, groups: body.groups, admin: body.admin };
  $("login-password").value = "";
  route();
}

async function logout() {
  await fetch("/api/v1/logout", { method: "POST" });
  me = null;
  location.hash = "#/";
  show("login-view");
}

// ---------------------------------------------------------------- catalog

let searchTimer = null;

async function catalog(q) {
  show("catalog-view");
  if ($("search").value !== q) $("search").value = q;
  const data = await json("/catalog?q=" + encodeURIComponent(q));
  const domains = $("domains");
  domains.replaceChildren(...data.domains.map((d) =>
    el("span", { class: "chip", title: d.description }, `${d.name} · ${d.products}`)));
  const cards = data.products.map((p) => {
    const card = el("a", { class: "card", href: `#/product/${p.domain}/${p.name}`, "data-product": p.qualified_name },
      el("h3", { text: p.qualified_name }),
      el("p", { text: p.description }),
      el("p", { class: "muted small", text: `owner ${p.owner} · v${p.version} · ${p.format} · ${p.columns.length} columns` }));
    const tags = el("div", { class: "tags" }, ...p.tags.map((t) => el("span", { class: "tag", text: t })));
    card.append(tags);
    if (q && p.matches.length) card.append(el("p", { class: "muted small", text: "matches: " + p.matches.join(", ") }));
    return card;
  });
  $("products").replaceChildren(...cards);
  $("catalog-empty").hidden = cards.length > 0;
  $("catalog-empty").textContent = q ? `No product matches “${q}”.` : "No product to show: you have no access to any product.";
}

// ---------------------------------------------------------------- product page

function fact(dl, name, value) {
  dl.append(el("dt", { text: name }), el("dd", {}, value));
}

function table(columns, rows, id) {
  const t = el("table", { class: "data" });
  if (id) t.id = id;
  t.append(el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { title: c.type || "", text: c.name })))));
  const body = el("tbody");
  appendRows(body, rows);
  t.append(body);
  return t;
}

function appendRows(body, rows) {
  const frag = document.createDocumentFragment();
  for (const row of rows) {
    frag.append(el("tr", {}, ...row.map((v) => {
      if (v === null) return el("td", { class: "null", text: "null" });
      return el("td", { class: typeof v === "number" ? "num" : "", text: String(v) });
    })));
  }
  body.append(frag);
}

function notAvailable(node, what) {
  node.replaceChildren(el("p", { class: "muted", text: `${what}: not available` }));
}

function lineageGraph(lineage, self) {
  const up = lineage.upstream || [], down = lineage.downstream || [];
  const rows = Math.max(up.length, down.length, 1);
  const h = rows * 36 + 10, w = 640, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "lineage");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", "100%");
  const node = (x, y, label, main) => {
    const g = document.createElementNS(ns, "g");
    const r = document.createElementNS(ns, "rect");
    Object.entries({ x: x - 90, y: y - 13, width: 180, height: 26, rx: 6, fill: main ? "#2457c5" : "#e8eefc", stroke: "#2457c5" })
      .forEach(([k, v]) => r.setAttribute(k, v));
    const t = document.createElementNS(ns, "text");
    Object.entries({ x, y: y + 4, "text-anchor": "middle", fill: main ? "#fff" : "#1d2330" }).forEach(([k, v]) => t.setAttribute(k, v));
    t.textContent = label;
    g.append(r, t);
    return g;
  };
  const edge = (x1, y1, x2, y2) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, stroke: "#98a2b3" }).forEach(([k, v]) => l.setAttribute(k, v));
    return l;
  };
  const cy = h / 2;
  up.forEach((p, i) => { const y = 23 + i * 36; svg.append(edge(190, y, 230, cy), node(100, y, p, false)); });
  down.forEach((p, i) => { const y = 23 + i * 36; svg.append(edge(410, cy, 450, y), node(540, y, p, false)); });
  svg.append(node(320, cy, self, true));
  return svg;
}

function usagePanel(node, usage, domain) {
  if (!usage) return notAvailable(node, "Usage");
  const dl = el("dl", { class: "facts" });
  fact(dl, "queries", String(usage.queries));
  fact(dl, "distinct consumers", String(usage.consumers));
  fact(dl, "last read", usage.last_read || "never");
  const bars = el("div", { class: "bars", title: "queries per day" });
  const days = usage.per_day.slice(-30);
  const max = Math.max(1, ...days.map((d) => d.queries));
  for (const d of days) {
    const b = el("div", { title: `${d.day}: ${d.queries} queries, ${d.consumers} consumers` });
    b.style.height = `${Math.max(4, (d.queries / max) * 100)}%`;
    bars.append(b);
  }
  const parts = [dl];
  if (days.length) parts.push(el("p", { class: "muted small", text: "queries per day" }), bars);
  if (usage.by_consumer) {
    parts.push(table([{ name: "consumer" }, { name: "queries" }, { name: "last read" }],
      usage.by_consumer.map((c) => [c.user, c.queries, c.last_read])));
  } else {
    parts.push(el("p", { class: "muted small", text: `Consumer names are shown to members of ${domain} and admins.` }));
  }
  node.replaceChildren(...parts);
}

async function product(domain, name) {
  show("product-view");
  for (const id of ["contract", "freshness", "usage", "quality", "lineage", "deprecation", "preview", "connect", "product-facts"]) $(id).replaceChildren();
  $("product-title").textContent = `${domain}.${name}`;
  $("product-description").textContent = "";
  let p;
  try {
    p = await json(`/products/${encodeURIComponent(domain)}/${encodeURIComponent(name)}`);
  } catch (e) {
    $("product-description").textContent = e.message;
    return;
  }
  $("product-description").textContent = p.description;
  const facts = $("product-facts");
  fact(facts, "owner", p.owner);
  fact(facts, "version", p.version);
  fact(facts, "format", p.format);
  fact(facts, "status", el("span", { class: "badge " + (p.status === "healthy" ? "ok" : "bad"), text: p.status }));
  if (p.deprecation && p.deprecation.deprecated) fact(facts, "deprecated", el("span", { class: "badge bad", text: p.deprecation.message || "deprecated" }));
  fact(facts, "tags", p.tags.join(", ") || "—");
  if (p.access.restricted) {
    const what = [];
    if (p.access.masked_columns.length) what.push("masked columns: " + p.access.masked_columns.join(", "));
    if (p.access.row_filtered) what.push("rows filtered for you");
    fact(facts, "your access", what.join("; ") || "some columns only");
  }
  const contract = $("contract");
  contract.append(el("thead", {}, el("tr", {}, ...["column", "type", "nullable", "classification", "key", "description"].map((h) => el("th", { text: h })))));
  const cbody = el("tbody");
  for (const c of p.contract.columns) {
    const name = el("td", {}, c.name, " ");
    if (c.access === "masked") name.append(el("span", { class: "badge masked", text: "masked" }));
    cbody.append(el("tr", {}, name, el("td", { text: c.type }), el("td", { text: c.nullable ? "yes" : "no" }),
      el("td", {}, c.classification ? el("span", { class: "badge pii", text: c.classification }) : ""),
      el("td", { text: c.primary_key ? "PK" : "" }), el("td", { text: c.description })));
  }
  contract.append(cbody);
  const fr = $("freshness");
  fact(fr, "SLA", p.sla.freshness ? `fresher than ${p.sla.freshness}` : "none");
  if (p.freshness) {
    const f = p.freshness;
    if (f.last_modified) fact(fr, "last change", f.last_modified);
    if (f.data_version !== null && f.data_version !== undefined) fact(fr, "Delta version", String(f.data_version));
    if (f.files !== null && f.files !== undefined) fact(fr, "files", String(f.files));
    if (f.sla_met !== null && f.sla_met !== undefined) fact(fr, "SLA met", el("span", { class: "badge " + (f.sla_met ? "ok" : "bad"), text: f.sla_met ? "yes" : "no" }));
    fact(fr, "status", f.status_detail ? `${f.status}: ${f.status_detail}` : f.status);
    if (f.at_risk_upstream) fact(fr, "at risk from", f.at_risk_upstream);
  }
  usagePanel($("usage"), p.usage, p.domain);
  if (p.quality && p.quality.available && p.quality.results.length) {
    $("quality").append(table([{ name: "rule" }, { name: "type" }, { name: "severity" }, { name: "status" }, { name: "observed" }, { name: "checked" }],
      p.quality.results.map((r) => [r.rule, r.type, r.severity, r.status, r.observed ?? null, r.checked_at ?? null]), "quality-table"));
  } else if (p.quality && p.quality.available) $("quality").append(el("p", { class: "muted", text: "No quality rules in this product's contract." }));
  else notAvailable($("quality"), "Quality results");
  if (p.lineage && p.lineage.available) $("lineage").append(lineageGraph(p.lineage, p.qualified_name));
  else notAvailable($("lineage"), "Lineage");
  if (p.deprecation && p.deprecation.available) {
    $("deprecation").append(el("p", { text: p.deprecation.deprecated ? (p.deprecation.message || "deprecated") : "The product is not deprecated." }));
    for (const c of p.deprecation.columns || []) $("deprecation").append(el("p", { text: `column ${c.column}: ${c.message}` }));
  } else notAvailable($("deprecation"), "Deprecation");
  const c = p.connect;
  $("connect").append(
    el("p", {}, "Flight SQL: ", el("code", { text: c.flight_url })),
    el("h3", { text: "Python (ADBC)" }), el("pre", { text: c.adbc_python }),
    el("h3", { text: "JDBC URL" }), el("pre", { text: c.jdbc_url }),
    el("h3", { text: "SQLAlchemy URI" }), el("pre", { text: c.sqlalchemy_uri }),
    el("p", {}, el("a", { href: "#/console?sql=" + encodeURIComponent(c.sql), text: "Open in the SQL console" })));
  $("preview").append(el("p", { class: "muted", text: "loading…" }));
  try {
    const pv = await json(`/products/${encodeURIComponent(domain)}/${encodeURIComponent(name)}/preview`);
    $("preview").replaceChildren(table(pv.columns, pv.rows, "preview-table"),
      el("p", { class: "muted small", text: `first ${pv.rows.length} rows` }));
  } catch (e) {
    $("preview").replaceChildren(el("p", { class: "error", text: e.message }));
  }
}

// ---------------------------------------------------------------- console

function setStatus(text, state) {
  const s = $("status");
  s.textContent = text;
  s.dataset.state = state;
  s.classList.toggle("failed", state === "failed" || state === "cancelled");
}

function downloadLinks() {
  const sql = $("sql").value;
  for (const f of ["csv", "parquet", "arrow"]) {
    $("dl-" + f).href = `/api/v1/download?format=${f}&sql=${encodeURIComponent(sql)}`;
  }
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function run() {
  if (running) return;
  const sql = $("sql").value;
  const maxRows = Math.max(1, Math.min(10000, parseInt($("max-rows").value, 10) || 1000));
  const controller = new AbortController();
  running = { id: null, controller };
  $("run").disabled = true;
  $("cancel").disabled = false;
  $("result").replaceChildren();
  setStatus("running…", "running");
  const started = performance.now();
  let body = null, rows = 0;
  try {
    const r = await api("/query", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sql, max_rows: maxRows }),
      signal: controller.signal,
    });
    if (!r.ok) {
      const e = await r.json();
      setStatus(`${e.error.code}: ${e.error.message}`, "failed");
      return;
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (msg.type === "start") {
          running.id = msg.query_id;
          const t = table(msg.columns, [], "result-table");
          body = t.querySelector("tbody");
          $("result").replaceChildren(t);
        } else if (msg.type === "rows") {
          appendRows(body, msg.rows);
          rows += msg.rows.length;
          setStatus(`running… ${rows} rows, ${((performance.now() - started) / 1000).toFixed(1)} s`, "running");
        } else if (msg.type === "end") {
          setStatus(`${msg.rows} rows${msg.truncated ? ` (stopped at the row cap of ${maxRows})` : ""} · ${fmtBytes(msg.bytes)} · ${msg.elapsed_ms} ms`, "done");
        } else if (msg.type === "error") {
          setStatus(msg.code === "CANCELLED" ? `Cancelled after ${msg.rows} rows, ${msg.elapsed_ms} ms` : `${msg.code}: ${msg.message}`,
            msg.code === "CANCELLED" ? "cancelled" : "failed");
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") setStatus("Cancelled", "cancelled");
    else setStatus(e.message, "failed");
  } finally {
    running = null;
    $("run").disabled = false;
    $("cancel").disabled = true;
    loadHistory();
  }
}

async function cancel() {
  if (!running) return;
  setStatus("cancelling…", "running");
  if (running.id) {
    try {
      await json(`/queries/${encodeURIComponent(running.id)}/cancel`, { method: "POST" });
      return;
    } catch (e) { /* fall back to closing the connection */ }
  }
  running.controller.abort();
}

async function loadHistory() {
  try {
    const h = await json("/history?limit=20");
    const t = $("history");
    t.replaceChildren(el("thead", {}, el("tr", {}, ...["time", ...(me && me.admin ? ["user"] : []), "sql", "products", "rows", "ms", "outcome"].map((x) => el("th", { text: x })))));
    const b = el("tbody");
    for (const q of h.queries) {
      const cells = [q.time, ...(me && me.admin ? [q.user] : []), q.sql || `sha256 ${q.sql_sha256.slice(0, 12)}…`,
        q.products.map((p) => p.product).join(", "), q.rows, q.duration_ms, q.outcome + (q.error ? `: ${q.error}` : "")];
      b.append(el("tr", {}, ...cells.map((c) => el("td", { text: String(c) }))));
    }
    t.append(b);
  } catch (e) { /* shown by the caller's status */ }
}

function consoleView(params) {
  show("console-view");
  const sql = params.get("sql");
  if (sql) $("sql").value = sql;
  if (!$("sql").value) $("sql").value = "SELECT * FROM meshql.products";
  downloadLinks();
  loadHistory();
}

// ---------------------------------------------------------------- routing

async function route() {
  if (!me) {
    try {
      me = await json("/me");
    } catch (e) {
      show("login-view");
      return;
    }
  }
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "product" && parts.length === 3) await product(parts[1], parts[2]);
    else if (parts[0] === "console") consoleView(params);
    else await catalog(params.get("q") || "");
  } catch (e) {
    if (me) setStatus(e.message, "failed");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const q = $("search").value.trim();
      window.history.replaceState(null, "", q ? `#/?q=${encodeURIComponent(q)}` : "#/");
      catalog(q);
    }, 200);
  });
  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", cancel);
  $("sql").addEventListener("input", downloadLinks);
  $("sql").addEventListener("keydown", (e) => { if ((e.ctrlKey || e.metaKey) && e.key === "Enter") run(); });
  window.addEventListener("hashchange", route);
  route();
});
