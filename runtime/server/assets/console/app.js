// vigil web console: one page, hash routes, plain DOM and SVG. Everything it
// shows comes from the admin API on the same origin (/v1/...); nothing is
// fetched from anywhere else. See docs/design/0011-console.md.
"use strict";

const REFRESH_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
let refreshTimer = null;

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick" || k === "onchange" || k === "onsubmit") e[k] = v;
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function setStatus(text, error) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

async function api(path, options) {
  const resp = await fetch(path, options);
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : `${resp.status} ${text}`;
    throw new Error(`${path}: ${msg}`);
  }
  return body;
}

const fmt = {
  num(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(digits ?? 2);
  },
  ms(v) {
    if (v === null || v === undefined) return "–";
    if (v < 1000) return `${v} ms`;
    if (v < 120000) return `${(v / 1000).toFixed(1)} s`;
    return `${(v / 60000).toFixed(1)} min`;
  },
  bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
  },
  time(ms) { return ms === null || ms === undefined ? "–" : new Date(ms).toISOString().replace("T", " ").replace("Z", ""); },
};

// "live", "replay", or {"shadow": PRIMARY} as the API writes a kind.
function kindText(kind) {
  return typeof kind === "string" ? kind : `shadow of ${kind.shadow}`;
}

function stateCell(state) {
  return el("span", { class: `state-${state}` }, state);
}

function table(headers, rows, rowClass) {
  return el("table", { class: rowClass ? `${rowClass}-table` : null },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", { class: rowClass }, r.map((c) =>
      c instanceof Node ? el("td", {}, c) : el("td", { class: typeof c === "number" ? "num" : null }, typeof c === "number" ? fmt.num(c) : (c ?? "–")))))));
}

