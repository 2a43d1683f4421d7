// vecface search page: upload / drop / webcam snapshot / text -> /api/search/* -> a grid of hits,
// narrowed by the filters (date, camera, person, place). The People view is people.js.
// Plain JS, no build step. The webcam is read here, in the browser (getUserMedia), never on the server.
"use strict";

const $ = (id) => document.getElementById(id);
// last: re-runs the last search (when a filter changes); seq: the latest request's number (an answer
// to an earlier one is dropped); names: person id -> name (people.js)
const state = { health: null, image: null, imageUrl: null, face: null, stream: null, last: null, seq: 0, names: {},
  people: [] };
const FILTERS = ["since", "until", "camera", "person", "near", "box"];

function setBusy(text) {
  document.body.dataset.state = "busy";
  $("status").textContent = text;
  $("error").hidden = true;
}

function showError(message) {
  document.body.dataset.state = "error";
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

function ms(x) {
  return x < 10 ? x.toFixed(2) + " ms" : x.toFixed(1) + " ms";
}

function params() {
  const k = parseInt($("k").value, 10);
  return { k: Number.isFinite(k) ? Math.min(Math.max(k, 1), 100) : 12, tag: $("tag").value.trim(), filters: filters() };
}

// the filters given (blank ones are left out; km only with near), as the API takes them
function filters() {
  const f = {};
  FILTERS.forEach((id) => { const v = $(id).value.trim(); if (v) f[id] = v; });
  const km = $("km").value.trim();
  if (f.near && km) f.km = km;
  return f;
}

function describeFilters(f) {
  return Object.entries(f || {}).map(([key, v]) =>
    key === "person" ? `person ${state.names[v] || v}` : key === "km" ? `within ${v} km` : `${key} ${v}`).join(", ");
}

// the answer of a search (dropped, as null, when a newer search started meanwhile)
async function latest(url, options) {
  const seq = ++state.seq;
  const res = await callApi(url, options);
  return seq === state.seq ? res : null;
}

async function callApi(url, options) {
  let res;
  try {
    res = await fetch(url, options);
  } catch (e) {
    return { ok: false, body: { error: "the server cannot be reached: " + e.message } };
  }
  let body;
  try {
    body = await res.json();
  } catch (e) {
    body = { error: `unexpected answer from the server (HTTP ${res.status})` };
  }
  return { ok: res.ok, status: res.status, body };
}

// ---- boxes: bbox is [top, right, bottom, left] in original-image pixels; size is [width, height]
function addBox(container, bbox, size, label, cls) {
  const [t, r, b, l] = bbox;
  const [w, h] = size;
  const box = document.createElement("div");
  box.className = "face-box" + (cls ? " " + cls : "");
  box.style.left = (100 * l / w) + "%";
  box.style.top = (100 * t / h) + "%";
  box.style.width = (100 * (r - l) / w) + "%";
  box.style.height = (100 * (b - t) / h) + "%";
  if (label) {
    const span = document.createElement("span");
    span.textContent = label;
    box.appendChild(span);
  }
  container.appendChild(box);
  return box;
}

function clearBoxes(container) {
  container.querySelectorAll(".face-box").forEach((el) => el.remove());
}

// ---- the query preview and the face picker
function showPreview(blob) {
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.imageUrl = URL.createObjectURL(blob);
  $("preview-img").src = state.imageUrl;
  clearBoxes($("preview-box"));
  $("faces").hidden = true;
  $("faces").replaceChildren();
  $("preview").hidden = false;
}

function withImageSize(size, fn) {
  if (size) return fn(size);
  const img = $("preview-img");
  const go = () => fn([img.naturalWidth, img.naturalHeight]);
  if (img.complete && img.naturalWidth) go(); else img.addEventListener("load", go, { once: true });
}

function showFaces(faces, size, chosen, choose) {
  const box = $("preview-box");
  clearBoxes(box);
  const bar = $("faces");
  bar.replaceChildren();
  if (!faces || faces.length === 0) { bar.hidden = true; return; }
  withImageSize(size, (sz) => {
    faces.forEach((f) => {
      const cls = f.face === chosen ? "chosen" : (faces.length > 1 ? "pick" : "");
      const el = addBox(box, f.bbox, sz, String(f.face), cls);
      if (faces.length > 1) {
        el.title = "search with face " + f.face;
        el.addEventListener("click", () => searchImage(state.image, f.face));
      }
    });
  });
  if (faces.length > 1) {
    const label = document.createElement("span");
    label.className = "muted small";
    label.textContent = choose ? "Pick a face:" : "Faces:";
    bar.appendChild(label);
    faces.forEach((f) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "face-pick" + (f.face === chosen ? " active" : "");
      b.dataset.face = f.face;
      b.textContent = "face " + f.face;
      b.addEventListener("click", () => searchImage(state.image, f.face));
      bar.appendChild(b);
    });
    bar.hidden = false;
  }
}

