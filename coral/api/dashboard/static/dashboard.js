// Coral node dashboard. Receives the node's snapshot over Server-Sent Events and redraws
// only the panels whose data changed, keeping keyboard focus and open threads in place.
// Everything from the node is inserted as text (never as HTML).
"use strict";

const TOKEN_KEY = "coral-admin-token";
const state = { snapshot: null, rendered: {}, openThreads: new Set(), clockOffset: 0, source: null };

// ---- small DOM helpers -------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

function shortDid(did) {
  if (!did) return "";
  return did.length > 24 ? `${did.slice(0, 14)}…${did.slice(-6)}` : did;
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return (d ? `${d}d ` : "") + `${hh}h ${String(mm).padStart(2, "0")}m ${String(ss).padStart(2, "0")}s`;
}

function notice(text, ok) {
  const box = $("notices");
  const item = h("p", { class: `notice ${ok ? "ok" : "bad"}` }, text);
  box.replaceChildren(item);
  setTimeout(() => { if (item.parentNode) item.remove(); }, 8000);
}

function agentNames() {
  const names = new Map();
  const agents = state.snapshot && state.snapshot.agents;
  if (agents && agents.local) for (const a of [...agents.local, ...agents.network]) names.set(a.did, a.name);
  return names;
}

function who(did, names) {
  return names.get(did) || shortDid(did);
}

// ---- panels ------------------------------------------------------------------------------

function renderNode(node) {
  $("node-id").textContent = node.node_id;
  $("node-version").textContent = `${node.version} (${node.protocol_version})`;
  $("node-grpc").textContent = node.grpc_address;
}

function tickUptime() {
  const snap = state.snapshot;
  if (!snap) return;
  const nodeNow = Date.now() + state.clockOffset;
  $("node-uptime").textContent = fmtDuration((nodeNow - snap.node.started_at) / 1000);
}

const SERIES = [
  ["messages_per_s", "Messages / s", (v) => v.toFixed(2)],
  ["requests_per_s", "HTTP requests / s", (v) => v.toFixed(2)],
  ["latency_p50_ms", "Latency p50 (ms)", (v) => v.toFixed(1)],
  ["latency_p95_ms", "Latency p95 (ms)", (v) => v.toFixed(1)],
];
const SVG = "http://www.w3.org/2000/svg";

function sparkline(values, label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const points = values.map((v, i) => [i, v]).filter(([, v]) => v !== null);
  const max = Math.max(1e-9, ...points.map(([, v]) => v));
  const span = Math.max(1, values.length - 1);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map(([i, v]) => `${(i / span) * 100},${38 - (v / max) * 36}`).join(" "));
  svg.append(line);
  return svg;
}

function renderRates(rates) {
  const charts = SERIES.map(([key, title, fmt]) => {
    const values = rates.series[key] || [];
    const last = [...values].reverse().find((v) => v !== null);
    const shown = last === undefined ? "–" : fmt(last);
    return h("figure", { class: "chart" },
      h("figcaption", {}, h("span", {}, title), h("span", { class: "value", "data-series": key }, shown)),
      sparkline(values, `${title}: latest ${shown}, last ${values.length} seconds`));
  });
  const gauges = Object.entries(rates.gauges || {}).map(([name, value]) =>
    h("li", {}, `${name.replace(/^coral_/, "").replaceAll("_", " ")}: `, h("b", {}, String(value))));
  const totals = rates.totals || {};
  gauges.push(h("li", {}, "messages routed: ", h("b", {}, String(totals.messages ?? 0))));
  gauges.push(h("li", {}, "rejections: ", h("b", {}, String(totals.rejections ?? 0))));
  $("rates").replaceChildren(...charts, h("ul", { class: "gauges", "aria-label": "current values" }, gauges));
}

function unavailable(panel) {
  return panel && panel.unavailable !== undefined ? h("p", { class: "empty" }, `Unavailable: ${panel.unavailable}`) : null;
}

function agentTable(agents, caption) {
  if (!agents.length) return h("p", { class: "empty" }, `No ${caption.toLowerCase()}.`);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", { class: "label" }, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "name"), h("th", { scope: "col" }, "capabilities"), h("th", { scope: "col" }, "did"))),
    h("tbody", {}, agents.map((a) => h("tr", {},
      h("td", {}, a.name, h("br"), h("span", { class: "label" }, `v${a.version}`)),
      h("td", {}, a.capabilities.map((c) => h("span", { class: "chip" }, c))),
      h("td", {}, h("code", { title: a.did }, shortDid(a.did))))))));
}

