// Shoal web console: plain JavaScript over the server's HTTP/JSON API (see /openapi.json).
// The API key, when the server asks for one (401), is asked once and kept for this browser tab.
"use strict";

const KEY_STORE = "shoal-api-key";
const $ = (id) => document.getElementById(id);
let methods = new Set();   // gRPC paths this server serves, from /openapi.json
let scroll = null;         // how to call Points.Scroll, once the server has it
let nextPage = null;       // the scroll request for the next page

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

function askKey() {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-form").onsubmit = () => {
      sessionStorage.setItem(KEY_STORE, $("key-input").value.trim());
      $("forget-key").hidden = false;
      resolve();
    };
    dialog.showModal();
    $("key-input").focus();
  });
}

// One API call: JSON in, JSON out; a 401 asks for the key and retries; other errors throw their message.
async function api(verb, path, body) {
  for (let attempt = 0; ; attempt++) {
    const headers = {"content-type": "application/json"};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.authorization = "Bearer " + key;
    const response = await fetch(path, {method: verb, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    const data = await response.json().catch(() => ({}));
    if (response.status === 401 && attempt < 3) {
      if (key) sessionStorage.removeItem(KEY_STORE);
      await askKey();
      continue;
    }
    if (!response.ok) {
      const e = data.error || {};
      throw new Error(`${e.code || response.status}${e.class ? " (" + e.class + ")" : ""}: ${e.message || response.statusText}`);
    }
    return data;
  }
}

const c = (name) => "/v1/collections/" + encodeURIComponent(name);

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 1).replace(/\n\s*/g, " ");
}

function parseJson(text, what) {
  if (!text.trim()) return undefined;
  try { return JSON.parse(text); } catch (err) { throw new Error(`${what} is not valid JSON: ${err.message}`); }
}

