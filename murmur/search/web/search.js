// The search page: queries /v1/search, shows results with their highlights, and re-runs the query
// every two seconds while "live" is on, so posts added through /v1/posts appear as they arrive.
"use strict";
const $ = (id) => document.getElementById(id);
const FIELDS = ["q", "mode", "sort", "lang", "hashtag", "author", "since", "until", "min_likes"];
let last = "";

function apiKey() {
  try { return (JSON.parse(localStorage.getItem("murmur.chat.v1") || "{}").apiKey) || ""; } catch { return ""; }
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function marked(text, spans) {
  let out = "", at = 0;
  for (const [a, b] of spans) {
    out += escapeHtml(text.slice(at, a)) + "<mark>" + escapeHtml(text.slice(a, b)) + "</mark>";
    at = b;
  }
  return out + escapeHtml(text.slice(at));
}

async function run() {
  const params = new URLSearchParams();
  for (const f of FIELDS) { const v = $(f).value.trim(); if (v) params.set(f, v); }
  if (!params.get("q")) { $("results").innerHTML = ""; return; }
  params.set("k", "20");
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const resp = await fetch(`/v1/search?${params}`, { headers });
  const body = await resp.json();
  if (!resp.ok) { $("status").textContent = body.error ? body.error.message : `HTTP ${resp.status}`; return; }
  $("status").textContent = "";
  const html = body.data.map((r) =>
    `<div class="hit" data-post-id="${escapeHtml(r.post_id)}"><div class="text">${marked(r.text, r.highlights)}</div>` +
    `<div class="meta">${escapeHtml(r.created_at)} · ${escapeHtml(r.lang)} · author ${escapeHtml(r.author_id)} · ` +
    `score ${r.score.toFixed(4)}</div></div>`).join("") || "<p>No results.</p>";
  if (html !== last) { $("results").innerHTML = html; last = html; }
}

$("form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
setInterval(() => { if ($("live").checked && document.visibilityState === "visible") run(); }, 2000);
