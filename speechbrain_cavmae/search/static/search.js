// The search page: queries the local server, shows the hits, plays a moment.
// Its state is written to <body data-state> ("idle", "searching", "hits:N", "error") and
// <body data-playing> ("<segment>@<seconds>" once a moment plays), for people and tests.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let current = null;

function fmt(t) {
  const m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1);
  return `${m}:${s.padStart(4, "0")}`;
}
function status(text, state) {
  $("status").textContent = text;
  if (state) document.body.dataset.state = state;
}
function options() {
  const o = { modality: $("modality").value, target: $("target").value,
              level: $("level").value, top_k: $("top_k").value || "12" };
  if (!o.target) delete o.target;
  if ($("overlapping").checked) o.overlapping = "1";
  return o;
}

async function call(url, init) {
  const response = await fetch(url, init);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function show(hits) {
  const box = $("hits");
  box.replaceChildren();
  hits.forEach((h, i) => {
    const card = document.createElement("article");
    card.className = "hit";
    card.dataset.segment = h.segment;
    card.dataset.file = h.file;
    card.dataset.start = h.start;
    card.dataset.end = h.end;
    const picture = h.thumb ? Object.assign(document.createElement("img"),
      { src: h.thumb, alt: `${h.name} at ${fmt(h.start)}`, loading: "lazy" })
      : Object.assign(document.createElement("div"), { className: "sound", textContent: "♪" });
    const meta = document.createElement("div");
    meta.className = "meta";
    const more = Object.assign(document.createElement("button"),
      { className: "more", textContent: "similar", title: "search by this moment" });
    more.addEventListener("click", (e) => { e.stopPropagation(); similar(h.segment); });
    const name = Object.assign(document.createElement("div"),
      { className: "name", textContent: h.name, title: h.path });
    const when = document.createElement("div");
    when.className = "when";
    when.textContent = `${fmt(h.start)}–${fmt(h.end)} · ${h.score.toFixed(3)}`;
    meta.append(more, name, when);
    card.append(picture, meta);
    card.addEventListener("click", () => play(h, card));
    box.append(card);
  });
  status(`${hits.length} hit${hits.length === 1 ? "" : "s"}`, `hits:${hits.length}`);
}

function play(hit, card) {
  const video = $("player");
  current = hit;
  document.querySelectorAll(".hit.playing").forEach((c) => c.classList.remove("playing"));
  if (card) card.classList.add("playing");
  $("player-box").hidden = false;
  $("now").textContent = `${hit.path}  ${fmt(hit.start)}–${fmt(hit.end)}`;
  video.muted = params.has("muted");
  video.src = `${hit.media}#t=${hit.start.toFixed(2)},${hit.end.toFixed(2)}`;
  video.play().catch((err) => status(`cannot play: ${err.message}`));
}

$("player").addEventListener("timeupdate", () => {
  const video = $("player");
  if (!current) return;
  if (video.currentTime >= current.start - 0.05 && !video.paused) {
    document.body.dataset.playing = `${current.segment}@${video.currentTime.toFixed(2)}`;
  }
  if (video.currentTime >= current.end) video.pause();  // the moment only
});

$("player").addEventListener("error", () => {
  const err = $("player").error;
  status(`cannot play this file (media error ${err ? err.code : "?"})`, "error");
});

async function searchFile(file) {
  status(`searching by ${file.name}…`, "searching");
  const form = new FormData();
  form.append("file", file);
  for (const [k, v] of Object.entries(options())) form.append(k, v);
  for (const k of ["start", "end"]) if ($(k).value) form.append(k, $(k).value);
  try {
    show((await call("/api/search", { method: "POST", body: form })).hits);
  } catch (err) { status(err.message, "error"); }
}

async function similar(segment) {
  status("searching…", "searching");
  try {
    const hits = (await call(`/api/similar/${segment}?${new URLSearchParams(options())}`)).hits;
    show(hits);
    return hits;
  } catch (err) { status(err.message, "error"); return []; }
}

// Drop zone and file picker.
const drop = $("drop");
$("file").addEventListener("change", (e) => e.target.files[0] && searchFile(e.target.files[0]));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) searchFile(e.dataTransfer.files[0]);
});

// ?path=FILE&t=SECONDS[&modality=&target=&level=&top_k=][&autoplay=1]: search by an
// indexed moment as soon as the page opens (bookmarks, and the tests).
async function start() {
  for (const k of ["modality", "target", "level", "top_k"]) if (params.has(k)) $(k).value = params.get(k);
  $("overlapping").checked = params.get("overlapping") === "1";
  try {
    const info = await call("/api/info");
    $("info").textContent = `${info.counts.files} files, ${info.counts.segments} moments indexed`;
  } catch (err) { $("info").textContent = err.message; }
  if (params.has("path")) {
    try {
      const m = await call(`/api/moment?${new URLSearchParams({ path: params.get("path"), t: params.get("t") || "0" })}`);
      const hits = await similar(m.segment);
      if (params.has("autoplay") && hits.length) play(hits[0], document.querySelector(".hit"));
    } catch (err) { status(err.message, "error"); }
  }
}
start();