function card(label, value, id) {
  return el("div", { class: "card", id }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

// Asks before a destructive action; resolves true when confirmed.
function confirmAction(text) {
  const modal = document.getElementById("modal");
  document.getElementById("modal-text").textContent = text;
  modal.hidden = false;
  return new Promise((resolve) => {
    const done = (answer) => { modal.hidden = true; resolve(answer); };
    document.getElementById("modal-ok").onclick = () => done(true);
    document.getElementById("modal-cancel").onclick = () => done(false);
  });
}

// ---------------------------------------------------------------- plots

// A line plot of `points` ([[x, y], ...]) in SVG. `opts.marks` are x values
// drawn as red vertical lines (flagged rows), `opts.windows` [x0, x1] ranges
// shaded; `opts.time` labels x as clock time.
function plot(title, points, opts) {
  opts = opts || {};
  const W = opts.width || 420, H = opts.height || 150, L = 48, R = 8, T = 8, B = 20;
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-points": points.length });
  s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  s.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  const box = el("div", { class: "plot", "data-series": opts.name || title }, el("div", { class: "title" }, title), s);
  const xsAll = points.map((p) => p[0]).concat((opts.windows || []).flat(), opts.marks || []);
  if (points.length === 0) {
    s.append(svg("text", { class: "empty", x: L + 10, y: H / 2 }, "no samples yet"));
    return box;
  }
  let x0 = Math.min(...xsAll), x1 = Math.max(...xsAll);
  if (x1 === x0) x1 = x0 + 1;
  let y0 = Math.min(0, ...points.map((p) => p[1])), y1 = Math.max(...points.map((p) => p[1]));
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (const [a, b] of opts.windows || []) {
    s.append(svg("rect", { class: "window", x: sx(a), y: T, width: Math.max(1, sx(b) - sx(a)), height: H - T - B }));
  }
  for (const m of opts.marks || []) {
    s.append(svg("line", { class: "flag", x1: sx(m), y1: T, x2: sx(m), y2: H - B }));
  }
  s.append(svg("polyline", { class: "line", points: points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") }));
  if (points.length <= 300) {
    for (const p of points) s.append(svg("circle", { class: "pt", cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 2 }));
  }
  s.append(svg("text", { x: 2, y: T + 8 }, fmt.num(y1)));
  s.append(svg("text", { x: 2, y: H - B }, fmt.num(y0)));
  const xl = (x) => (opts.time ? new Date(x).toISOString().slice(11, 19) : fmt.num(x));
  s.append(svg("text", { x: L, y: H - 6 }, xl(x0)));
  s.append(svg("text", { x: W - R - 50, y: H - 6 }, xl(x1)));
  return box;
}

function historyPlots(history, names) {
  const byName = Object.fromEntries(history.series.map((s) => [s.name, s.points]));
  return el("div", { class: "plots" }, names.map(([name, title]) => plot(title, byName[name] || [], { time: true, name })));
}

// ---------------------------------------------------------------- cluster

// Every broker of a cluster from GET /v1/cluster: the live members, plus any
// node still named as a partition's leader without being live (it died and
// its partitions have not moved yet). Sorted by node id.
function clusterBrokers(c) {
  const led = {};
  for (const p of c.partitions) if (p.leader !== null) led[p.leader] = (led[p.leader] || 0) + 1;
  const out = c.nodes.map((n) => ({ node_id: n.node_id, kafka: n.kafka_listener, admin: n.admin_addr, alive: true, led: led[n.node_id] || 0 }));
  for (const id of Object.keys(led).map(Number)) {
    if (!out.some((b) => b.node_id === id)) out.push({ node_id: id, kafka: null, admin: null, alive: false, led: led[id] });
  }
  return out.sort((a, b) => a.node_id - b.node_id);
}

function clusterSection(c) {
  const brokers = clusterBrokers(c);
  const moves = c.movements;
  return [
    el("h3", {}, "Brokers ", el("span", { class: "muted" }, `coordinator ${c.coordinator}, this console is served by node ${c.node_id}`)),
    el("table", { id: "cluster-brokers" },
      el("thead", {}, el("tr", {}, ["Node", "Kafka", "Admin", "Alive", "Partitions led"].map((h) => el("th", {}, h)))),
      el("tbody", {}, brokers.map((b) => el("tr", {
        class: `cluster-broker-row${b.node_id === c.node_id ? " this-broker" : ""}`,
        "data-node": b.node_id, "data-alive": String(b.alive), "data-led": b.led,
      },
      el("td", {}, String(b.node_id), b.node_id === c.node_id ? el("span", { class: "badge" }, "this broker") : null),
      el("td", {}, b.kafka ?? "–"), el("td", {}, b.admin ?? "–"),
      el("td", { class: b.alive ? "alive" : "dead" }, b.alive ? "yes" : "no"),
      el("td", { class: "num" }, fmt.num(b.led)))))),
    el("h3", {}, "Partition movements in progress ", el("span", { class: "muted" }, `(handovers node ${c.node_id} is making)`)),
    moves.length === 0 ? el("p", { class: "muted", id: "no-movements" }, "None.") :
      table(["Topic", "Partition", "From", "To", "Reason"], moves.map((m) => [m.topic, m.partition, m.from, m.to, m.reason]), "movement-row"),
  ];
}

// Leader and epoch by "topic/partition" (single broker: this node at the
// partition's epoch).
function leadersByPartition(c) {
  return Object.fromEntries(c.partitions.map((p) => [`${p.topic}/${p.partition}`, p]));
}

// ---------------------------------------------------------------- pages

async function overviewPage() {
  const [o, h, c] = await Promise.all([api("/v1/overview"), api("/v1/history?prefix="), api("/v1/cluster")]);
  const clustered = c.coordinator !== "none";
  const st = o.storage;
  const store = Object.entries(st.object_store_requests).map(([k, v]) => `${k} ${fmt.num(v)}`).join(", ") || "none";
  return [
    el("h2", {}, "Overview"),
    el("div", { class: "cards" },
      card("Cluster", o.cluster_id),
      card("Brokers", clustered ? c.nodes.length : o.brokers.length, "card-brokers"),
      card("Topics", o.topics, "card-topics"),
      card("Partitions", o.partitions),
      card("Deployments", o.deployments, "card-deployments"),
      card("Replays", o.replays),
      card("Produce requests", fmt.num(o.produce_requests)),
      card("Fetch requests", fmt.num(o.fetch_requests)),
      card("Upload lag", fmt.ms(st.upload_lag_ms)),
      card("Cache hit ratio", st.cache_hit_ratio === null ? "–" : `${(st.cache_hit_ratio * 100).toFixed(1)} %`)),
    ...(clustered ? clusterSection(c) : [table(["Node", "Kafka", "Admin"], o.brokers.map((b) => [b.node_id, b.kafka, b.admin]))]),
    el("p", { class: "muted" }, `Object store requests: ${store}`),
    historyPlots(h, [
      ["broker.produce_per_sec", "Produce requests/s"],
      ["broker.fetch_per_sec", "Fetch requests/s"],
      ["storage.appended_bytes_per_sec", "Appended bytes/s"],
      ["storage.upload_lag_ms", "Upload lag (ms)"],
      ["storage.cache_hit_ratio", "Block cache hit ratio"],
      ["storage.object_store_requests_per_sec", "Object store requests/s"],
    ]),
  ];
}

// "partition→leader@epoch" for each partition of `t` (a cluster's topics page).
function leadersText(t, byTp) {
  return t.partitions.map((p) => {
    const l = byTp[`${t.name}/${p.partition}`];
    return !l || l.leader === null ? `${p.partition}→none` : `${p.partition}→${l.leader}@${l.epoch}`;
  }).join(" ");
}

async function topicsPage() {
  const [topics, c] = await Promise.all([api("/v1/topics"), api("/v1/cluster")]);
  const clustered = c.coordinator !== "none";
  const byTp = leadersByPartition(c);
  const headers = ["Topic", "Partitions", "Records", "Size", "Retention (ms)", "Configs"];
  if (clustered) headers.push("Leaders (partition→node@epoch)");
  return [
    el("h2", {}, "Topics"),
    table(headers, topics.map((t) => [
      el("a", { href: `#/topics/${encodeURIComponent(t.name)}`, class: "topic-link" }, t.name),
      t.partitions.length,
      t.partitions.reduce((a, p) => a + p.records, 0),
      el("span", { class: "size", "data-bytes": t.partitions.reduce((a, p) => a + p.size_bytes, 0) }, fmt.bytes(t.partitions.reduce((a, p) => a + p.size_bytes, 0))),
      t.configs["retention.ms"] ?? "default",
      Object.entries(t.configs).map(([k, v]) => `${k}=${v}`).join(", ") || "–",
      clustered ? el("span", { class: "leaders", "data-topic": t.name }, leadersText(t, byTp)) : null,
    ].filter((x) => x !== null)), "topic-row"),
  ];
}

async function topicPage(name) {
  const [topics, c] = await Promise.all([api("/v1/topics"), api("/v1/cluster")]);
  const clustered = c.coordinator !== "none";
  const byTp = leadersByPartition(c);
  const t = topics.find((x) => x.name === name);
  if (!t) throw new Error(`no topic ${name}`);
  const records = el("div", { id: "records" });
  const part = el("select", { id: "rb-partition" }, t.partitions.map((p) => el("option", { value: p.partition }, p.partition)));
  const offset = el("input", { id: "rb-offset", type: "number", placeholder: "latest", size: 8 });
  const limit = el("input", { id: "rb-limit", type: "number", value: 20, min: 1, max: 500, size: 5 });
  // In a cluster only a partition's leader serves its records: start on a
  // partition this broker leads, and for the others name their leader.
  const leaderOf = (p) => (byTp[`${name}/${p}`] || { leader: null }).leader;
  const here = (p) => !clustered || leaderOf(p) === c.node_id;
  const first = t.partitions.find((p) => here(p.partition));
  if (first) part.value = String(first.partition);
  const load = async () => {
    if (!here(Number(part.value))) {
      const l = leaderOf(Number(part.value));
      const node = c.nodes.find((n) => n.node_id === l);
      records.replaceChildren(el("p", { class: "muted", id: "records-elsewhere" }, l === null ?
        `Partition ${part.value} has no live leader now.` :
        `Partition ${part.value} is led by node ${l}${node ? ` (admin ${node.admin_addr})` : ""}: its console shows its records.`));
      return;
    }
    const q = new URLSearchParams({ partition: part.value, limit: limit.value || 20 });
    if (offset.value !== "") q.set("offset", offset.value);
    const page = await api(`/v1/topics/${encodeURIComponent(name)}/records?${q}`);
    records.replaceChildren(recordsTable(page.records));
  };
  const form = el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); load().catch(showError); } },
    el("label", {}, "Partition ", part), el("label", {}, "From offset ", offset), el("label", {}, "Limit ", limit),
    el("button", { type: "submit", id: "rb-load" }, "Load"));
  await load();
  return [
    el("h2", {}, `Topic ${name}`),
    clustered ?
      table(["Partition", "Leader", "Epoch", "Log start", "High watermark", "Records", "Size"], t.partitions.map((p) => {
        const l = byTp[`${name}/${p.partition}`] || { leader: null, epoch: null };
        return [p.partition, l.leader ?? "none", l.epoch, p.log_start_offset, p.high_watermark, p.records, fmt.bytes(p.size_bytes)];
      }), "partition-row") :
      table(["Partition", "Log start", "High watermark", "Records", "Size"], t.partitions.map((p) => [p.partition, p.log_start_offset, p.high_watermark, p.records, fmt.bytes(p.size_bytes)]), "topic-partition-row"),
    el("h3", {}, "Records"), form, records,
  ];
}

function recordsTable(records) {
  if (records.length === 0) return el("p", { class: "muted" }, "No records.");
  return table(["Partition", "Offset", "Timestamp", "Key", "Value", "Headers"], records.map((r) => [
    r.partition, r.offset, fmt.time(r.timestamp), r.key ?? "null", el("pre", {}, r.value ?? "null"),
    el("pre", {}, r.headers.map(([k, v]) => `${k}: ${v ?? "null"}`).join("\n")),
  ]), "record-row");
}

async function groupsPage() {
  const groups = await api("/v1/groups");
  const out = [el("h2", {}, "Consumer groups")];
  if (groups.length === 0) out.push(el("p", { class: "muted" }, "No consumer groups."));
  for (const g of groups) {
    const lag = g.offsets.reduce((a, o) => a + (o.lag ?? 0), 0);
    out.push(el("h3", { class: "group-name" }, `${g.group} `, el("span", { class: "muted" }, `${g.state}, ${g.members.length} members, total lag ${fmt.num(lag)}`)));
    if (g.members.length) out.push(table(["Member", "Client id", "Host"], g.members.map((m) => [m.member_id, m.client_id, m.client_host])));
    out.push(table(["Topic", "Partition", "Committed", "High watermark", "Lag"], g.offsets.map((o) => [o.topic, o.partition, o.committed, o.high_watermark, o.lag]), "group-offset"));
  }
  return out;
}

async function detectorsPage() {
  const ds = await api("/v1/deployments");
  return [
    el("h2", {}, "Detectors"),
    ds.length === 0 ? el("p", { class: "muted" }, "No deployments.") :
      table(["Name", "Kind", "State", "Module", "Inputs", "Alert topic", "Records", "Alerts", "Lag"], ds.map((d) => [
        el("a", { href: `#/detectors/${encodeURIComponent(d.name)}`, class: "deployment-link" }, d.name),
        kindText(d.kind), stateCell(d.state), d.module_label || d.module.slice(0, 12), d.inputs.join(", "), d.output,
        d.partitions.reduce((a, p) => a + p.records, 0),
        d.partitions.reduce((a, p) => a + p.alerts, 0),
        d.partitions.reduce((a, p) => a + p.lag, 0),
      ]), "deployment-row"),
  ];
}

async function deploymentPage(name) {
  const enc = encodeURIComponent(name);
  const [d, h, alerts] = await Promise.all([
    api(`/v1/deployments/${enc}`),
    api(`/v1/history?prefix=${encodeURIComponent(`deployment.${name}.`)}`),
    api(`/v1/deployments/${enc}/alerts?limit=20`),
  ]);
  const act = (verb, label, method, path, danger) => el("button", {
    id: `btn-${verb}`, class: danger ? "danger" : null,
    onclick: async () => {
      if (!(await confirmAction(`${label} deployment ${name}?`))) return;
      try {
        await api(path, { method });
        setStatus(`${label}: ${name} done`);
        location.hash = verb === "undeploy" ? "#/detectors" : location.hash;
        render();
      } catch (e) { showError(e); }
    },
  }, label);
  const errors = d.partitions.filter((p) => p.last_error);
  return [
    el("h2", {}, `Deployment ${name} `, stateCell(d.state)),
    d.error ? el("p", { class: "error-text", id: "deployment-error" }, d.error) : null,
    el("p", {}, `${kindText(d.kind)} · module ${d.module_label || d.module} · inputs ${d.inputs.join(", ")} → ${d.output} · on failure: ${d.on_failure}`),
    el("div", {},
      d.state === "paused" ? act("resume", "Resume", "POST", `/v1/deployments/${enc}/resume`) :
        act("pause", "Pause", "POST", `/v1/deployments/${enc}/pause`),
      act("undeploy", "Undeploy", "DELETE", `/v1/deployments/${enc}`, true)),
    el("h3", {}, "Over time"),
    historyPlots(h, [
      [`deployment.${name}.records_per_sec`, "Records/s"],
      [`deployment.${name}.alerts_per_sec`, "Alerts/s"],
      [`deployment.${name}.lag`, "Lag (records)"],
      [`deployment.${name}.event_age_ms`, "Event age (ms)"],
    ]),
    el("h3", {}, "Partitions"),
    table(["Topic", "Partition", "Offset", "High watermark", "Lag", "Event age", "Batches/s", "Records", "Alerts", "Failed batches", "Bad records", "Last error"],
      d.partitions.map((p) => [p.topic, p.partition, p.offset, p.high_watermark, p.lag, fmt.ms(p.event_age_ms), p.batches_per_sec, p.records, p.alerts, p.failed_batches, p.bad_records, p.last_error ? el("span", { class: "error-text" }, p.last_error) : "–"]),
      "partition-row"),
    el("h3", {}, "Versions"),
    versionsTimeline(d),
    el("h3", {}, "Last error"),
    errors.length ? el("pre", { id: "last-error", class: "error-text" }, errors.map((p) => `${p.topic}[${p.partition}]: ${p.last_error}`).join("\n")) : el("p", { class: "muted", id: "last-error" }, "None."),
    el("h3", {}, "Recent alerts"),
    alertsTable(alerts.records),
  ];
}

// One bar per input partition, one segment per module version over the
// offsets it scored.
function versionsTimeline(d) {
  const W = 760, rowH = 22, L = 230;
  const colors = ["#2f7fd8", "#8250df", "#1a7f37", "#bf8700", "#cf222e"];
  const modules = [...new Set(d.partitions.flatMap((p) => p.versions.map((v) => v.module)))];
  const s = svg("svg", { class: "timeline", width: W, height: rowH * d.partitions.length + 24 });
  d.partitions.forEach((p, i) => {
    const lo = p.start, hi = Math.max(p.offset, lo + 1);
    const sx = (x) => L + (x - lo) / (hi - lo) * (W - L - 10);
    s.append(svg("text", { x: 2, y: i * rowH + 15 }, `${p.topic}[${p.partition}]`));
    for (const v of p.versions) {
      const to = v.to ?? p.offset;
      const seg = svg("rect", { class: "seg version-seg", x: sx(v.from), y: i * rowH + 4, width: Math.max(2, sx(to) - sx(v.from)), height: rowH - 8, fill: colors[modules.indexOf(v.module) % colors.length] });
      seg.append(svg("title", {}, `${v.module_label || v.module.slice(0, 12)}: offsets ${v.from}..${v.to ?? "now"}${v.state ? ` (state ${v.state})` : ""}`));
      s.append(seg);
    }
  });
  const legend = el("div", { class: "muted" }, modules.map((m, i) => {
    const label = d.partitions.flatMap((p) => p.versions).find((v) => v.module === m);
    return el("span", { style: `color:${colors[i % colors.length]}; margin-right: 1em` }, `■ ${(label && label.module_label) || m.slice(0, 12)}`);
  }));
  return el("div", {}, s, legend);
}

function alertsTable(records) {
  if (records.length === 0) return el("p", { class: "muted", id: "no-alerts" }, "No alerts yet.");
  return table(["Time", "Source", "Severity", "Score", "Explanation", "Fields"], records.map((r) => {
    let a = {};
    try { a = JSON.parse(r.value || "{}"); } catch (_) { a = { message: r.value }; }
    const src = a.source || {};
    return [fmt.time(r.timestamp), `${src.topic}[${src.partition}]@${src.offset}`, a.severity ?? "–", a.score ?? "–",
      a.message ?? "–", el("pre", {}, JSON.stringify(a.fields || {}, null, 1))];
  }), "alert-row");
}

// A replay's CPU/IO budget in words ("defaults" when none was given).
function budgetText(b) {
  if (!b) return "defaults";
  const parts = [];
  if (b.parallelism != null) parts.push(`${b.parallelism} partitions at once`);
  if (b.max_bytes_per_sec != null) parts.push(`${(b.max_bytes_per_sec / 1e6).toFixed(1)} MB/s`);
  if (b.cpu_share != null) parts.push(`${b.cpu_share} cores`);
  return parts.length ? parts.join(", ") : "defaults";
}

async function replaysPage() {
  const rs = await api("/v1/replays");
  return [
    el("h2", {}, "Replays"),
    rs.length === 0 ? el("p", { class: "muted" }, "No replay jobs.") :
      table(["Id", "Module", "Topic → alerts", "State", "Progress", "ETA", "Records/s", "Budget", "Elapsed", "Alerts", "Failed batches", "Result"], rs.map((r) => {
        const frac = r.records_total > 0 ? r.records_done / r.records_total : 1;
        return [r.id, r.module_label || r.module.slice(0, 12), `${r.topic} → ${r.output}`, stateCell(r.state),
          el("div", {}, el("div", { class: "progress" }, el("div", { style: `width:${(frac * 100).toFixed(1)}%` })), `${fmt.num(r.records_done)} / ${fmt.num(r.records_total)}`),
          r.eta_secs === null ? "–" : `${r.eta_secs.toFixed(1)} s`, r.rows_per_sec, budgetText(r.budget), fmt.ms(r.elapsed_ms), r.alerts, r.failed_batches,
          r.state === "failed" ? el("span", { class: "error-text" }, r.error) :
            r.state === "completed" ? el("a", { href: `#/diff?b=${encodeURIComponent(r.output)}` }, "compare alerts") : "–"];
      }), "replay-row"),
  ];
}

async function diffPage(params) {
  const ds = await api("/v1/deployments");
  const names = ds.map((d) => d.name);
  // Default: the first shadow against the deployment it shadows.
  const shadow = ds.find((d) => typeof d.kind === "object" && d.kind.shadow);
  const primary = shadow && ds.find((d) => d.name === shadow.kind.shadow);
  const a = el("input", { id: "diff-a", list: "diff-names", value: params.get("a") || (primary ? primary.name : names[0] || "") });
  const b = el("input", { id: "diff-b", list: "diff-names", value: params.get("b") || (shadow ? shadow.name : names[1] || "") });
  const w = el("input", { id: "diff-window", type: "number", min: 0, value: params.get("window") || 0, size: 5 });
  const out = el("div", { id: "diff-result" });
  const run = async () => {
    const r = await api("/v1/diff", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ a: a.value, b: b.value, window: Number(w.value || 0) }) });
    out.replaceChildren(
      el("p", { id: "diff-total" }, `only ${r.a}: ${r.total.only_a} · only ${r.b}: ${r.total.only_b} · both: ${r.total.both}`),
      r.partitions.length === 0 ? el("p", { class: "muted" }, "Neither side has alerts.") :
        table(["Source", "Partition", "Covered", `Only ${r.a}`, `Only ${r.b}`, "Both", `Sample only ${r.a}`, `Sample only ${r.b}`], r.partitions.map((p) => [
          p.topic, p.partition, p.covered ? `${p.covered[0]}..${p.covered[1]}` : "–", p.only_a, p.only_b, p.both,
          p.sample_only_a.join(", ") || "–", p.sample_only_b.join(", ") || "–"]), "diff-row"));
  };
  const form = el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); run().catch(showError); } },
    el("datalist", { id: "diff-names" }, names.map((n) => el("option", { value: n }))),
    el("label", {}, "A ", a), el("label", {}, "B ", b), el("label", {}, "Window ", w), el("button", { type: "submit", id: "diff-run" }, "Compare"));
  if (a.value && b.value) await run().catch(showError);
  return [el("h2", {}, "Shadow vs live: alert diff"), el("p", { class: "muted" }, "A and B name deployments (only their alerts, over the offsets both processed) or alert topics."), form, out];
}

