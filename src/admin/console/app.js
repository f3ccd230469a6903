// The operator's console for textus-relay. Plain JavaScript, no framework, no build step.
//
// Everything shown comes from the public admin API (the same calls a script makes):
// GET /api/v1/targets, GET /metrics, GET /api/v1/store, the dead-letter calls and
// GET /api/v1/events?id=. It polls every POLL_MS; rates and latency quantiles are computed
// here from successive /metrics scrapes. The admin token, when the relay wants one, lives in
// sessionStorage (this tab only, never in the URL) and goes with every call as a bearer token.
"use strict";

(() => {
  const TOKEN_KEY = "textus-relay.admin-token";
  const POLL_MS = 2000;
  /** How much history the charts show. */
  const WINDOW_MS = 5 * 60 * 1000;
  /** Latency quantiles are taken over about this much recent time. */
  const QUANTILE_MS = 60 * 1000;
  /** Current rates are averaged over about this much recent time. */
  const RATE_MS = 10 * 1000;
  /** The most dead letters one list asks for (the API's own maximum). */
  const LIST_LIMIT = 1000;
  /** Failed delivery attempts, by relay_deliveries_total outcome. */
  const FAILED = ["retry", "dead", "gone"];
  /** Inbound request outcomes, grouped as an operator reads them (status codes). */
  const INGRESS = [
    { key: "accepted", label: "accepted", outcomes: ["accepted"] },
    { key: "duplicate", label: "duplicate", outcomes: ["duplicate"] },
    { key: "401", label: "401", outcomes: ["missing_signature", "bad_signature"] },
    { key: "413", label: "413", outcomes: ["body_too_large"] },
    { key: "504", label: "504", outcomes: ["store_unavailable", "queue_full", "shutting_down"] },
    { key: "other", label: "other", outcomes: null },
  ];

  const $ = (selector, root = document) => root.querySelector(selector);

  /** Builds an element: el("td", {class: "x", "data-label": "Id"}, "text", child...). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else if (name === "onclick") node.addEventListener("click", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  // ---------------------------------------------------------------- formatting

  function fmtNumber(n) {
    return n === null || n === undefined ? "—" : Number(n).toLocaleString("en");
  }

  function fmtRate(r) {
    if (r === null || r === undefined || Number.isNaN(r)) return "—";
    if (r === 0) return "0";
    if (r < 0.1) return r.toFixed(2);
    if (r < 10) return r.toFixed(1);
    return Math.round(r).toLocaleString("en");
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = b;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
  }

  /** Local time: "14:03:22" today, "2026-08-12 14:03:22" on another day. */
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    if (new Date().toDateString() === d.toDateString()) return time;
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${time}`;
  }

  /** "12 s ago" / "in 3 min", with the exact time as a tooltip. */
  function timeNode(ms) {
    if (ms === null || ms === undefined) return el("span", { text: "—" });
    const delta = (ms - Date.now()) / 1000;
    const text = Math.abs(delta) < 1 ? "now" : delta < 0 ? `${fmtSeconds(-delta)} ago` : `in ${fmtSeconds(delta)}`;
    return el("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toString(), text });
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** One admin API call: JSON in and out, the token attached, errors as ApiError. */
  async function api(path, { method = "GET", json, text = false } = {}) {
    const headers = new Headers();
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    let body;
    if (json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new ApiError(0, "unreachable", `the relay does not answer (${e.message})`);
    }
    const raw = await response.text();
    if (response.status === 401) {
      askToken(token ? "That token was refused. Enter the relay's admin.token." : "");
      throw new ApiError(401, "unauthorized", "the admin token is needed");
    }
    if (!response.ok) {
      let code = `http_${response.status}`;
      let message = raw || response.statusText;
      try {
        const parsed = JSON.parse(raw);
        code = parsed.error || code;
        message = parsed.message || message;
      } catch (_) {
        // Not JSON: keep the text.
      }
      throw new ApiError(response.status, code, message);
    }
    if (text) return raw;
    return raw ? JSON.parse(raw) : null;
  }

  // ---------------------------------------------------------------- the token

  const tokenDialog = $("#token-dialog");

  function askToken(message) {
    // The stored token is wrong (or missing): forget it, so nothing keeps sending it.
    sessionStorage.removeItem(TOKEN_KEY);
    $("#forget-token").hidden = true;
    $("#token-error").textContent = message || "";
    if (!tokenDialog.open) {
      tokenDialog.showModal();
      $("#token-input").focus();
    }
  }

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#token-input").value = "";
    $("#forget-token").hidden = false;
    tokenDialog.close();
    poll.now();
  });
  // Without a token the console cannot show anything: Escape does not dismiss the prompt.
  tokenDialog.addEventListener("cancel", (event) => event.preventDefault());

  $("#forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
  $("#forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#forget-token").hidden = true;
    poll.now();
  });

  // ---------------------------------------------------------------- views

  const VIEWS = ["overview", "dead-letters", "find"];

  function currentView() {
    const name = location.hash.replace(/^#/, "");
    return VIEWS.includes(name) ? name : "overview";
  }

  function showView() {
    const view = currentView();
    for (const name of VIEWS) $(`#view-${name}`).hidden = name !== view;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (view === "dead-letters") deadLetters.refresh();
  }
  window.addEventListener("hashchange", showView);

  function setStatus(text, ok) {
    const status = $("#status");
    status.textContent = text;
    status.classList.toggle("bad", !ok);
  }

  // ---------------------------------------------------------------- metrics

  /** Prometheus text -> {requests, deliveries, buckets, storeBytes}. */
  function parseMetrics(text) {
    const snap = { t: Date.now(), requests: {}, deliveries: {}, buckets: {}, storeBytes: null };
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const row of text.split("\n")) {
      if (!row || row.startsWith("#")) continue;
      const m = row.match(line);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || "").matchAll(label)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
      const value = Number(m[3]);
      if (m[1] === "relay_requests_total") {
        snap.requests[labels.outcome] = value;
      } else if (m[1] === "relay_deliveries_total") {
        (snap.deliveries[labels.target] ||= {})[labels.outcome] = value;
      } else if (m[1] === "relay_delivery_duration_seconds_bucket") {
        const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
        (snap.buckets[labels.target] ||= []).push([le, value]);
      } else if (m[1] === "relay_store_bytes") {
        snap.storeBytes = value;
      }
    }
    for (const list of Object.values(snap.buckets)) list.sort((a, b) => a[0] - b[0]);
    return snap;
  }

  /** Scrapes of /metrics within the chart window, oldest first. */
  const history = [];

  function remember(snap) {
    history.push(snap);
    while (history.length > 2 && history[1].t < snap.t - WINDOW_MS) history.shift();
  }

  /** A counter's increase between two scrapes; a restart (counter went down) counts from 0. */
  function increase(now, then) {
    return now >= then ? now - then : now;
  }

  function sum(values) {
    return values.reduce((a, b) => a + (b || 0), 0);
  }

  /** [{t, value}] per-second rates of `pick(snapshot)` between successive scrapes. */
  function series(pick) {
    const out = [];
    for (let i = 1; i < history.length; i += 1) {
      const dt = (history[i].t - history[i - 1].t) / 1000;
      if (dt <= 0) continue;
      out.push({ t: history[i].t, value: increase(pick(history[i]), pick(history[i - 1])) / dt });
    }
    return out;
  }

  /** The rate of `pick` over about the last RATE_MS; null before a second scrape. */
  function currentRate(pick) {
    if (history.length < 2) return null;
    const last = history[history.length - 1];
    let base = history[history.length - 2];
    for (const snap of history) {
      if (snap.t >= last.t - RATE_MS) {
        base = snap === last ? base : snap;
        break;
      }
    }
    const dt = (last.t - base.t) / 1000;
    return dt > 0 ? increase(pick(last), pick(base)) / dt : null;
  }

  /** Quantile q of a target's attempt durations over about the last QUANTILE_MS, in seconds
   * (Prometheus' histogram_quantile: linear within the bucket). Null without observations. */
  function quantile(target, q) {
    if (!history.length) return null;
    const last = history[history.length - 1];
    const now = last.buckets[target];
    if (!now) return null;
    // The oldest scrape inside the window; with a single scrape, everything since start.
    const baseSnap = history.find((s) => s.t >= last.t - QUANTILE_MS && s !== last);
    const then = new Map((baseSnap?.buckets[target] || []).map(([le, v]) => [le, v]));
    const counts = now.map(([le, v]) => [le, increase(v, then.get(le) || 0)]);
    const total = counts.length ? counts[counts.length - 1][1] : 0;
    if (!total) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const [le, cumulative] of counts) {
      if (cumulative >= rank) {
        if (le === Infinity) return lower;
        const inBucket = cumulative - below;
        return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
      }
      lower = le;
      below = cumulative;
    }
    return lower;
  }

  /** Draws [{color, points: [{t, value}]}] into an <svg viewBox="0 0 300 60">. */
  function drawChart(node, lines) {
    node.replaceChildren();
    const end = history.length ? history[history.length - 1].t : Date.now();
    const start = end - WINDOW_MS;
    let max = 0;
    for (const line of lines) for (const p of line.points) max = Math.max(max, p.value);
    const top = max > 0 ? max * 1.15 : 1;
    node.append(svg("line", { x1: 0, y1: 59.5, x2: 300, y2: 59.5, class: "axis" }));
    for (const line of lines) {
      const pts = line.points
        .filter((p) => p.t >= start)
        .map((p) => `${(((p.t - start) / WINDOW_MS) * 300).toFixed(1)},${(58 - (p.value / top) * 54).toFixed(1)}`);
      if (pts.length === 1) pts.unshift(`${pts[0].split(",")[0] - 2},${pts[0].split(",")[1]}`);
      if (!pts.length) continue;
      node.append(svg("polyline", { points: pts.join(" "), class: `line ${line.color}` }));
    }
    node.dataset.max = fmtRate(max);
  }

  // ---------------------------------------------------------------- overview

  const cards = new Map();

  function stateOf(t) {
    if (t.disabled) return { key: "disabled", label: "disabled by 410", detail: t.disabled_reason };
    if (t.paused) return { key: "paused", label: "paused", detail: t.paused_at ? `since ${fmtTime(t.paused_at)}` : "" };
    if (t.breaker === "open") return { key: "open", label: "breaker open" };
    if (t.breaker === "half_open") return { key: "half-open", label: "breaker half-open" };
    if (t.needs_attention) return { key: "attention", label: "needs attention" };
    return { key: "ok", label: "ok" };
  }

  function fact(dl, name, key) {
    const value = el("dd", { "data-key": key });
    dl.append(el("div", {}, el("dt", { text: name }), value));
    return value;
  }

  function makeCard(name) {
    const id = `target-${cards.size}`;
    const refs = {};
    const card = el("article", { class: "card target", "aria-labelledby": `${id}-name`, "data-target": name });
    refs.state = el("span", { class: "state" });
    refs.kind = el("span", { class: "tag" });
    const head = el("header", {}, el("h4", { id: `${id}-name`, text: name }), refs.kind, refs.state);
    refs.pause = el("button", { type: "button", "aria-label": `Pause ${name}`, text: "Pause" });
    refs.enable = el("button", { type: "button", "aria-label": `Enable ${name}`, text: "Enable" });
    refs.pause.addEventListener("click", () => control(name, "pause", refs));
    refs.enable.addEventListener("click", () => control(name, "enable", refs));
    const dl = el("dl", { class: "facts compact" });
    refs.queued = fact(dl, "Queued", "queued");
    refs.inFlight = fact(dl, "In flight", "in_flight");
    refs.dead = fact(dl, "Dead", "dead");
    refs.oldest = fact(dl, "Oldest queued", "oldest");
    refs.rate = fact(dl, "Rate limit", "rate_limit");
    refs.latency = fact(dl, "Latency p50 / p99", "latency");
    refs.chart = svg("svg", { class: "chart", viewBox: "0 0 300 60", preserveAspectRatio: "none", role: "img", "aria-label": `Deliveries and failures per second to ${name}, last 5 minutes` });
    refs.delivered = el("span", { class: "swatch ok-line" });
    refs.failed = el("span", { class: "swatch bad-line" });
    const legend = el("p", { class: "caption" }, refs.delivered, " deliveries/s ", refs.failed, " failures/s", el("span", { class: "muted" }, " · last 5 minutes"));
    refs.detail = el("p", { class: "detail" });
    refs.error = el("p", { class: "last-error" });
    refs.message = el("p", { class: "message", role: "status" });
    const actions = el("div", { class: "actions" }, refs.pause, refs.enable);
    card.append(head, refs.detail, dl, legend, refs.chart, refs.error, actions, refs.message);
    return { card, refs };
  }

  function renderTargets(list, unconfigured) {
    const root = $("#targets");
    const seen = new Set();
    list.forEach((t, index) => {
      seen.add(t.name);
      if (!cards.has(t.name)) cards.set(t.name, makeCard(t.name));
      const { card, refs } = cards.get(t.name);
      if (root.children[index] !== card) root.insertBefore(card, root.children[index] || null);
      const state = stateOf(t);
      refs.kind.textContent = t.kind;
      refs.state.textContent = state.label;
      refs.state.className = `state ${state.key}`;
      card.dataset.state = state.key;
      const notes = [];
      if (state.detail) notes.push(state.detail);
      if (t.needs_attention && state.key !== "attention") notes.push(`needs attention: ${t.needs_attention.message}`);
      else if (t.needs_attention) notes.push(t.needs_attention.message);
      refs.detail.textContent = notes.join(" · ");
      refs.detail.hidden = !notes.length;
      refs.queued.textContent = fmtNumber(t.queued);
      refs.inFlight.textContent = fmtNumber(t.in_flight);
      refs.dead.textContent = fmtNumber(t.dead);
      refs.oldest.textContent = t.oldest_queued_age_seconds === null ? "—" : fmtSeconds(t.oldest_queued_age_seconds);
      refs.rate.textContent = t.rate_limit || "none";
      const p50 = quantile(t.name, 0.5);
      const p99 = quantile(t.name, 0.99);
      refs.latency.textContent = p50 === null ? "—" : `${fmtSeconds(p50)} / ${fmtSeconds(p99)}`;
      const delivered = (s) => s.deliveries[t.name]?.delivered || 0;
      const failed = (s) => sum(FAILED.map((o) => s.deliveries[t.name]?.[o]));
      refs.delivered.textContent = fmtRate(currentRate(delivered));
      refs.failed.textContent = fmtRate(currentRate(failed));
      drawChart(refs.chart, [
        { color: "ok-line", points: series(delivered) },
        { color: "bad-line", points: series(failed) },
      ]);
      refs.error.replaceChildren();
      if (t.last_error) {
        refs.error.append(el("strong", { text: "Last error " }), timeNode(t.last_error.at), ": ", t.last_error.message);
      } else {
        refs.error.append(el("span", { class: "muted", text: "No error recorded since start" }));
      }
      refs.pause.disabled = t.paused;
      refs.enable.disabled = !(t.paused || t.disabled);
    });
    for (const [name, { card }] of cards) {
      if (!seen.has(name)) {
        card.remove();
        cards.delete(name);
      }
    }
    const orphaned = $("#unconfigured");
    orphaned.hidden = !unconfigured.length;
    orphaned.textContent = unconfigured.length
      ? `No longer configured, deliveries still stored: ${unconfigured.map((o) => `${o.target} (queued ${o.queued}, dead ${o.dead})`).join(", ")}`
      : "";
  }

  async function control(name, action, refs) {
    refs.message.textContent = "";
    try {
      await api(`/api/v1/targets/${encodeURIComponent(name)}/${action}`, { method: "POST" });
      refs.message.textContent = action === "pause" ? `${name} paused` : `${name} enabled`;
      poll.now();
    } catch (e) {
      refs.message.textContent = `${action} failed: ${e.message}`;
    }
  }

  function renderIngress() {
    const pick = (group) => (s) => {
      if (group.outcomes) return sum(group.outcomes.map((o) => s.requests[o]));
      const known = new Set(INGRESS.flatMap((g) => g.outcomes || []));
      return sum(Object.entries(s.requests).filter(([o]) => !known.has(o)).map(([, v]) => v));
    };
    drawChart($("#ingress-chart"), INGRESS.map((g) => ({ color: `o-${g.key}`, points: series(pick(g)) })));
    const legend = $("#ingress-legend");
    legend.replaceChildren(
      ...INGRESS.map((g) =>
        el("li", { "data-outcome": g.key }, el("span", { class: `swatch o-${g.key}` }), `${g.label} `, el("strong", { text: `${fmtRate(currentRate(pick(g)))}/s` }))
      )
    );
  }

  /** Whether GET /api/v1/store answers here (404: a store that keeps no budget). */
  const storeApi = { present: null, checkedAt: 0 };

  async function fetchStore() {
    if (storeApi.present === false && Date.now() - storeApi.checkedAt < 30000) return null;
    storeApi.checkedAt = Date.now();
    try {
      const store = await api("/api/v1/store");
      storeApi.present = true;
      return store;
    } catch (e) {
      if (e.status === 404) storeApi.present = false;
      else if (e.status !== 401) throw e;
      return null;
    }
  }

  const STOPPED_BY = {
    max_bytes: "storage.max_bytes reached",
    min_free: "storage.min_free reached",
    disk_full: "the disk is full",
  };

  function renderStore(bytes, store) {
    const dl = $("#store");
    dl.replaceChildren();
    const row = (name, value, cls) => dl.append(el("div", { class: cls || null }, el("dt", { text: name }), el("dd", { text: value })));
    row("Store size", fmtBytes(store ? store.store_bytes : bytes));
    if (!store) return;
    const stopped = store.ingest !== "open";
    row("Ingest", stopped ? `stopped (504 store_full): ${STOPPED_BY[store.stopped_by] || store.stopped_by}` : "open", stopped ? "warn" : null);
    row("Room to ingest", fmtBytes(store.ingest_room_bytes), stopped ? "warn" : null);
    row("Free space", `${fmtBytes(store.free_bytes)} of ${fmtBytes(store.filesystem_bytes)}`);
    row("Budget", store.max_bytes === null || store.max_bytes === undefined ? "no maximum" : `at most ${fmtBytes(store.max_bytes)}`);
    row("Keeps free", fmtBytes(store.min_free_bytes));
    row("Reserve for draining", fmtBytes(store.reserve_bytes));
  }

  async function refreshOverview() {
    const [targets, metrics, store] = await Promise.all([
      api("/api/v1/targets"),
      api("/metrics", { text: true }),
      fetchStore(),
    ]);
    const snap = parseMetrics(metrics);
    remember(snap);
    renderTargets(targets.targets, targets.unconfigured || []);
    renderIngress();
    renderStore(snap.storeBytes, store);
    targetNames = targets.targets.map((t) => t.name);
    deadLetters.updateTargets(targetNames);
  }

  let targetNames = [];

  // ---------------------------------------------------------------- dead letters

  const deadLetters = (() => {
    const form = $("#dl-filter");
    let shown = [];
    let lastJson = "";

    function filter() {
      const data = new FormData(form);
      const out = {};
      const target = data.get("target");
      const type = String(data.get("type") || "").trim();
      if (target) out.target = target;
      if (type) out.type = type;
      for (const key of ["since", "until"]) {
        const value = data.get(key);
        if (value) {
          const ms = new Date(value).getTime();
          if (!Number.isNaN(ms)) out[key] = ms;
        }
      }
      return out;
    }

    function describe(f) {
      const parts = [];
      if (f.target) parts.push(`target ${f.target}`);
      if (f.type) parts.push(`type ${f.type}`);
      if (f.since) parts.push(`dead since ${fmtTime(f.since)}`);
      if (f.until) parts.push(`dead before ${fmtTime(f.until)}`);
      return parts.length ? parts.join(", ") : "no filter";
    }

    /** The body of a bulk replay or purge: the filter itself when there is one (the API
     * refuses an empty one), else the ids listed. */
    function bulkBody() {
      const f = filter();
      return Object.keys(f).length ? f : { ids: shown.map((d) => d.id) };
    }

    /** "3" or, when the list is cut at the API's limit, "1000 or more". */
    function howMany() {
      return shown.length >= LIST_LIMIT ? `${LIST_LIMIT} or more` : String(shown.length);
    }

    async function refresh() {
      if ($("#view-dead-letters").hidden) return;
      const params = new URLSearchParams({ ...filter(), limit: String(LIST_LIMIT) });
      let list;
      try {
        list = (await api(`/api/v1/dead-letters?${params}`)).dead_letters;
      } catch (e) {
        if (e.status !== 401) $("#dl-message").textContent = `Listing failed: ${e.message}`;
        return;
      }
      const json = JSON.stringify(list);
      shown = list;
      const count = howMany();
      $("#dl-count").textContent = `${plural(count, "dead letter")} (${describe(filter())})`;
      $("#dl-replay-all").textContent = `Replay ${count}`;
      $("#dl-replay-all").setAttribute("aria-label", `Replay ${plural(count, "dead letter")} shown`);
      $("#dl-purge-all").textContent = `Purge ${count}…`;
      $("#dl-purge-all").setAttribute("aria-label", `Purge ${plural(count, "dead letter")} shown`);
      $("#dl-replay-all").disabled = !list.length;
      $("#dl-purge-all").disabled = !list.length;
      $("#dl-empty").hidden = list.length > 0;
      if (json === lastJson) return;
      lastJson = json;
      render(list);
    }

    function cell(label, ...content) {
      return el("td", { "data-label": label }, ...content);
    }

    function render(list) {
      const body = $("#dl-table tbody");
      const focused = document.activeElement?.dataset?.focus;
      body.replaceChildren(
        ...list.map((d) =>
          el(
            "tr",
            { "data-id": d.id },
            cell("Id", String(d.id)),
            cell("Event id", el("code", { class: "event-id", text: d.event_id })),
            cell("Type", d.event_type || "—"),
            cell("Target", d.target || el("em", { text: "none (not an event)" })),
            cell("Attempts", String(d.attempts)),
            cell("Last status", d.last_status === null ? "—" : String(d.last_status)),
            cell("Reason", el("span", { class: "reason", text: d.reason })),
            cell("Dead", timeNode(d.dead_at)),
            cell(
              "Actions",
              el("div", { class: "actions" },
                el("button", { type: "button", "data-focus": `details-${d.id}`, "aria-label": `Details of dead letter ${d.id}`, text: "Details", onclick: () => detail.open(d.id) }),
                el("button", { type: "button", "data-focus": `replay-${d.id}`, "aria-label": `Replay dead letter ${d.id}`, text: "Replay", disabled: !d.target, onclick: () => replay({ ids: [d.id] }) })
              )
            )
          )
        )
      );
      if (focused) $(`[data-focus="${focused}"]`)?.focus();
    }

    async function replay(body) {
      const message = $("#dl-message");
      message.textContent = "";
      try {
        const done = await api("/api/v1/dead-letters/replay", { method: "POST", json: body });
        const skipped = done.skipped.map((s) => `${s.count} skipped: ${s.reason}`);
        message.textContent = [`Replayed ${plural(done.replayed, "dead letter")}.`, ...skipped].join(" ");
      } catch (e) {
        message.textContent = `Replay failed: ${e.message}`;
      }
      lastJson = "";
      await refresh();
      poll.now();
    }

    async function purgeShown() {
      const count = howMany();
      const f = filter();
      const ok = await confirmDialog(
        `Purge ${plural(count, "dead letter")}?`,
        `${plural(count, "dead letter")} (${describe(f)}) will be deleted for good, bodies included. This cannot be undone.`,
        `Purge ${count}`
      );
      if (!ok) return;
      const message = $("#dl-message");
      try {
        const done = await api("/api/v1/dead-letters/purge", { method: "POST", json: bulkBody() });
        message.textContent = `Purged ${plural(done.purged, "dead letter")}.`;
      } catch (e) {
        message.textContent = `Purge failed: ${e.message}`;
      }
      lastJson = "";
      await refresh();
    }

    function updateTargets(names) {
      const select = form.elements.target;
      const have = [...select.options].slice(1).map((o) => o.value);
      if (have.join("\n") === names.join("\n")) return;
      const chosen = select.value;
      select.replaceChildren(select.options[0], ...names.map((n) => el("option", { value: n, text: n })));
      select.value = names.includes(chosen) ? chosen : "";
    }

    form.addEventListener("change", () => refresh());
    form.addEventListener("input", (e) => {
      if (e.target.name === "type") refresh();
    });
    form.addEventListener("reset", () => setTimeout(refresh));
    form.addEventListener("submit", (e) => e.preventDefault());
    $("#dl-replay-all").addEventListener("click", () => replay(bulkBody()));
    $("#dl-purge-all").addEventListener("click", purgeShown);

    return { refresh, updateTargets, replay, forget: () => (lastJson = "") };
  })();

  // ---------------------------------------------------------------- one dead letter

  const detail = (() => {
    const dialog = $("#detail-dialog");
    let current = null;
    let opener = null;

    async function open(id) {
      opener = document.activeElement;
      current = id;
      $("#detail-message").textContent = "";
      let d;
      try {
        d = await api(`/api/v1/dead-letters/${id}`);
      } catch (e) {
        $("#dl-message").textContent = `Dead letter ${id}: ${e.message}`;
        return;
      }
      $("#detail-title").textContent = `Dead letter ${d.id}`;
      const facts = $("#detail-facts");
      facts.replaceChildren();
      const row = (name, value) => facts.append(el("div", {}, el("dt", { text: name }), el("dd", {}, value)));
      row("Event id", el("code", { text: d.event_id }));
      row("Type", d.event_type || "—");
      row("Target", d.target || "none (the body was never an event)");
      row("Attempts", String(d.attempts));
      row("Last status", d.last_status === null ? "—" : String(d.last_status));
      row("Reason", d.reason);
      row("Received", fmtTime(d.received_at));
      row("Dead since", fmtTime(d.dead_at));
      $("#detail-format").textContent = d.body_format;
      $("#detail-body").textContent = d.body_format === "json" ? JSON.stringify(d.body, null, 2) : d.body;
      $("#detail-attempts tbody").replaceChildren(
        ...d.attempt_history.map((a) =>
          el("tr", {}, el("td", { "data-label": "Attempt", text: String(a.attempt) }), el("td", { "data-label": "At", text: fmtTime(a.at) }), el("td", { "data-label": "Status", text: a.status === null ? "—" : String(a.status) }), el("td", { "data-label": "Reason", text: a.reason }))
        )
      );
      $("#detail-replay").disabled = !d.target;
      if (!dialog.open) dialog.showModal();
      $("#detail-close").focus();
    }

    function close() {
      if (dialog.open) dialog.close();
    }

    dialog.addEventListener("close", () => {
      if (opener && document.contains(opener)) opener.focus();
    });
    $("#detail-close").addEventListener("click", close);
    $("#detail-replay").addEventListener("click", async () => {
      close();
      await deadLetters.replay({ ids: [current] });
    });
    $("#detail-purge").addEventListener("click", async () => {
      const id = current;
      const ok = await confirmDialog("Purge 1 dead letter?", `Dead letter ${id} will be deleted for good, body included. This cannot be undone.`, "Purge 1");
      if (!ok) return;
      try {
        await api(`/api/v1/dead-letters/${id}`, { method: "DELETE" });
        close();
        $("#dl-message").textContent = `Purged dead letter ${id}.`;
      } catch (e) {
        $("#detail-message").textContent = `Purge failed: ${e.message}`;
      }
      deadLetters.forget();
      deadLetters.refresh();
    });
    return { open };
  })();

  /** A modal question; resolves true when confirmed. */
  function confirmDialog(title, text, okLabel) {
    const dialog = $("#confirm-dialog");
    const opener = document.activeElement;
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("#confirm-ok").removeEventListener("click", yes);
        $("#confirm-cancel").removeEventListener("click", no);
        dialog.removeEventListener("close", no);
        if (dialog.open) dialog.close();
        if (opener && document.contains(opener)) opener.focus();
        resolve(answer);
      };
      const yes = () => done(true);
      const no = () => done(false);
      $("#confirm-ok").addEventListener("click", yes);
      $("#confirm-cancel").addEventListener("click", no);
      dialog.addEventListener("close", no);
      dialog.showModal();
      // The safe choice has the focus: Enter alone does not destroy anything.
      $("#confirm-cancel").focus();
    });
  }

  // ---------------------------------------------------------------- find an event

  const WHERE = {
    delivered: "delivered",
    not_routed: "not routed there",
    delivered_or_not_routed: "delivered, or not routed there",
    queued: "queued",
    in_flight: "in flight",
    dead: "dead letter",
  };

  function whereNode(t) {
    const last = t.deliveries[t.deliveries.length - 1];
    const node = el("div", { class: "where" }, el("span", { class: `state ${t.state.replace(/_/g, "-")}`, text: WHERE[t.state] || t.state }));
    if (!last) return node;
    if (t.state === "queued") {
      // Due but not yet sent: the target is held back (breaker, pause, 410, rate limit) or
      // its dispatcher is about to claim it.
      const due = last.next_attempt_at <= Date.now();
      node.append(due ? " · next attempt due since " : " · next attempt ", due ? fmtTime(last.next_attempt_at) : timeNode(last.next_attempt_at));
    }
    if (t.state === "in_flight") node.append(" · lease runs out ", timeNode(last.next_attempt_at));
    node.append(` · ${plural(last.attempts, "attempt")}`);
    if (last.last_error) node.append(el("p", { class: "reason" }, last.last_status ? `${last.last_status}: ` : "", last.last_error));
    if (t.state === "dead") {
      node.append(el("button", { type: "button", "aria-label": `Details of dead letter ${last.id}`, text: "Details", onclick: () => detail.open(last.id) }));
    }
    if (t.deliveries.length > 1) node.append(el("p", { class: "muted", text: `${t.deliveries.length} copies of the event are held for this target` }));
    return node;
  }

  /** "1 dead letter", "3 dead letters", "1000 or more dead letters". */
  function plural(n, word) {
    return `${n} ${word}${Number(n) === 1 ? "" : "s"}`;
  }

  $("#find-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = $("#find-id").value.trim();
    const out = $("#find-result");
    if (!id) return;
    out.replaceChildren(el("p", { text: "Looking…" }));
    let found;
    try {
      found = await api(`/api/v1/events?id=${encodeURIComponent(id)}`);
    } catch (e) {
      out.replaceChildren(el("p", { class: e.status === 404 ? "note" : "error", text: e.status === 404 ? `Not known: ${e.message}` : `Lookup failed: ${e.message}` }));
      return;
    }
    const summary = [];
    if (found.stored.length) {
      summary.push(`Received ${found.stored.map((s) => `${fmtTime(s.received_at)} (${s.event_type || "not an event"})`).join(", ")}; still stored.`);
    } else {
      summary.push("Received; no longer stored, so every target that was routed has it (delivered, or its dead letter purged).");
    }
    summary.push(found.remembered_until ? `Its id is remembered for de-duplication until ${fmtTime(found.remembered_until)}.` : "Its id is not remembered for de-duplication.");
    out.replaceChildren(
      el("p", { class: "summary", text: summary.join(" ") }),
      el(
        "table",
        { class: "rows find-table" },
        el("caption", { class: "visually-hidden", text: `Where event ${found.id} is, per target` }),
        el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Target" }), el("th", { scope: "col", text: "Where" }))),
        el(
          "tbody",
          {},
          ...found.targets.map((t) =>
            el(
              "tr",
              { "data-target": t.target || "" },
              el("td", { "data-label": "Target" }, t.target || el("em", { text: "none (not an event)" }), t.configured ? null : el("span", { class: "tag", text: "not configured" })),
              el("td", { "data-label": "Where" }, whereNode(t))
            )
          )
        )
      )
    );
  });

  // ---------------------------------------------------------------- polling

  const poll = (() => {
    let timer = null;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      if (running) return;
      running = true;
      try {
        if (!tokenDialog.open) {
          await refreshOverview();
          await deadLetters.refresh();
          setStatus(`Live · updated ${fmtTime(Date.now())}`, true);
        }
      } catch (e) {
        if (e.status !== 401) setStatus(`Not up to date: ${e.message}`, false);
      } finally {
        running = false;
        timer = setTimeout(tick, POLL_MS);
      }
    }
    return { now: () => setTimeout(tick), start: tick };
  })();

  showView();
  poll.start();
})();
