// The operations dashboard: reads the hub's REST API (docs/rest.md) with the bearer token
// given at sign-in (kept in sessionStorage), and draws what finance and operations ask about.
// Every figure is computed here from the API's answers; README.md ("The operations
// dashboard") states each definition.
"use strict";

(function () {
  const TOKEN_KEY = "syncmesh.dashboard.token";
  const PAGE_SIZE = 1000;
  const MAX_PAGES = 20; // per listing: at most 20,000 items are read
  const REFRESH_MS = 30000;
  const HELD_STATES = ["WAITING", "COMPENSATING", "COMPENSATED", "FAILED"];
  const OPEN_ORDER_STATES = new Set(["ORDER_STATUS_BOOKED", "ORDER_STATUS_AMENDED"]);
  const UNAPPLIED = new Set(["PAYMENT_STATUS_UNAPPLIED", "PAYMENT_STATUS_PARTIALLY_APPLIED"]);
  const AMENDED = /\.order\.amended\./;
  const DAY_MS = 86400000;

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let loading = null;

  // --- the API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, reason, message) {
      super(message);
      this.status = status;
      this.reason = reason;
    }
  }

  async function api(path, method, body) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const reply = await fetch(path, {
      method: method || "GET",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    let data = null;
    try {
      data = await reply.json();
    } catch (_) {
      data = null;
    }
    if (!reply.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(reply.status, error.reason || `HTTP_${reply.status}`, error.message || reply.statusText);
    }
    return data;
  }

  // Every page of a List call: {items, truncated}.
  async function listAll(path, field, filter) {
    const items = [];
    let pageToken = "";
    let pages = 0;
    do {
      const query = new URLSearchParams({ pageSize: String(PAGE_SIZE) });
      if (pageToken) query.set("pageToken", pageToken);
      if (filter) query.set("filter", filter);
      const page = await api(`${path}?${query}`);
      items.push(...((page && page[field]) || []));
      pageToken = (page && page.nextPageToken) || "";
      pages += 1;
    } while (pageToken && pages < MAX_PAGES);
    return { items, truncated: Boolean(pageToken) };
  }

  // An optional API (another part of the hub may not serve it): null when the route is absent.
  async function optional(call) {
    try {
      return await call();
    } catch (err) {
      const absent = err.reason === "ROUTE_NOT_FOUND" || err.reason === "HTTP_404" || err.status === 501;
      if (err instanceof ApiError && absent) return null;
      throw err;
    }
  }

  function uuid4() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // --- numbers and words -------------------------------------------------------------------

  // RFC 3339 (protobuf JSON, up to nanoseconds) -> epoch milliseconds; NaN when unset.
  function millis(text) {
    if (!text) return NaN;
    return Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
  }

  function dayMillis(date) {
    return date && date.year ? Date.UTC(date.year, (date.month || 1) - 1, date.day || 1) : NaN;
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds)) return "–";
    if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function age(text, now) {
    return duration((now - millis(text)) / 1000);
  }

  function short(enumName, prefix) {
    return String(enumName || "").replace(prefix, "");
  }

  function average(values) {
    return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
  }

  function countBy(items, key) {
    const counts = new Map();
    for (const item of items) counts.set(key(item), (counts.get(key(item)) || 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  }

  // --- the figures (pure) ------------------------------------------------------------------

  // Invoice generation delay: from the order's booking (else creation) to the invoice's creation,
  // per "region / legal entity" of the invoice; booked orders without an invoice, per the region
  // their legal entity's invoices name.
  function invoiceDelays(orders, invoices, now) {
    const byName = new Map(orders.map((o) => [o.name, o]));
    const invoiced = new Set();
    const regionOf = new Map();
    const groups = new Map();
    const group = (key) => {
      if (!groups.has(key)) groups.set(key, { key, delays: [], waiting: [] });
      return groups.get(key);
    };
    for (const inv of invoices) {
      if (inv.legalEntity && inv.region && !regionOf.has(inv.legalEntity)) regionOf.set(inv.legalEntity, inv.region);
    }
    for (const inv of invoices) {
      const order = inv.order ? byName.get(inv.order) : undefined;
      if (!order) continue;
      invoiced.add(order.name);
      const booked = millis(order.bookTime || order.createTime);
      const created = millis(inv.createTime);
      if (!Number.isFinite(booked) || !Number.isFinite(created)) continue;
      group(`${inv.region || "no region"} / ${inv.legalEntity || "no legal entity"}`).delays.push((created - booked) / 1000);
    }
    for (const order of orders) {
      if (!OPEN_ORDER_STATES.has(order.status) || invoiced.has(order.name)) continue;
      const entity = order.legalEntity || "no legal entity";
      const waited = (now - millis(order.bookTime || order.createTime)) / 1000;
      group(`${regionOf.get(order.legalEntity) || "no region"} / ${entity}`).waiting.push(waited);
    }
    return [...groups.values()]
      .map((g) => ({
        key: g.key,
        invoices: g.delays.length,
        average: average(g.delays),
        longest: g.delays.length ? Math.max(...g.delays) : NaN,
        waiting: g.waiting.length,
        oldestWaiting: g.waiting.length ? Math.max(...g.waiting) : NaN,
      }))
      .sort((a, b) => (b.average || 0) - (a.average || 0) || a.key.localeCompare(b.key));
  }

  // Payment sync lag per source system (the payment's first external reference; else
  // "syncmesh"): whole days from receipt to recording, time from recording to the first
  // application, and what is not applied yet.
  function paymentLags(payments, now) {
    const groups = new Map();
    for (const p of payments) {
      const source = (p.externalReferences && p.externalReferences[0] && p.externalReferences[0].system) || "syncmesh";
      if (!groups.has(source)) groups.set(source, { source, count: 0, recordDays: [], applySeconds: [], open: [] });
      const g = groups.get(source);
      g.count += 1;
      const recorded = millis(p.createTime);
      const received = dayMillis(p.receivedDate);
      if (Number.isFinite(recorded) && Number.isFinite(received)) {
        g.recordDays.push(Math.max(0, Math.floor((recorded - received) / DAY_MS)));
      }
      const applied = (p.applications || []).map((a) => millis(a.applyTime)).filter(Number.isFinite);
      if (applied.length && Number.isFinite(recorded)) g.applySeconds.push((Math.min(...applied) - recorded) / 1000);
      if (UNAPPLIED.has(p.status)) g.open.push((now - recorded) / 1000);
    }
    return [...groups.values()]
      .map((g) => ({
        source: g.source,
        count: g.count,
        recordDays: average(g.recordDays),
        applySeconds: average(g.applySeconds),
        open: g.open.length,
        oldestOpen: g.open.length ? Math.max(...g.open) : NaN,
      }))
      .sort((a, b) => (b.recordDays || 0) - (a.recordDays || 0) || a.source.localeCompare(b.source));
  }

  // --- drawing -------------------------------------------------------------------------------

  function cell(text, attrs) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null || text === "" ? "–" : String(text);
    for (const [key, value] of Object.entries(attrs || {})) td.setAttribute(key, value);
    return td;
  }

  function fill(tableId, rows, empty) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell(empty);
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      tr.append(td);
      body.append(tr);
      return;
    }
    for (const row of rows) body.append(row);
  }

  function tableRow(name, cells) {
    const tr = document.createElement("tr");
    if (name) tr.dataset.name = name;
    tr.append(...cells);
    return tr;
  }

  function tile(id, value, warn) {
    const node = document.querySelector(`[data-testid="${id}"]`);
    node.textContent = String(value);
    node.parentElement.classList.toggle("warn", Boolean(warn));
  }

  function truncatedNote(sectionId, lists) {
    const section = $(sectionId);
    let note = section.querySelector(".truncated");
    if (!lists.some((l) => l.truncated)) {
      if (note) note.remove();
      return;
    }
    if (!note) {
      note = document.createElement("p");
      note.className = "truncated";
      section.querySelector("h2").after(note);
    }
    note.textContent = `Only the first ${PAGE_SIZE * MAX_PAGES} items of a listing are counted.`;
  }

  function drawBacklog(sagas, now) {
    tile("tile-backlog", sagas.length, sagas.length > 0);
    const chart = countBy(sagas, (s) => s.reason || short(s.state, "SAGA_STATE_")).map(([reason, n]) => ({
      label: reason,
      value: n,
      text: `${n} ${n === 1 ? "saga" : "sagas"}`,
    }));
    window.SyncmeshCharts.barChart($("backlog-chart"), chart, {
      title: "Held sagas by reason",
      empty: "No saga is waiting, failed or compensated.",
    });
    const rows = sagas
      .slice()
      .sort((a, b) => millis(a.updateTime) - millis(b.updateTime))
      .map((s) =>
        tableRow(s.name, [
          cell(s.name),
          cell(s.quote),
          cell(s.customer),
          cell(short(s.state, "SAGA_STATE_"), { "data-field": "state" }),
          cell(s.reason, { "data-field": "reason" }),
          cell(s.currentStep),
          cell(s.message),
          cell(age(s.updateTime, now)),
          lineageButton(s.name),
        ]),
      );
    fill("backlog-table", rows, "Nothing held.");
  }

  function drawInvoicing(orders, invoices, now) {
    const groups = invoiceDelays(orders, invoices, now);
    const waiting = groups.reduce((n, g) => n + g.waiting, 0);
    tile("tile-invoicing", waiting, waiting > 0);
    const chart = groups
      .filter((g) => g.invoices > 0)
      .map((g) => ({ label: g.key, value: g.average, text: `avg ${duration(g.average)}` }));
    window.SyncmeshCharts.barChart($("invoice-chart"), chart, {
      title: "Average invoice generation delay by region and legal entity",
      empty: "No invoice of an order yet.",
    });
    const rows = groups.map((g) =>
      tableRow(g.key, [
        cell(g.key),
        cell(g.invoices, { "data-field": "invoices" }),
        cell(duration(g.average), { "data-field": "average", "data-value": g.average }),
        cell(duration(g.longest)),
        cell(g.waiting, { "data-field": "waiting" }),
        cell(duration(g.oldestWaiting)),
      ]),
    );
    fill("invoice-table", rows, "No orders or invoices.");
  }

  function drawPayments(payments, now) {
    const groups = paymentLags(payments, now);
    const open = groups.reduce((n, g) => n + g.open, 0);
    tile("tile-payments", open, open > 0);
    const chart = groups
      .filter((g) => Number.isFinite(g.recordDays))
      .map((g) => ({ label: g.source, value: g.recordDays, text: `${g.recordDays.toFixed(1)} days` }));
    window.SyncmeshCharts.barChart($("payment-chart"), chart, {
      title: "Average days from receipt to recording, by source",
      empty: "No payment recorded.",
    });
    const rows = groups.map((g) =>
      tableRow(g.source, [
        cell(g.source),
        cell(g.count, { "data-field": "count" }),
        cell(Number.isFinite(g.recordDays) ? g.recordDays.toFixed(1) : "", {
          "data-field": "record-days",
          "data-value": g.recordDays,
        }),
        cell(duration(g.applySeconds)),
        cell(g.open, { "data-field": "open" }),
        cell(duration(g.oldestOpen)),
      ]),
    );
    fill("payment-table", rows, "No payments.");
  }

  // Seconds since each vendor change feed was read up to the present (the hub's metrics); null
  // when this hub serves no /metrics.json.
  async function feedLags() {
    return optional(async () => {
      const data = await api("/metrics.json");
      const family = ((data && data.metrics) || []).find((m) => m.name === "syncmesh_sync_lag_seconds");
      return ((family && family.samples) || []).map((s) => ({
        label: `${s.labels.system} (${s.labels.account})`,
        value: Number(s.value),
        text: duration(Number(s.value)),
      }));
    });
  }

  function drawFeeds(lags) {
    $("feeds").hidden = lags === null;
    if (lags === null) return;
    lags.sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
    window.SyncmeshCharts.barChart($("feed-chart"), lags, {
      title: "Time since each vendor change feed was read up to now",
      empty: "No vendor change feed is polled by this hub (no ERP connector configured).",
    });
  }

  function drawAmendments(dead, parked, now) {
    const held = [
      ...dead.filter((d) => AMENDED.test(d.eventType)).map((d) => ({
        name: d.name, order: d.aggregate, consumer: d.consumer, as: "dead letter",
        reason: d.reason, detail: d.lastError, since: d.deadTime,
      })),
      ...parked.filter((p) => AMENDED.test(p.eventType)).map((p) => ({
        name: p.name, order: p.aggregate, consumer: p.consumer, as: "parked",
        reason: p.reason, detail: p.detail || `waits for ${p.waitsFor}`, since: p.parkTime,
      })),
    ];
    tile("tile-amendments", held.length, held.length > 0);
    const rows = held.map((h) =>
      tableRow(h.name, [cell(h.order), cell(h.consumer), cell(h.as), cell(h.reason), cell(h.detail), cell(age(h.since, now))]),
    );
    fill("amendment-table", rows, "No amendment is held.");
  }

  function drawDeadLetters(dead, now) {
    tile("tile-dead", dead.length, dead.length > 0);
    const chart = countBy(dead, (d) => `${d.consumer}: ${d.reason}`).map(([key, n]) => ({
      label: key,
      value: n,
      text: `${n} dead`,
      kind: "bad",
    }));
    window.SyncmeshCharts.barChart($("dead-chart"), chart, {
      title: "Dead letters by consumer and reason",
      empty: "No dead letters.",
    });
    const rows = dead.map((d) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "replay";
      button.textContent = "Replay";
      button.addEventListener("click", () => replay(d, button));
      const action = document.createElement("td");
      action.append(button);
      return tableRow(d.name, [
        cell(d.consumer),
        cell(short(d.eventType, /^com\.syncmesh\./)),
        cell(d.aggregate),
        cell(d.reason, { "data-field": "reason" }),
        cell(d.lastError),
        cell(d.attempts),
        cell(age(d.deadTime, now)),
        cell(short(d.state, "DEAD_LETTER_STATE_"), { "data-field": "state" }),
        action,
      ]);
    });
    fill("dead-table", rows, "No dead letters.");
  }

  async function replay(letter, button) {
    const row = button.closest("tr");
    const state = row.querySelector('[data-field="state"]');
    button.disabled = true;
    state.textContent = "replaying…";
    try {
      const parent = letter.name.split("/deadLetters/")[0];
      const reply = await api(`/v1/${parent}/deadLetters:replay`, "POST", { names: [letter.name], requestId: uuid4() });
      const outcome = (reply.replays || [])[0] || {};
      const status = outcome.status || {};
      if (!status.code) {
        state.textContent = "REPLAYED";
        row.classList.add("done");
      } else {
        const info = (status.details || []).find((d) => d.reason) || {};
        state.textContent = `${info.reason || "FAILED"}: ${status.message || ""}`;
        button.disabled = false;
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return signOut("Your token was refused; sign in again.");
      state.textContent = `${err.reason || "ERROR"}: ${err.message}`;
      button.disabled = false;
      return;
    }
    await refresh(true); // what waited behind it may have moved on
  }

  function drawParked(parked, now) {
    tile("tile-parked", parked.length, parked.length > 0);
    const rows = parked.map((p) =>
      tableRow(p.name, [
        cell(p.consumer),
        cell(short(p.eventType, /^com\.syncmesh\./)),
        cell(p.aggregate),
        cell(p.reason, { "data-field": "reason" }),
        cell(p.waitsFor, { "data-field": "waits-for" }),
        cell(p.detail),
        cell(age(p.parkTime, now)),
        cell(p.expireTime ? new Date(millis(p.expireTime)).toISOString().replace(".000Z", "Z") : ""),
      ]),
    );
    fill("parked-table", rows, "No parked events.");
  }

  // The newest finished reconciliation report, its differences by object type and kind, and the
  // first differences; null when this hub serves no reconciliation API.
  async function latestReconciliation() {
    return optional(async () => {
      const page = await api("/v1/reconciliationReports?pageSize=20");
      const reports = (page && page.reconciliationReports) || [];
      const report = reports.find((r) => r.state === "REPORT_STATE_SUCCEEDED") || null;
      const running = reports.find((r) => r.state === "REPORT_STATE_RUNNING") || null;
      if (!report) return { report: null, running, differences: [], more: false };
      const diffs = await api(`/v1/${report.name}/differences?pageSize=200`);
      return {
        report,
        running,
        differences: (diffs && diffs.differences) || [],
        more: Boolean(diffs && diffs.nextPageToken),
      };
    });
  }

  function paragraph(text, className) {
    const p = document.createElement("p");
    if (className) p.className = className;
    p.textContent = text;
    return p;
  }

  function table(testid, headings, rows) {
    const t = document.createElement("table");
    t.dataset.testid = testid;
    const head = t.createTHead().insertRow();
    for (const h of headings) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    const body = t.createTBody();
    for (const row of rows) body.append(row);
    return t;
  }

  function drawReconciliation(found, now) {
    const body = $("reconciliation-body");
    body.replaceChildren();
    if (found === null) {
      tile("tile-drift", "n/a", false);
      body.append(paragraph("This hub serves no reconciliation API.", "empty"));
      return;
    }
    if (found.running) {
      body.append(paragraph(`${found.running.name} is running (${found.running.currentObjectType || "starting"}).`, "hint"));
    }
    const report = found.report;
    if (!report) {
      tile("tile-drift", "–", false);
      body.append(paragraph("No finished reconciliation report yet (syncmesh reconcile, or the scheduled run).", "empty"));
      return;
    }
    const count = Number(report.differenceCount || 0);
    tile("tile-drift", count, count > 0);
    const info = paragraph(
      `${report.name}: ${count} difference${count === 1 ? "" : "s"} in ${report.recordsRead || 0} records read, ` +
        `${short(report.trigger, "REPORT_TRIGGER_").toLowerCase().replace("_", " ")}` +
        `${report.dryRun ? ", dry run" : ""}, finished ${age(report.endTime, now)} ago.`,
      "hint",
    );
    info.dataset.testid = "reconciliation-report";
    info.dataset.name = report.name;
    info.dataset.count = String(count);
    body.append(info);
    const chart = document.createElement("div");
    chart.className = "chart";
    chart.dataset.testid = "drift-chart";
    body.append(chart);
    const bars = [];
    for (const summary of report.summaries || []) {
      for (const [kind, n] of Object.entries(summary.differences || {})) {
        bars.push({ label: `${summary.objectType}: ${kind}`, value: Number(n), text: `${n}`, kind: "bad" });
      }
    }
    bars.sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
    window.SyncmeshCharts.barChart(chart, bars, {
      title: "Reconciliation differences by object type and kind",
      empty: "The systems agree.",
    });
    const rows = found.differences.map((d, i) =>
      tableRow(`${i}`, [
        cell(d.objectType, { "data-field": "type" }),
        cell(short(d.kind, "DIFFERENCE_KIND_"), { "data-field": "kind" }),
        cell(d.key, { "data-field": "key" }),
        cell(d.system),
        cell(d.field),
        cell(d.expected),
        cell(d.actual),
        cell(short(d.healState, "HEAL_STATE_")),
      ]),
    );
    if (rows.length) {
      body.append(table("drift-table", ["Type", "Kind", "Key", "System", "Field", "Expected", "Actual", "Heal"], rows));
    }
    if (found.more) body.append(paragraph("Only the first 200 differences are listed.", "truncated"));
  }

  function item(kind, text, meta, name) {
    const li = document.createElement("li");
    if (name) li.dataset.name = name;
    const k = document.createElement("span");
    k.className = "kind";
    k.textContent = kind;
    li.append(k, document.createTextNode(text));
    if (meta) {
      const m = document.createElement("div");
      m.className = "meta";
      m.textContent = meta;
      li.append(m);
    }
    return li;
  }

  async function showLineage(name) {
    const body = $("lineage-body");
    body.replaceChildren(paragraph(`Reading the lineage of ${name}…`, "hint"));
    let lineage;
    try {
      lineage = await api(`/v1/lineage?${new URLSearchParams({ name })}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return signOut("Your token was refused; sign in again.");
      const absent = err instanceof ApiError && (err.reason === "ROUTE_NOT_FOUND" || err.status === 501);
      body.replaceChildren(
        paragraph(absent ? "This hub serves no lineage API." : `${err.reason || "ERROR"}: ${err.message}`, "error"),
      );
      return;
    }
    const now = Date.now();
    const chain = document.createElement("div");
    chain.className = "lineage";
    chain.dataset.saga = lineage.saga || "";
    const q = lineage.quote || {};
    const head = document.createElement("ol");
    head.dataset.testid = "lineage-chain";
    head.append(
      item("Quote", `${q.name || ""} (${q.externalSystem || "?"}: ${q.externalId || "?"})`, `customer ${q.customer || "–"}`, q.name),
      item(
        "Saga",
        `${lineage.saga} · ${short(lineage.state, "SAGA_STATE_")}${lineage.reason ? ` · ${lineage.reason}` : ""}`,
        `started ${age(lineage.createTime, now)} ago, last change ${age(lineage.updateTime, now)} ago`,
        lineage.saga,
      ),
    );
    if (q.order) head.append(item("Order", q.order, "", q.order));
    chain.append(head);

    const steps = document.createElement("ol");
    steps.dataset.testid = "lineage-steps";
    for (const step of lineage.steps || []) {
      const docs = (step.documents || [])
        .map((d) => `${d.system} ${d.objectType} ${d.externalId}${d.canonical ? ` → ${d.canonical}` : ""}`)
        .join("; ");
      const why = step.reason ? ` · ${step.reason}${step.message ? `: ${step.message}` : ""}` : "";
      steps.append(
        item(
          `Step ${step.name}`,
          ` · ${short(step.state, "SAGA_STEP_STATE_")} · ${step.attempts || 0} attempt(s)${why}`,
          docs ? `documents: ${docs}` : "",
          step.name,
        ),
      );
    }
    chain.append(paragraph("Saga steps and the documents they made", "hint"), steps);

    const mappings = (lineage.mappings || []).map((m) =>
      tableRow(m.lineId, [
        cell(m.lineId),
        cell(m.product),
        cell(m.targetSystem),
        cell(m.mapping ? `${m.mapping} v${m.mappingVersion || 0}` : "by its syncmesh name"),
        cell(m.externalId),
      ]),
    );
    if (mappings.length) {
      chain.append(
        paragraph("Mappings used", "hint"),
        table("lineage-mappings", ["Line", "Product", "System", "Mapping", "External id"], mappings),
      );
    }
    const events = (lineage.events || []).map((e) =>
      tableRow(e.id, [
        cell(e.time ? new Date(millis(e.time)).toISOString() : ""),
        cell(short(e.type, /^com\.syncmesh\./)),
        cell(`${e.subject}${e.sequence ? `#${e.sequence}` : ""}`),
        cell(e.published ? "yes" : "not yet"),
        cell((e.appliedBy || []).join(", ")),
        cell(e.traceId),
      ]),
    );
    chain.append(
      paragraph("Events", "hint"),
      table("lineage-events", ["Time", "Event", "About", "Published", "Applied by", "Trace"], events),
    );
    const versions = (lineage.conflictPolicyVersions || []).join(", ");
    chain.append(
      paragraph(
        `Ownership policy ${lineage.policyVersion || "–"}${versions ? `; conflicts recorded under ${versions}` : ""}.`,
        "hint",
      ),
    );
    body.replaceChildren(chain);
  }

  function lineageButton(name) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "lineage-link";
    button.textContent = "Lineage";
    button.addEventListener("click", () => {
      $("lineage-name").value = name;
      $("lineage").scrollIntoView();
      showLineage(name);
    });
    const td = document.createElement("td");
    td.append(button);
    return td;
  }

  // --- loading -------------------------------------------------------------------------------

  async function loadAll() {
    const now = Date.now();
    const [sagaLists, orders, invoices, payments, dead, parked, report, feeds] = await Promise.all([
      Promise.all(HELD_STATES.map((s) => listAll("/v1/sagas", "sagas", `state = ${s}`))),
      listAll("/v1/orders", "orders"),
      listAll("/v1/invoices", "invoices"),
      listAll("/v1/payments", "payments"),
      listAll("/v1/deadLetters", "deadLetters", "state = DEAD"),
      listAll("/v1/parkedEvents", "parkedEvents"),
      latestReconciliation(),
      feedLags(),
    ]);
    const sagas = sagaLists.flatMap((l) => l.items);
    drawBacklog(sagas, now);
    drawInvoicing(orders.items, invoices.items, now);
    drawPayments(payments.items, now);
    drawFeeds(feeds);
    drawAmendments(dead.items, parked.items, now);
    drawDeadLetters(dead.items, now);
    drawParked(parked.items, now);
    drawReconciliation(report, now);
    truncatedNote("backlog", sagaLists);
    truncatedNote("invoicing", [orders, invoices]);
    truncatedNote("payments", [payments]);
    truncatedNote("dead-letters", [dead]);
    truncatedNote("parked", [parked]);
    $("refreshed").textContent = `Refreshed ${new Date(now).toLocaleTimeString()}`;
    document.body.dataset.loaded = String(now);
  }

  // Reload the board; `fresh`: also when a load is under way (its answers may predate a change
  // just made), one more load after it.
  async function refresh(fresh) {
    if (loading) return fresh ? loading.then(() => refresh(false)) : loading;
    loading = (async () => {
      $("board-error").textContent = "";
      try {
        await loadAll();
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          signOut("Your token was refused; sign in again.");
        } else if (err instanceof ApiError && err.status === 403) {
          signOut(`This token may not read the operations data (${err.reason}): sign in with the ops token.`);
        } else {
          $("board-error").textContent = `Could not load: ${err.reason || ""} ${err.message}`;
        }
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  function showBoard() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("session").hidden = false;
    clearInterval(timer);
    timer = setInterval(() => refresh(false), REFRESH_MS);
    return refresh(true);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearInterval(timer);
    $("board").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      showBoard();
    });
    $("logout").addEventListener("click", () => signOut(""));
    $("refresh").addEventListener("click", () => refresh(true));
    $("lineage-form").addEventListener("submit", (event) => {
      event.preventDefault();
      showLineage($("lineage-name").value.trim());
    });
    if (sessionStorage.getItem(TOKEN_KEY)) showBoard();
    else signOut("");
  });

  window.SyncmeshDashboard = { invoiceDelays, paymentLags, refresh };
})();