// An eval report (`vigil eval --json` against this broker) chosen by the
// user: each series is read back from the report's input topic (partition i
// = series i, offset = row) and plotted with its flagged rows; NAB's
// combined_windows.json, when given, shades the labelled windows.
let evalReport = null, evalWindows = null;

async function evalPage() {
  const reportInput = el("input", { type: "file", id: "eval-report", accept: ".json" });
  const windowsInput = el("input", { type: "file", id: "eval-windows", accept: ".json" });
  const out = el("div", { id: "eval-result" });
  const read = (input) => input.files[0].text().then(JSON.parse);
  reportInput.onchange = async () => { try { evalReport = await read(reportInput); await drawEval(out); } catch (e) { showError(e); } };
  windowsInput.onchange = async () => {
    try { evalWindows = await read(windowsInput); if (evalReport) await drawEval(out); } catch (e) { showError(e); }
  };
  if (evalReport) await drawEval(out);
  return [
    el("h2", {}, "Eval reports"),
    el("p", { class: "muted" }, "Load a report from `vigil eval --json --admin URL --bootstrap HOST:PORT` run against this broker; its series are read from the report's input topic."),
    el("form", { class: "inline" }, el("label", {}, "Report ", reportInput), el("label", {}, "Windows (combined_windows.json, optional) ", windowsInput)),
    out,
  ];
}