function renderAgents(agents) {
  const bad = unavailable(agents);
  if (bad) return $("agents").replaceChildren(bad);
  $("agents").replaceChildren(
    agentTable(agents.local, `Homed here (${agents.local.length})`),
    agentTable(agents.network, `Elsewhere in the network (${agents.network.length})`));
}

function eventText(event, names) {
  const words = [event.name.replaceAll("_", " ")];
  if (event.agent) words.push(who(event.agent, names));
  if (event.by) words.push(`by ${who(event.by, names)}`);
  if (event.summary) words.push(`: ${event.summary}`);
  return words.join(" ");
}

function messageItem(m, names) {
  const parts = m.system && m.event ? [h("p", { class: "msg-text" }, eventText(m.event, names))] : m.parts.map((p) => p.type === "encrypted"
    ? h("span", { class: "chip enc" }, "encrypted")
    : h("p", { class: "msg-text" }, p.type === "text" ? p.text : `[${p.type}] ${p.text}`));
  return h("li", { class: m.system ? "system" : "message", "data-message-id": m.id },
    h("div", { class: "msg-head" },
      h("span", { class: "sender" }, m.system ? "node" : who(m.sender, names)),
      h("span", {}, m.kind),
      m.mentions.length ? h("span", {}, "→ ", m.mentions.map((d) => who(d, names)).join(", ")) : null,
      m.payment ? h("span", {}, `pays ${m.payment.amount} ${m.payment.ledger}`) : null,
      h("time", {}, fmtTime(m.recorded_at))),
    parts);
}

function closeForm(thread) {
  const input = h("input", { id: `close-summary-${thread.id}`, "data-key": `close-summary-${thread.id}`, placeholder: "why it is closed" });
  return h("form", {
    class: "close-form", "data-thread": thread.id,
    onsubmit: (event) => { event.preventDefault(); closeThread(thread.id, input.value); },
  },
  h("label", { for: input.id }, `Closing summary for ${thread.name}`), input,
  h("button", { type: "submit", class: "danger", "data-key": `close-${thread.id}` }, "Close thread"));
}

function renderThreads(threads) {
  const bad = unavailable(threads);
  if (bad) return $("threads").replaceChildren(bad);
  const names = agentNames();
  const canClose = token() && state.snapshot.actions.close_thread;
  const t = threads.totals;
  const head = h("p", {}, `${t.threads_open} open · ${t.threads_closed} closed · ${t.entries} messages stored`);
  if (!threads.recent.length) return $("threads").replaceChildren(head, h("p", { class: "empty" }, "No threads yet."));
  const items = threads.recent.map((th) => {
    const details = h("details", { class: "thread", "data-thread-id": th.id, open: state.openThreads.has(th.id) },
      h("summary", { "data-key": `summary-${th.id}` },
        h("span", { class: "name" }, th.name),
        h("span", { class: `chip ${th.state}` }, th.state),
        th.team_id ? h("span", { class: "chip team" }, "team") : null,
        h("span", { class: "label" }, `${th.strategy} · ${th.participants.length} participants · ${th.last_seq} entries`)),
      h("div", { class: "body" },
        h("p", { class: "label" }, "participants: ", th.participants.map((d) => who(d, names)).join(", ")),
        th.summary ? h("p", { class: "summary" }, h("b", {}, "Summary: "), th.summary) : null,
        h("ol", { class: "messages", "aria-label": `latest messages in ${th.name}` }, th.messages.map((m) => messageItem(m, names))),
        canClose && th.state === "open" && !th.team_id ? closeForm(th) : null));
    details.addEventListener("toggle", () => {
      if (details.open) state.openThreads.add(th.id); else state.openThreads.delete(th.id);
    });
    return details;
  });
  $("threads").replaceChildren(head, ...items);
}