// ---- results
function renderResults(data, what) {
  const grid = $("results");
  grid.replaceChildren();
  data.hits.forEach((h) => {
    const card = document.createElement("article");
    card.className = "hit";
    card.dataset.id = h.id;
    const boxed = document.createElement("div");
    boxed.className = "boxed";
    const img = document.createElement("img");
    img.alt = h.file || h.id;
    img.loading = "lazy";
    img.src = h.thumb;
    boxed.appendChild(img);
    if (h.bbox && h.image_size) addBox(boxed, h.bbox, h.image_size, "", "");
    card.appendChild(boxed);

    const sim = h.similarity === null || h.similarity === undefined ? null : h.similarity;
    const top = document.createElement("div");
    top.className = "meta";
    const s = document.createElement("span");
    s.className = "sim";
    s.textContent = sim === null ? "distance " + h.distance.toFixed(3) : "similarity " + sim.toFixed(3);
    top.appendChild(s);
    const rank = document.createElement("span");
    rank.textContent = "#" + h.rank;
    top.appendChild(rank);
    card.appendChild(top);
    if (sim !== null) {
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("i");
      fill.style.width = Math.max(0, Math.min(1, sim)) * 100 + "%";
      bar.appendChild(fill);
      card.appendChild(bar);
    }
    const file = document.createElement("div");
    file.className = "file";
    file.textContent = h.file || h.id;
    file.title = h.file || h.id;
    card.appendChild(file);
    const meta = document.createElement("div");
    meta.className = "meta foot";
    const tag = document.createElement("span");
    const who = h.person ? (state.names[h.person] || h.person) : "";
    tag.textContent = [h.face ? "face " + h.face : "", h.tag ? "tag " + h.tag : "", who].filter(Boolean).join(" · ");
    meta.appendChild(tag);
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "similar";
    more.title = "more like this: search with this record";
    more.addEventListener("click", () => searchId(h.id, h.file));
    meta.appendChild(more);
    card.appendChild(meta);
    if (h.taken || h.camera) {
      const when = document.createElement("div");
      when.className = "meta when";
      when.textContent = [h.taken ? String(h.taken).slice(0, 10) : "", h.camera || ""].filter(Boolean).join(" · ");
      card.appendChild(when);
    }
    grid.appendChild(card);
  });
  const n = data.hits.length;
  const timing = data.query.mode === "id" || data.query.mode === "person"
    ? `search ${ms(data.search_ms)}`
    : `embed ${ms(data.embed_ms)} · search ${ms(data.search_ms)}`;
  const shown = describeFilters(data.filters);
  $("status").textContent = `${what}: ${n} result${n === 1 ? "" : "s"} · ${timing}` +
    (data.tag ? ` · tag ${data.tag}` : "") + (shown ? ` · ${shown}` : "");
  document.body.dataset.state = "done";
}

// ---- the three kinds of query
async function searchImage(blob, face) {
  if (!blob) return;
  state.image = blob;
  state.last = () => searchImage(blob, face || null);
  if (face === null || face === undefined) showPreview(blob);
  const { k, tag, filters: f } = params();
  const form = new FormData();
  form.append("image", blob, blob.name || "query.jpg");
  form.append("k", String(k));
  if (tag) form.append("tag", tag);
  if (face) form.append("face", String(face));
  Object.entries(f).forEach(([key, v]) => form.append(key, v));
  setBusy(face ? `searching with face ${face}…` : "searching…");
  const res = await latest("/api/search/image", { method: "POST", body: form });
  if (!res) return;
  if (!res.ok) {
    const body = res.body || {};
    if (body.faces) showFaces(body.faces, body.image_size, null, body.choose_face);
    if (body.choose_face) {
      $("results").replaceChildren();
      document.body.dataset.state = "choose";
      $("status").textContent = body.error;
      return;
    }
    showError(body.error || "the search failed");
    return;
  }
  const q = res.body.query;
  if (q.faces) showFaces(q.faces, q.image_size, q.face, false);
  renderResults(res.body, q.face ? `face ${q.face} of ${q.faces.length}` : "image");
}