async function seriesRows(topic, partition, n) {
  const rows = [];
  while (rows.length < n) {
    const q = new URLSearchParams({ partition, offset: rows.length, limit: 500 });
    const page = await api(`/v1/topics/${encodeURIComponent(topic)}/records?${q}`);
    if (page.records.length === 0) break;
    for (const r of page.records) {
      let v = null;
      try { v = JSON.parse(r.value).value; } catch (_) { v = null; }
      rows.push({ offset: r.offset, ts: r.timestamp, value: v });
    }
  }
  return rows;
}

function windowRows(rows, name) {
  const parse = (s) => Date.parse(s.replace(" ", "T").replace(/(\.\d{3})\d*$/, "$1") + "Z");
  return ((evalWindows && evalWindows[name]) || []).map(([a, b]) => {
    const [ta, tb] = [parse(a), parse(b)];
    const inside = rows.filter((r) => r.ts >= ta && r.ts <= tb);
    return inside.length ? [inside[0].offset, inside[inside.length - 1].offset] : null;
  }).filter(Boolean);
}

async function drawEval(out) {
  const r = evalReport;
  const scores = Object.entries(r.scores).map(([p, s]) => [p, s.normalized, s.raw, s.windows]);
  const parts = [
    el("p", {}, `Module ${r.module} · replay ${r.replay} · topic ${r.topic} → ${r.output} · ${fmt.num(r.records)} records, ${fmt.num(r.alerts)} alerts, profile ${r.profile}`),
    table(["Profile", "Normalised score", "Raw", "Windows"], scores, "score-row"),
    table(["Series", "Records", "Detections", "Windows", "Windows hit", "False positives", "Raw"], r.files.map((f) => [f.name, f.records, f.detections, f.windows, f.windows_hit, f.false_positives, f.raw]), "eval-file-row"),
  ];
  const plots = el("div", { class: "plots" });
  for (const [i, f] of r.files.entries()) {
    let rows = [];
    try { rows = await seriesRows(r.topic, i, f.records); } catch (e) { setStatus(`series ${f.name}: ${e.message}`, true); }
    const points = rows.filter((x) => typeof x.value === "number").map((x) => [x.offset, x.value]);
    plots.append(plot(`${f.name} (${f.flagged_rows.length} flagged)`, points, { width: 640, height: 180, marks: f.flagged_rows, windows: windowRows(rows, f.name), name: f.name }));
  }
  parts.push(plots);
  out.replaceChildren(...parts);
}

