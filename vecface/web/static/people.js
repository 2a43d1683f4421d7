// vecface People view: one tile per person (face crop, name, face count) from /api/people; a click
// shows their photos in the results grid; the name is edited in place (Enter saves, Escape undoes).
// Uses app.js's helpers ($, state, callApi, showError, setBusy, renderResults).
"use strict";

function personLabel(p) {
  return p.name || p.id;
}

// the people (for the tiles, the person filter's suggestions and the names on hits)
async function loadPeople() {
  const res = await callApi("/api/people");
  const msg = $("people-msg");
  if (!res.ok) {
    msg.textContent = res.body.error || "the people could not be read";
    return;
  }
  const people = res.body.people;
  state.people = people;
  fillNames();
  msg.textContent = res.body.message ||
    `${people.length} ${people.length === 1 ? "person" : "people"} in ${state.health ? state.health.collection : "this collection"}`;
  $("people-help").hidden = people.length === 0;
  renderPeople(people);
}

// person id -> name, and the person filter's suggestions
function fillNames() {
  state.names = {};
  const names = $("people-names");
  names.replaceChildren();
  (state.people || []).forEach((p) => {
    if (p.name) state.names[p.id] = p.name;
    const opt = document.createElement("option");
    opt.value = p.name || p.id;
    opt.label = `${personLabel(p)} (${p.faces} face${p.faces === 1 ? "" : "s"})`;
    names.appendChild(opt);
  });
}

function renderPeople(people) {
  const grid = $("people");
  grid.replaceChildren();
  people.forEach((p) => {
    const tile = document.createElement("article");
    tile.className = "person";
    tile.dataset.id = p.id;
    const face = document.createElement("button");
    face.type = "button";
    face.className = "face";
    face.title = `show the photos of ${personLabel(p)}`;
    const img = document.createElement("img");
    img.src = p.face;
    img.alt = "face of " + personLabel(p);
    img.loading = "lazy";
    face.appendChild(img);
    face.addEventListener("click", () => showPhotos(p, tile));
    tile.appendChild(face);

    const name = document.createElement("input");
    name.type = "text";
    name.className = "name";
    name.value = p.name || "";
    name.dataset.saved = name.value;
    name.placeholder = p.id;
    name.maxLength = 200;
    name.setAttribute("aria-label", "name of " + p.id);
    name.title = "edit and press Enter to save (empty: no name)";
    name.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); rename(p, name); }
      if (e.key === "Escape") { name.value = name.dataset.saved; name.classList.remove("bad"); }
    });
    tile.appendChild(name);

    const count = document.createElement("span");
    count.className = "count muted small";
    count.textContent = `${p.id} · ${p.faces} face${p.faces === 1 ? "" : "s"}`;
    tile.appendChild(count);
    grid.appendChild(tile);
  });
}

async function showPhotos(p, tile) {
  document.querySelectorAll("#people .person.active").forEach((el) => el.classList.remove("active"));
  tile.classList.add("active");
  state.last = null;  // the filters do not apply to a person's photos
  setBusy(`the photos of ${personLabel(p)}…`);
  const res = await latest(p.photos);
  if (!res) return;
  if (!res.ok) return showError(res.body.error || "the photos could not be read");
  const q = res.body.query;
  const shown = res.body.hits.length < q.faces ? ` (the ${res.body.hits.length} closest of ${q.faces})` : "";
  renderResults(res.body, `${q.name || q.person}${shown}`);
}

async function rename(p, input) {
  const name = input.value.trim();
  setBusy(`naming ${p.id}…`);
  const res = await callApi(`/api/people/${encodeURIComponent(p.id)}`, {
    method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }),
  });
  if (!res.ok) {
    input.classList.add("bad");
    return showError(res.body.error || "the name was not saved");
  }
  input.classList.remove("bad");
  p.name = res.body.name;
  input.value = input.dataset.saved = p.name || "";
  fillNames();
  $("status").textContent = p.name ? `${p.id} is now named ${p.name}` : `${p.id} has no name now`;
  document.body.dataset.state = "renamed";
}

// the two views share the results column: Search (the query form) and People (the tiles), the one
// the page's address says (#people, else Search)
function showView() {
  const people = location.hash === "#people";
  $("query").hidden = people;
  $("people-view").hidden = !people;
  $("tab-search").classList.toggle("active", !people);
  $("tab-people").classList.toggle("active", people);
  if (people && document.body.dataset.state && document.body.dataset.state !== "busy") loadPeople();
}