async function searchText(text) {
  const { k, tag, filters: f } = params();
  state.last = () => searchText(text);
  $("preview").hidden = true;
  setBusy("searching…");
  const res = await latest("/api/search/text", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text, k, tag: tag || null, ...f }),
  });
  if (!res) return;
  if (!res.ok) return showError(res.body.error || "the search failed");
  renderResults(res.body, `“${text}”`);
}

async function searchId(id, file) {
  const { k, tag, filters: f } = params();
  state.last = () => searchId(id, file);
  setBusy("searching…");
  const query = new URLSearchParams({ k: String(k), ...(tag ? { tag } : {}), ...f });
  const res = await latest(`/api/search/id/${encodeURIComponent(id)}?${query}`);
  if (!res) return;
  if (!res.ok) return showError(res.body.error || "the search failed");
  renderResults(res.body, `like ${file || id}`);
}

// ---- webcam: getUserMedia -> <video> -> <canvas> -> JPEG blob -> upload
async function startWebcam() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("this browser gives no camera access here: open the page at http://127.0.0.1 or localhost " +
      "(or over https)");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (e) {
    showError("the webcam could not be opened: " + (e.message || e.name));
    return;
  }
  $("video").srcObject = state.stream;
  $("webcam").hidden = false;
  $("webcam-start").hidden = true;
}

function stopWebcam() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("video").srcObject = null;
  $("webcam").hidden = true;
  $("webcam-start").hidden = false;
}

function snapshot() {
  const video = $("video");
  if (!video.videoWidth) return showError("the webcam has no picture yet; try again in a moment");
  const canvas = $("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    if (!blob) return showError("the snapshot could not be encoded");
    blob.name = "webcam.jpg";
    searchImage(blob, null);
  }, "image/jpeg", 0.92);
}

// ---- wiring
async function init() {
  const res = await callApi("/api/health");
  if (!res.ok) {
    $("info").textContent = "not connected";
    return showError(res.body.error || "the server is not ready");
  }
  const h = res.body;
  state.health = h;
  $("info").textContent = `${h.backend} / ${h.collection} · ${h.embedder.kind} (${h.embedder.dim}-d) · ` +
    `${h.count} record${h.count === 1 ? "" : "s"}`;
  $("text-form").hidden = !h.embedder.supports_text;
  $("text-off").hidden = h.embedder.supports_text;
  $("text").disabled = !h.embedder.supports_text;
  await loadPeople();  // people.js: names for the person filter and the hits
  showView();
  document.body.dataset.state = "ready";
}

// ---- the filters: a change searches again with the last query
function filtersChanged() {
  const shown = describeFilters(filters());
  $("filters-on").textContent = shown ? "· " + shown : "";
  if (state.last) state.last();
}

document.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  const file = $("file");
  drop.addEventListener("click", (e) => { if (e.target.tagName !== "LABEL" && e.target !== file) file.click(); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } });
  file.addEventListener("change", () => { if (file.files.length) searchImage(file.files[0], null); file.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => {
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) searchImage(f, null);
  });
  $("webcam-start").addEventListener("click", startWebcam);
  $("webcam-stop").addEventListener("click", stopWebcam);
  $("snap").addEventListener("click", snapshot);
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (text) searchText(text);
  });
  FILTERS.concat(["km"]).forEach((id) => $(id).addEventListener("change", filtersChanged));
  $("filters-clear").addEventListener("click", () => {
    FILTERS.forEach((id) => { $(id).value = ""; });
    filtersChanged();
  });
  window.addEventListener("hashchange", showView);
  init();
});