// ---------------------------------------------------------------- routing

const routes = [
  [/^#\/overview$/, overviewPage, "overview"],
  [/^#\/topics$/, topicsPage, "topics"],
  [/^#\/topics\/(.+)$/, topicPage, "topics"],
  [/^#\/groups$/, groupsPage, "groups"],
  [/^#\/detectors$/, detectorsPage, "detectors"],
  [/^#\/detectors\/(.+)$/, deploymentPage, "detectors"],
  [/^#\/replays$/, replaysPage, "replays"],
  [/^#\/diff$/, diffPage, "diff"],
  [/^#\/eval$/, evalPage, "eval"],
];
// Pages that only show state refresh themselves; forms and file inputs do not.
const LIVE = new Set([overviewPage, groupsPage, detectorsPage, deploymentPage, replaysPage]);

function showError(e) {
  setStatus(e.message || String(e), true);
}

let rendering = 0;
async function render() {
  clearTimeout(refreshTimer);
  const token = ++rendering;
  const [path, query] = (location.hash || "#/overview").split("?");
  const params = new URLSearchParams(query || "");
  let found = routes.find(([re]) => re.test(path));
  if (!found) { location.hash = "#/overview"; return; }
  const [re, page, nav] = found;
  const arg = (path.match(re)[1] !== undefined) ? decodeURIComponent(path.match(re)[1]) : params;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === nav);
  try {
    const content = await page(arg, params);
    if (token !== rendering) return; // a newer render started meanwhile
    main.replaceChildren(...content.filter(Boolean));
    main.dataset.page = nav;
    main.dataset.route = path;
    main.dataset.rendered = String(Date.now());
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (token !== rendering) return;
    main.replaceChildren(el("p", { class: "error-text", id: "page-error" }, e.message || String(e)));
    showError(e);
  }
  if (LIVE.has(page)) {
    // Not while a confirmation is open: the page under it would change.
    const tick = () => {
      if (document.getElementById("modal").hidden) render(); else refreshTimer = setTimeout(tick, REFRESH_MS);
    };
    refreshTimer = setTimeout(tick, REFRESH_MS);
  }
}

window.addEventListener("hashchange", render);
render();