function parseId(text) {
  const t = text.trim();
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

function optimizerSummary(stats) {
  const o = stats.optimizer || {};
  if (o.last_error) return "error: " + o.last_error;
  const state = o.running ? "running " + json(o.running) : (o.thread_running ? "idle (background)" : "idle");
  return `${state}, ${o.merges_done || 0} merges`;
}

async function loadCollections() {
  const {names} = await api("GET", "/v1/collections");
  const body = $("collections").tBodies[0];
  body.replaceChildren();
  $("no-collections").hidden = names.length > 0;
  const infos = await Promise.all(names.map(async (name) => {
    const [info, stats] = await Promise.all([api("GET", c(name)), api("GET", c(name) + "/stats")]);
    return {info, stats: stats.result || {}};
  }));
  for (const {info, stats} of infos) {
    const row = body.insertRow();
    row.dataset.name = info.name;
    cell(row, info.name);
    cell(row, info.count, "num");
    cell(row, info.dim, "num");
    cell(row, info.metric);
    cell(row, info.index + (Object.keys(info.index_options).length ? " " + json(info.index_options) : ""));
    cell(row, info.segments, "num");
    cell(row, `${stats.indexed_rows ?? "?"} / ${stats.unindexed_rows ?? "?"}`, "num");
    cell(row, optimizerSummary(stats));
    row.onclick = () => selectCollection(info.name);
  }
  for (const select of document.querySelectorAll(".collection-select")) {
    const keep = select.value;
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    if (names.includes(keep)) select.value = keep;
  }
}

function selectCollection(name) {
  for (const row of $("collections").tBodies[0].rows) row.classList.toggle("selected", row.dataset.name === name);
  for (const select of document.querySelectorAll(".collection-select")) select.value = name;
}

// Points.Scroll arrives with the proto; its request and response field names are read from /openapi.json.
function scrollShape(doc) {
  const op = doc.paths["/shoal.v1.Points/Scroll"];
  if (!op) return null;
  const schema = (ref) => doc.components.schemas[ref.split("/").pop()] || {properties: {}};
  const request = Object.keys(schema(op.post.requestBody.content["application/json"].schema.$ref).properties);
  const response = Object.keys(schema(op.post.responses["200"].content["application/json"].schema.$ref).properties);
  const pick = (names, from) => names.find((n) => from.includes(n));
  const next = pick(["next_offset", "next_cursor", "next_page_token", "next"], response);
  return {
    limit: pick(["limit", "page_size", "count", "k"], request),
    cursor: next && pick([next.replace(/^next_?/, ""), "offset", "cursor", "page_token", "after"], request),
    next,
  };
}

async function loadApi() {
  const doc = await (await fetch("/openapi.json")).json();
  methods = new Set(Object.keys(doc.paths).filter((p) => p.startsWith("/shoal.")));
  scroll = scrollShape(doc);
  $("records-scroll").hidden = !scroll;
  $("records-get").hidden = !!scroll;
  $("records-mode").textContent = scroll ? "Scrolling with Points.Scroll." :
    "This server has no Points.Scroll yet: records are fetched by id.";
}

function showRecords(data) {
  const body = $("records").tBodies[0];
  body.replaceChildren();
  const ids = data.ids || (data.points || []).map((p) => p.id);
  ids.forEach((id, i) => {
    const row = body.insertRow();
    cell(row, String(id));
    cell(row, json((data.metadata || [])[i] || (data.points || [])[i]?.metadata), "json");
    const vec = (data.vectors || [])[i];
    const head = vec ? vec.slice(0, 8).map((v) => +v.toFixed(4)) : null;
    cell(row, head ? json(head) + (vec.length > 8 ? ` … (${vec.length})` : "") : "", "json");
  });
}

async function showRecordsPage(event) {
  if (event) event.preventDefault();
  const collection = $("records-collection").value;
  if (!scroll) {
    const ids = $("records-ids").value.split(",").filter((s) => s.trim()).map(parseId);
    showRecords(await api("POST", c(collection) + "/points/get", {ids}));
    return;
  }
  const request = event ? {collection} : nextPage;
  if (event) {
    const filter = parseJson($("records-filter").value, "filter");
    if (filter !== undefined) request.filter = filter;
    if (scroll.limit) request[scroll.limit] = Number($("records-limit").value);
  }
  const data = await api("POST", "/shoal.v1.Points/Scroll", request);
  showRecords(data);
  const next = scroll.next && data[scroll.next];
  nextPage = next && scroll.cursor ? {...request, [scroll.cursor]: next} : null;
  $("records-next").hidden = !nextPage;
}

async function queryVector(collection) {
  if (document.querySelector("input[name=query-by]:checked").value === "vector") {
    const text = $("search-vector").value.trim();
    if (!text) throw new Error("paste a vector: a JSON array of numbers or base64 of float32");
    return text.startsWith("[") ? parseJson(text, "vector") : text;
  }
  const id = parseId($("search-id").value);
  if (id === "") throw new Error("give the id of a record to search with");
  const got = await api("POST", c(collection) + "/points/get", {ids: [id]});
  if (!got.ids.length) throw new Error(`no record with id ${JSON.stringify(id)}`);
  return got.vectors[0];
}

async function runSearch(event) {
  event.preventDefault();
  const collection = $("search-collection").value;
  const request = {vector: await queryVector(collection), k: Number($("search-k").value),
                   include_metadata: true, explain: $("search-explain").checked};
  const filter = parseJson($("search-filter").value, "filter");
  const params = parseJson($("search-params").value, "params");
  if (filter !== undefined) request.filter = filter;
  if (params !== undefined) request.params = params;
  const started = performance.now();
  const {results} = await api("POST", c(collection) + "/search", request);
  const hits = results[0];
  const body = $("hits").tBodies[0];
  body.replaceChildren();
  hits.ids.forEach((id, i) => {
    const row = body.insertRow();
    row.dataset.id = String(id);
    cell(row, i + 1, "num");
    cell(row, String(id));
    cell(row, hits.scores[i].toFixed(4), "num");
    cell(row, hits.distances[i].toFixed(4), "num");
    cell(row, json(hits.metadata[i]), "json");
  });
  $("search-summary").textContent = `${hits.ids.length} hits in ${(performance.now() - started).toFixed(1)} ms`;
  $("plan").textContent = hits.plan && hits.plan.length ? JSON.stringify(hits.plan, null, 2) : "(plan not requested)";
}

async function loadStats() {
  $("stats").textContent = JSON.stringify((await api("GET", "/v1/admin/stats")).result, null, 2);
}

async function loadHealth() {
  const response = await fetch("/healthz");
  const badge = $("health");
  badge.textContent = response.ok ? "serving" : "not serving";
  badge.className = "badge " + (response.ok ? "ok" : "bad");
}

// Runs an action, showing its error instead of failing silently.
function guarded(action) {
  return async (event) => {
    try { showMessage(""); await action(event); } catch (err) { showMessage(err.message); }
  };
}

const refresh = guarded(async () => {
  await loadHealth();
  await loadCollections();
  await loadStats();
});

$("refresh").onclick = refresh;
$("forget-key").hidden = !sessionStorage.getItem(KEY_STORE);
$("forget-key").onclick = () => { sessionStorage.removeItem(KEY_STORE); $("forget-key").hidden = true; };
$("records-form").onsubmit = guarded(showRecordsPage);
$("records-next").onclick = guarded(() => showRecordsPage(null));
$("search-form").onsubmit = guarded(runSearch);
guarded(loadApi)().then(refresh);