function renderTeams(teams) {
  $("teams-panel").hidden = teams === null;
  if (teams === null) return;
  const bad = unavailable(teams);
  if (bad) return $("teams").replaceChildren(bad);
  if (!teams.length) return $("teams").replaceChildren(h("p", { class: "empty" }, "No teams yet."));
  $("teams").replaceChildren(...teams.map((t) => h("article", { class: "team" },
    h("h3", {}, t.goal),
    h("p", {}, h("span", { class: `chip ${t.open ? "open" : "closed"}` }, t.dissolved ? "dissolved" : t.open ? "open" : "ended"),
      ` budget ${t.budget.amount} ${t.budget.currency} · key epoch ${t.key_epoch}`),
    h("ul", {}, t.members.map((m) => h("li", {}, `${m.role}: `, h("code", { title: m.did }, shortDid(m.did))))))));
}

function transferTable(rows, caption, withExpiry) {
  if (!rows.length) return h("p", { class: "empty" }, `No ${caption.toLowerCase()}.`);
  return h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "label" }, caption),
    h("thead", {}, h("tr", {}, ["from", "to", "amount", withExpiry ? "expires" : "at"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", {}, h("code", { title: r.from }, shortDid(r.from))), h("td", {}, h("code", { title: r.to }, shortDid(r.to))),
      h("td", { class: "num" }, `${r.amount} ${r.ledger}`), h("td", {}, fmtTime(withExpiry ? r.expires_at : r.created_at)))))));
}

function renderLedger(ledger) {
  $("ledger-panel").hidden = ledger === null;
  $("funds-form").hidden = !(token() && state.snapshot.actions.issue_funds);
  if (ledger === null) return;
  const bad = unavailable(ledger);
  if (bad) return $("ledger").replaceChildren(bad);
  const balances = ledger.accounts.length ? h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "label" }, "Balances"),
    h("thead", {}, h("tr", {}, ["account", "kind", "balance", "pending in/out"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ledger.accounts.map((a) => h("tr", {},
      h("td", {}, h("code", { title: a.id }, shortDid(a.id))), h("td", {}, a.kind),
      h("td", { class: "num" }, `${a.balance} ${a.ledger}`), h("td", { class: "num" }, `${a.pending_in} / ${a.pending_out}`))))))
    : h("p", { class: "empty" }, "No accounts.");
  $("ledger").replaceChildren(balances, transferTable(ledger.pending, "Pending escrows", true),
    transferTable(ledger.recent, "Recent transfers", false));
}

function renderPeers(peers) {
  $("peers-panel").hidden = peers === null;
  if (peers === null) return;
  const bad = unavailable(peers);
  if (bad) return $("peers").replaceChildren(bad);
  if (!peers.length) return $("peers").replaceChildren(h("p", { class: "empty" }, "No peers known."));
  const canRemove = token() && state.snapshot.actions.remove_peer;
  $("peers").replaceChildren(h("ul", { class: "peers" }, peers.map((p) => h("li", {},
    h("code", { title: p.node }, shortDid(p.node)), " ",
    h("span", { class: `chip ${p.banned ? "closed" : p.active ? "open" : ""}` }, p.banned ? "removed" : p.active ? "active" : "known"),
    h("span", { class: "label" }, ` ${(p.addresses && (p.addresses.grpc || p.addresses.http)) || ""}`),
    canRemove && !p.banned ? h("button", { type: "button", class: "secondary", "data-key": `peer-${p.node}`, "aria-label": `Remove peer ${p.node}`, onclick: () => removePeer(p.node) }, "Remove") : null))));
}

const PANELS = [
  ["rates", renderRates], ["agents", renderAgents], ["threads", renderThreads],
  ["teams", renderTeams], ["ledger", renderLedger], ["peers", renderPeers],
];

