// camtopo live viewer: cameras as tiles laid out by a force layout on the camera graph,
// edges weighted by evidence, updated from the service's server-sent change stream.
// Plain JS, no libraries (the machines serving it have no internet).
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  // The token comes in the fragment (/#token=...), which the browser never sends to a server
  // (no access log, no Referer); it moves to this tab's sessionStorage and leaves the address
  // bar and history at once. Requests carry it in the Authorization header only.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("camtopo-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = sessionStorage.getItem("camtopo-token");
  const headers = token ? { Authorization: `Bearer ${token}` } : {};

  const svg = document.getElementById("graph");
  const viewport = document.getElementById("viewport");
  const edgeLayer = document.getElementById("edges");
  const tileLayer = document.getElementById("tiles");
  const statusEl = document.getElementById("status");
  const summaryEl = document.getElementById("summary");
  const details = document.getElementById("details");
  const logEl = document.getElementById("log");
  const countEl = document.getElementById("change-count");

  const TILE_W = 46, TILE_H = 24;
  const nodes = new Map(); // camera -> {id, x, y, vx, vy, el, part}
  const edges = new Map(); // "a|b" -> {a, b, weight, kind, transit_s, el}
  let selected = null;
  let changesSeen = 0;
  let heat = 1.0;

  async function getJSON(path, method = "GET") {
    const res = await fetch(path, { method, headers });
    if (res.status === 401) throw new Error("this service needs its token: open /#token=<token>");
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json();
  }

  // --- drawing -------------------------------------------------------------------------------
  function hashColour(i) {
    const hue = (i * 137.508) % 360; // golden angle: neighbouring partition ids differ
    return `hsl(${hue.toFixed(0)}, 55%, 62%)`;
  }

  function addNode(id, index, total) {
    if (nodes.has(id)) return nodes.get(id);
    const angle = (2 * Math.PI * index) / Math.max(total, 1);
    const r = 40 + 12 * Math.sqrt(total);
    const n = {
      id, x: r * Math.cos(angle) + (Math.random() - 0.5) * 10,
      y: r * Math.sin(angle) + (Math.random() - 0.5) * 10, vx: 0, vy: 0, part: -1,
    };
    const g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("class", "tile");
    g.dataset.camera = id;
    const rect = document.createElementNS(SVG_NS, "rect");
    rect.setAttribute("x", -TILE_W / 2); rect.setAttribute("y", -TILE_H / 2);
    rect.setAttribute("width", TILE_W); rect.setAttribute("height", TILE_H);
    rect.setAttribute("rx", 3); rect.setAttribute("fill", "#9aa5b8");
    const text = document.createElementNS(SVG_NS, "text");
    text.textContent = id;
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = id;
    g.append(rect, text, title);
    g.addEventListener("click", (ev) => { ev.stopPropagation(); select(id); });
    tileLayer.appendChild(g);
    n.el = g;
    nodes.set(id, n);
    return n;
  }

  function edgeWidth(w) { return 0.5 + 4 * Math.max(0, Math.min(1, w)); }

  function setEdge(rec) {
    const key = `${rec.a}|${rec.b}`;
    let e = edges.get(key);
    if (!e) {
      const line = document.createElementNS(SVG_NS, "line");
      line.dataset.a = rec.a; line.dataset.b = rec.b;
      edgeLayer.appendChild(line);
      e = { el: line };
      edges.set(key, e);
    }
    Object.assign(e, { a: rec.a, b: rec.b, weight: rec.weight, kind: rec.kind,
      transit_s: rec.transit_s });
    e.el.setAttribute("class", `edge ${rec.kind === "transit" ? "transit" : ""}`);
    e.el.setAttribute("stroke-width", edgeWidth(rec.weight));
    e.el.setAttribute("stroke-opacity", (0.35 + 0.65 * rec.weight).toFixed(2));
    return e;
  }

  function removeEdge(a, b) {
    const key = `${a}|${b}`;
    const e = edges.get(key) || edges.get(`${b}|${a}`);
    if (!e) return;
    e.el.remove();
    edges.delete(`${e.a}|${e.b}`);
  }

  function render() {
    for (const e of edges.values()) {
      const p = nodes.get(e.a), q = nodes.get(e.b);
      if (!p || !q) continue;
      e.el.setAttribute("x1", p.x.toFixed(1)); e.el.setAttribute("y1", p.y.toFixed(1));
      e.el.setAttribute("x2", q.x.toFixed(1)); e.el.setAttribute("y2", q.y.toFixed(1));
    }
    for (const n of nodes.values()) {
      n.el.setAttribute("transform", `translate(${n.x.toFixed(1)},${n.y.toFixed(1)})`);
    }
  }

  // --- force layout: springs on edges, short-range repulsion on a grid, gentle gravity ---------
  const REPEL_RANGE = 120;
  function layoutStep() {
    const list = [...nodes.values()];
    const k = 70; // spring rest length
    const cells = new Map();
    for (const n of list) {
      const key = `${Math.floor(n.x / REPEL_RANGE)},${Math.floor(n.y / REPEL_RANGE)}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(n);
    }
    for (const n of list) {
      const cx = Math.floor(n.x / REPEL_RANGE), cy = Math.floor(n.y / REPEL_RANGE);
      for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
        const bucket = cells.get(`${cx + dx},${cy + dy}`);
        if (!bucket) continue;
        for (const m of bucket) {
          if (m === n) continue;
          let ddx = n.x - m.x, ddy = n.y - m.y;
          let d2 = ddx * ddx + ddy * ddy;
          if (d2 < 1) { ddx = Math.random() - 0.5; ddy = Math.random() - 0.5; d2 = 1; }
          if (d2 > REPEL_RANGE * REPEL_RANGE) continue;
          const f = 2500 / d2;
          n.vx += ddx * f / Math.sqrt(d2); n.vy += ddy * f / Math.sqrt(d2);
        }
      }
      n.vx -= n.x * 0.004; n.vy -= n.y * 0.004; // gravity keeps unlinked cameras near
    }
    for (const e of edges.values()) {
      const p = nodes.get(e.a), q = nodes.get(e.b);
      if (!p || !q) continue;
      const dx = q.x - p.x, dy = q.y - p.y;
      const d = Math.sqrt(dx * dx + dy * dy) || 1;
      const f = 0.05 * (0.5 + e.weight) * (d - k) / d;
      p.vx += dx * f; p.vy += dy * f; q.vx -= dx * f; q.vy -= dy * f;
    }
    for (const n of list) {
      if (n === dragging) continue;
      const cap = 30 * heat;
      n.vx = Math.max(-cap, Math.min(cap, n.vx)); n.vy = Math.max(-cap, Math.min(cap, n.vy));
      n.x += n.vx * heat; n.y += n.vy * heat;
      n.vx *= 0.6; n.vy *= 0.6;
    }
    heat = Math.max(0, heat * 0.985 - 0.0005);
  }

  function animate() {
    if (heat > 0.01) { layoutStep(); render(); }
    requestAnimationFrame(animate);
  }

  // --- pan and zoom ----------------------------------------------------------------------------
  let view = { x: 0, y: 0, s: 1 };
  let dragging = null, panStart = null;
  function applyView() {
    const w = svg.clientWidth, h = svg.clientHeight;
    viewport.setAttribute("transform", `translate(${w / 2 + view.x},${h / 2 + view.y}) scale(${view.s})`);
  }
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    view.s = Math.max(0.1, Math.min(5, view.s * (ev.deltaY < 0 ? 1.1 : 1 / 1.1)));
    applyView();
  }, { passive: false });
  svg.addEventListener("mousedown", (ev) => { panStart = { x: ev.clientX - view.x, y: ev.clientY - view.y }; });
  window.addEventListener("mousemove", (ev) => {
    if (panStart) { view.x = ev.clientX - panStart.x; view.y = ev.clientY - panStart.y; applyView(); }
  });
  window.addEventListener("mouseup", () => { panStart = null; });
  window.addEventListener("resize", applyView);
  svg.addEventListener("click", () => { if (selected) clearSelection(); });

  function fitView() {
    const list = [...nodes.values()];
    if (!list.length) return;
    const xs = list.map((n) => n.x), ys = list.map((n) => n.y);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const w = svg.clientWidth || 800, h = svg.clientHeight || 600;
    view.s = Math.min(2, 0.9 * Math.min(w / (maxX - minX + TILE_W * 2), h / (maxY - minY + TILE_H * 2)));
    view.x = -view.s * (minX + maxX) / 2; view.y = -view.s * (minY + maxY) / 2;
    applyView();
  }

  // --- selection -------------------------------------------------------------------------------
  // The panel is built from elements and text nodes, never innerHTML: camera ids and error
  // messages come from the network description and the server, and may hold markup.
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    node.append(...children); // strings become text nodes
    return node;
  }
  const hint = (text, attrs = {}) => el("p", { class: "hint", ...attrs }, text);

  function clearSelection() {
    selected = null;
    for (const n of nodes.values()) n.el.classList.remove("selected", "neighbour", "dim");
    for (const e of edges.values()) e.el.classList.remove("hot", "dim");
    details.replaceChildren(el("h2", {}, "Camera"),
      hint("Click a camera tile to see its handover candidates."));
  }

  function fmt(x, digits = 3) { return x === null || x === undefined ? "—" : Number(x).toFixed(digits); }

  async function select(id) {
    selected = id;
    details.replaceChildren(el("h2", {}, id), hint("loading…"));
    let data;
    try {
      data = await getJSON(`/api/cameras/${encodeURIComponent(id)}/neighbours`);
    } catch (err) {
      details.replaceChildren(el("h2", {}, id), hint(err.message));
      return;
    }
    if (selected !== id) return;
    const near = new Set(data.neighbours.map((n) => n.camera));
    for (const n of nodes.values()) {
      n.el.classList.toggle("selected", n.id === id);
      n.el.classList.toggle("neighbour", near.has(n.id));
      n.el.classList.toggle("dim", n.id !== id && !near.has(n.id));
    }
    for (const e of edges.values()) {
      const hot = e.a === id || e.b === id;
      e.el.classList.toggle("hot", hot);
      e.el.classList.toggle("dim", !hot);
    }
    const num = (text) => el("td", { class: "num" }, text);
    const rows = data.neighbours.map((n) => {
      const tr = el("tr", {}, el("td", {}, n.camera), el("td", {}, n.kind), num(fmt(n.weight)),
        num(`${fmt(n.c_out, 2)} / ${fmt(n.c_in, 2)}`), num(String(n.support)),
        num(n.transit_s === null ? "—" : `${fmt(n.transit_s, 1)} s`));
      tr.dataset.neighbour = n.camera;
      tr.addEventListener("click", () => select(n.camera));
      return tr;
    });
    const ruleout = el("div", { class: "ruleout", id: "ruleout" },
      "Handover: search ", el("b", {}, String(data.searched)), ` of ${data.of} other cameras — rules out `,
      el("b", {}, `${(100 * data.rules_out).toFixed(1)}%`), " of the network.");
    const heads = ["camera", "kind", "weight", "C′ out/in", "pairs", "transit"];
    const list = rows.length
      ? el("table", { class: "nb", id: "neighbours" },
        el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", {}, h)))), el("tbody", {}, ...rows))
      : hint("No neighbours found yet.", { id: "neighbours" });
    details.replaceChildren(el("h2", {}, id), ruleout, list);
  }

  // --- data ------------------------------------------------------------------------------------
  async function loadGraph() {
    const g = await getJSON("/api/graph");
    g.cameras.forEach((c, i) => addNode(c, i, g.cameras.length));
    for (const rec of g.edges) setEdge(rec);
    for (let i = 0; i < 250; i++) layoutStep(); // settle before the first paint
    render();
    fitView();
    summaryEl.textContent = `${g.cameras.length} cameras · ${g.edges.length} links`;
    try {
      const parts = await getJSON("/api/partitions");
      parts.partitions.forEach((p) => {
        for (const c of p.cameras) {
          const n = nodes.get(c);
          if (n) { n.part = p.id; n.el.querySelector("rect").setAttribute("fill", hashColour(p.id)); }
        }
      });
    } catch (err) { console.warn(err); }
  }

  function logChange(ev) {
    changesSeen += 1;
    countEl.textContent = String(changesSeen);
    const li = document.createElement("li");
    li.className = ev.change;
    const when = new Date(ev.emitted_ms).toLocaleTimeString();
    li.textContent = `${when} ${ev.change.replace("EDGE_", "").toLowerCase()} ${ev.a}–${ev.b} w=${fmt(ev.weight, 2)}`;
    logEl.prepend(li);
    while (logEl.children.length > 200) logEl.lastChild.remove();
  }

  function applyChange(ev) {
    // Each change arrives once; the service sends the log, not the per-camera Kafka copies.
    [ev.a, ev.b].forEach((c) => { if (!nodes.has(c)) addNode(c, nodes.size, nodes.size + 1); });
    if (ev.change === "EDGE_REMOVED") removeEdge(ev.a, ev.b);
    else {
      const e = setEdge(ev);
      e.el.classList.add("flash");
      setTimeout(() => e.el.classList.remove("flash"), 1500);
    }
    logChange(ev);
    summaryEl.textContent = `${nodes.size} cameras · ${edges.size} links`;
    heat = Math.max(heat, 0.3);
    if (selected && (ev.a === selected || ev.b === selected)) select(selected);
  }

  // EventSource cannot send the Authorization header: the stream's URL carries a signed token
  // valid for minutes, fetched with the header. The browser reconnects a dropped stream by
  // itself (Last-Event-ID replays the gap); once the token has expired that reconnect is refused
  // and the source closes, so a new token and source pick up after the last change seen.
  let lastId = "";
  async function connect() {
    let url;
    try {
      const { stream_token: streamToken } = await getJSON("/api/stream-token", "POST");
      const query = new URLSearchParams();
      if (streamToken) query.set("stream_token", streamToken);
      if (lastId) query.set("after", lastId);
      url = query.toString() ? `/api/stream?${query}` : "/api/stream";
    } catch (err) {
      statusEl.textContent = err.message; statusEl.className = "status down";
      setTimeout(connect, 5000);
      return;
    }
    const source = new EventSource(url);
    source.onopen = () => { statusEl.textContent = "live"; statusEl.className = "status live"; };
    source.onerror = () => {
      statusEl.textContent = "reconnecting…"; statusEl.className = "status down";
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    };
    source.addEventListener("position", (msg) => { lastId = msg.lastEventId; });
    source.addEventListener("change", (msg) => {
      lastId = msg.lastEventId;
      applyChange(JSON.parse(msg.data));
    });
  }

  window.camtopoViewer = { nodes, edges, select }; // for tests and the console
  applyView();
  loadGraph()
    .then(() => { connect(); requestAnimationFrame(animate); document.body.dataset.ready = "1"; })
    .catch((err) => { statusEl.textContent = err.message; statusEl.className = "status down"; });
})();
