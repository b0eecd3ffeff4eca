// obliviate dashboard: vanilla JS, no build step. Renders with textContent only (never
// parsed as HTML), so no server-provided string can become markup.
"use strict";

(function () {
  const STORE = "obliviate.apiKey";
  const REFRESH_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STATES = ["queued", "running", "completed", "denied", "dead"];
  const $ = (id) => document.getElementById(id);
  let timer = null;

  function keyFromFragment() {
    const match = /(?:^|&)key=([^&]+)/.exec(window.location.hash.slice(1));
    if (!match) return null;
    // Drop the key from the address bar and history as soon as it is read.
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return decodeURIComponent(match[1]);
  }

  function setStatus(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.className = kind || "";
  }

  async function api(path) {
    const key = sessionStorage.getItem(STORE);
    const response = await fetch(path, { headers: { Authorization: "Bearer " + key } });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      const error = new Error(response.status + ": " + detail);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function fillTable(id, rows) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
      return tr;
    }));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return (seconds * 1000).toFixed(0) + " ms";
    if (seconds < 120) return seconds.toFixed(1) + " s";
    if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  function barChart(id, points, label) {
    // points: [{value, title}] oldest first. Bars scaled to the largest value.
    const svg = $(id);
    const W = 600, H = 220, left = 48, bottom = 24, top = 10;
    const nodes = [];
    const axis = (x1, y1, x2, y2) => {
      const line = document.createElementNS(SVG_NS, "line");
      line.setAttribute("class", "axis");
      for (const [k, v] of Object.entries({ x1, y1, x2, y2 })) line.setAttribute(k, v);
      return line;
    };
    const text = (x, y, content, anchor) => {
      const t = document.createElementNS(SVG_NS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y);
      if (anchor) t.setAttribute("text-anchor", anchor);
      t.textContent = content;
      return t;
    };
    nodes.push(axis(left, top, left, H - bottom), axis(left, H - bottom, W - 8, H - bottom));
    if (!points.length) {
      nodes.push(text(W / 2, H / 2, "no " + label + " yet", "middle"));
      svg.replaceChildren(...nodes);
      svg.dataset.points = "0";
      return;
    }
    const max = Math.max(...points.map((p) => p.value), 1e-9);
    nodes.push(text(left - 4, top + 8, duration(max), "end"), text(left - 4, H - bottom, "0", "end"));
    const slot = (W - 8 - left) / points.length;
    points.forEach((p, i) => {
      const h = Math.max(1, (p.value / max) * (H - bottom - top));
      const rect = document.createElementNS(SVG_NS, "rect");
      rect.setAttribute("class", "bar");
      rect.setAttribute("x", (left + i * slot + slot * 0.15).toFixed(1));
      rect.setAttribute("width", Math.max(1, slot * 0.7).toFixed(1));
      rect.setAttribute("y", (H - bottom - h).toFixed(1));
      rect.setAttribute("height", h.toFixed(1));
      rect.setAttribute("data-value", String(p.value));
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = p.title;
      rect.appendChild(title);
      nodes.push(rect);
    });
    nodes.push(text(left, H - 6, "oldest"), text(W - 8, H - 6, "latest", "end"));
    svg.replaceChildren(...nodes);
    svg.dataset.points = String(points.length);
  }

  function renderSummary(summary) {
    for (const state of ["queued", "running", "completed", "dead"]) {
      $("card-" + state).textContent = String(summary.counts[state] || 0);
    }
    $("card-dead").className = "value" + (summary.counts.dead ? " bad" : "");
    $("card-oldest").textContent = duration(summary.oldest_unfinished_age_seconds);
    $("card-sla").textContent = (summary.max_sla_fraction * 100).toFixed(3) + " %";
    $("card-past").textContent = String(summary.past_deadline);
    $("card-past").className = "value" + (summary.past_deadline ? " bad" : "");
    $("card-leases").textContent = String(summary.leases_held);
    const models = Object.keys(summary.by_model).sort();
    fillTable("queue-table", models.map((m) => [m, ...STATES.map((s) => summary.by_model[m][s] || 0)]));
    const retrains = summary.recent_retrains.slice().reverse();
    barChart("retrain-chart", retrains.map((r) => ({
      value: r.retrain_seconds,
      title: r.model + ": " + duration(r.retrain_seconds) + ", " + r.shards_retrained +
        " shard(s), batch of " + r.batch_size,
    })), "retrains");
    barChart("completion-chart", retrains.map((r) => ({
      value: r.completion_seconds,
      title: r.model + ": accepted to completed in " + duration(r.completion_seconds),
    })), "completions");
  }

  function renderRequests(list) {
    fillTable("requests-table", list.requests.map((r) => {
      const shards = r.result && r.result.affected_components ? r.result.affected_components.length : "–";
      const id = el("td", r.id.slice(0, 12), "mono");
      if (r.parent_id) id.title = "follow-up of " + r.parent_id;
      else if (r.follow_ups && r.follow_ups.length) id.title = r.follow_ups.length + " follow-up(s)";
      return [
        id, r.model, el("td", r.status, "state-" + r.status), r.parent_id ? r.mode + " (follow-up)" : r.mode,
        r.attempts, when(r.created_at), when(r.finished_at),
        r.sla_met === null ? "–" : (r.sla_met ? "yes" : "NO"), shards,
      ];
    }));
  }

  async function renderModels(summary) {
    const list = await api("/v1/models");
    const rows = await Promise.all(list.models.map(async (m) => {
      const detail = await api("/v1/models/" + encodeURIComponent(m.name));
      const versions = detail.versions || [];
      const kinds = versions.slice(-3).map((v) => v.number + ":" + v.kind).join(" ");
      const gold = summary.gold_standard[m.name];
      return [m.name, m.strategy, m.dataset, m.active_version === null ? "–" : m.active_version,
        versions.length, kinds, gold ? (gold.ok ? "ok" : "BREACH") + " (" + when(gold.recorded_at) + ")" : "no audit"];
    }));
    fillTable("models-table", rows);
  }

  async function refresh() {
    try {
      const summary = await api("/v1/queue/summary");
      renderSummary(summary);
      renderRequests(await api("/v1/unlearn?limit=50"));
      await renderModels(summary);
      $("main").hidden = false;
      document.body.dataset.loaded = "true";
      setStatus("updated " + new Date().toLocaleTimeString(), "ok");
    } catch (error) {
      setStatus(String(error.message || error), "error");
      if (error.status === 401 || error.status === 403) stop();
    }
  }

  function start() {
    stop();
    refresh();
    timer = window.setInterval(refresh, REFRESH_MS);
  }

  function stop() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) { setStatus("enter an API key", "error"); return; }
    sessionStorage.setItem(STORE, key);
    $("key-input").value = "";
    start();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(STORE);
    stop();
    $("main").hidden = true;
    setStatus("not connected");
  });

  const fromFragment = keyFromFragment();
  if (fromFragment) sessionStorage.setItem(STORE, fromFragment);
  if (sessionStorage.getItem(STORE)) start();
})();