function render(snapshot, force) {
  const focusedKey = document.activeElement && document.activeElement.getAttribute("data-key");
  const focusedValue = document.activeElement && document.activeElement.value;
  state.snapshot = snapshot;
  state.clockOffset = snapshot.generated_at - Date.now();
  renderNode(snapshot.node);
  tickUptime();
  const unlocked = Boolean(token());
  $("mcp-panel").hidden = !(unlocked && snapshot.actions.create_mcp_agent);
  for (const [name, draw] of PANELS) {
    // Redraw a panel only when its data (or the unlocked state) changed.
    const key = JSON.stringify([snapshot[name], unlocked, snapshot.actions]);
    if (!force && state.rendered[name] === key) continue;
    state.rendered[name] = key;
    draw(snapshot[name]);
  }
  if (focusedKey) {
    const again = document.querySelector(`[data-key="${CSS.escape(focusedKey)}"]`);
    if (again && again !== document.activeElement) {
      if (typeof focusedValue === "string" && "value" in again) again.value = focusedValue;
      again.focus();
    }
  }
  const status = $("live-status");
  status.classList.remove("bad");
  // Announced by screen readers, so it changes only when something worth hearing does.
  const t = snapshot.threads && snapshot.threads.totals;
  const text = t ? `Live · ${t.entries} messages in ${t.threads_open} open threads` : "Live";
  if (status.textContent !== text) status.textContent = text;
}

// ---- data: snapshot + Server-Sent Events ----------------------------------------------

function authHeaders() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

function showLocked(text) {
  const status = $("live-status");
  status.classList.add("bad");
  status.textContent = text;
}

async function loadOnce() {
  const response = await fetch("/v1/dashboard/snapshot", { headers: authHeaders() });
  if (response.status === 401) {
    showLocked("This node's views need the admin token: enter it above.");
    return false;
  }
  if (!response.ok) throw new Error(`snapshot: HTTP ${response.status}`);
  render(await response.json(), true);
  return true;
}

function connect() {
  if (state.source) state.source.close();
  const query = token() && state.snapshot && state.snapshot.views_need_token ? `?token=${encodeURIComponent(token())}` : "";
  const source = new EventSource(`/v1/dashboard/events${query}`);
  state.source = source;
  source.addEventListener("snapshot", (event) => render(JSON.parse(event.data), false));
  source.addEventListener("error", () => {
    showLocked("Connection lost; retrying…");
  });
}

async function start() {
  try {
    if (await loadOnce()) connect();
  } catch (error) {
    showLocked(`Cannot reach the node: ${error.message}`);
    setTimeout(start, 3000);
  }
}

// ---- operator actions ------------------------------------------------------------------

async function adminPost(path, body, method = "POST") {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: body === null ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.reason || `HTTP ${response.status}`);
  return data;
}

async function closeThread(threadId, summary) {
  try {
    await adminPost(`/v1/dashboard/admin/threads/${encodeURIComponent(threadId)}/close`, { summary });
    notice(`Thread closed.`, true);
  } catch (error) {
    notice(`Could not close the thread: ${error.message}`, false);
  }
}

async function removePeer(nodeId) {
  try {
    await adminPost(`/v1/admin/peers/${encodeURIComponent(nodeId)}`, null, "DELETE");
    notice(`Peer ${shortDid(nodeId)} removed.`, true);
  } catch (error) {
    notice(`Could not remove the peer: ${error.message}`, false);
  }
}

function wireForms() {
  const input = $("token-input");
  const refreshLock = () => {
    $("token-forget").hidden = !token();
    $("token-save").textContent = token() ? "Replace token" : "Unlock actions";
  };
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    refreshLock();
    notice("Admin token kept for this tab.", true);
    start();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    refreshLock();
    if (state.snapshot) render(state.snapshot, true);
    notice("Admin token forgotten.", true);
  });
  refreshLock();

  $("funds-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const account = $("funds-account").value.trim();
      const amount = Number($("funds-amount").value);
      await adminPost("/v1/admin/ledger/issue", { account, amount });
      notice(`Issued ${amount} to ${shortDid(account)}.`, true);
    } catch (error) {
      notice(`Could not issue funds: ${error.message}`, false);
    }
  });

  $("mcp-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const capabilities = $("mcp-capabilities").value.split(",").map((c) => c.trim()).filter(Boolean);
    try {
      const result = await adminPost("/v1/admin/mcp-agents", {
        name: $("mcp-name").value.trim(), description: $("mcp-description").value, capabilities,
      });
      $("mcp-result").replaceChildren(h("p", {}, `Created ${result.name}. Connect an MCP client to (keep it secret):`),
        h("p", {}, h("code", {}, result.urls.streamable_http)));
      notice(`MCP agent ${result.name} created.`, true);
    } catch (error) {
      notice(`Could not create the agent: ${error.message}`, false);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireForms();
  start();
  setInterval(tickUptime, 1000);
});
