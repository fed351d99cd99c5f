// murmur web chat: the trends panel. Shown only when the server offers GET /v1/trends (a server with
// a search index: `murmur serve --index`); a server without it answers 404 and the panel stays hidden.
// Every text from the server is set as text, never as HTML; a summary's [n] become buttons that open
// the cited post below it.
"use strict";

const trendsPanel = {
  timer: null,
  window: "1h",
  everyMs: 60000,
};

function trendsHeaders() {
  const key = document.getElementById("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function trendsEl(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function trendsCitedPost(post) {
  const box = trendsEl("blockquote", "trend-post");
  box.dataset.postId = post.post_id;
  box.append(trendsEl("div", "trend-post-text", post.text));
  box.append(trendsEl("div", "trend-post-meta", `@${post.author_id} · ${String(post.created_at).slice(0, 16).replace("T", " ")}`));
  return box;
}

// The summary as text nodes and [n] buttons; a button toggles its cited post under the summary.
function trendsSummary(trend, item) {
  const p = trendsEl("p", "trend-summary");
  const byN = new Map((trend.citations || []).map((c) => [String(c.n), c]));
  const opened = trendsEl("div", "trend-opened");
  const parts = String(trend.summary).split(/(\[\d{1,3}\])/);
  for (const part of parts) {
    const m = part.match(/^\[(\d{1,3})\]$/);
    const cited = m && byN.get(m[1]);
    if (!cited) { if (part) p.append(document.createTextNode(part)); continue; }
    const b = trendsEl("button", "trend-cite", part);
    b.type = "button";
    b.title = "open the cited post";
    b.addEventListener("click", () => {
      const shown = opened.querySelector(`[data-post-id="${CSS.escape(cited.post_id)}"]`);
      if (shown) { shown.remove(); b.classList.remove("open"); return; }
      opened.append(trendsCitedPost(cited));
      b.classList.add("open");
    });
    p.append(b);
  }
  item.append(p, opened);
}

function renderTrends(body) {
  const list = document.getElementById("trends-list");
  list.replaceChildren();
  const data = Array.isArray(body.data) ? body.data : [];
  document.getElementById("trends-empty").hidden = data.length > 0;
  for (const trend of data) {
    const item = trendsEl("li", "trend");
    item.append(trendsEl("div", "trend-label", trend.label));
    item.append(trendsEl("div", "trend-meta", `${trend.posts} posts · score ${trend.score} · ${trend.lang}`));
    const terms = trendsEl("div", "trend-terms");
    for (const t of (trend.terms || []).slice(0, 6)) terms.append(trendsEl("span", "trend-term", t.term));
    item.append(terms);
    if (trend.summary) {
      trendsSummary(trend, item);
    } else {
      const posts = trendsEl("div", "trend-opened");
      for (const post of (trend.examples || []).slice(0, 2)) posts.append(trendsCitedPost(post));
      item.append(posts);
    }
    list.append(item);
  }
  const until = String(body.until || "").slice(0, 16).replace("T", " ");
  document.getElementById("trends-when").textContent = until ? `until ${until} UTC` : "";
}

async function loadTrends() {
  const panel = document.getElementById("trends-panel");
  let r;
  try {
    r = await fetch(`/v1/trends?window=${encodeURIComponent(trendsPanel.window)}&k=5`, { headers: trendsHeaders() });
  } catch {
    return; // the server is unreachable; the chat says so
  }
  if (r.status === 404 || r.status === 401) { panel.hidden = true; return; }
  panel.hidden = false;
  if (!r.ok) {
    let message = `HTTP ${r.status}`;
    try { message = (await r.json()).error?.message || message; } catch { /* not JSON */ }
    document.getElementById("trends-empty").hidden = false;
    document.getElementById("trends-empty").textContent = message;
    return;
  }
  renderTrends(await r.json());
  clearTimeout(trendsPanel.timer);
  trendsPanel.timer = setTimeout(loadTrends, trendsPanel.everyMs);
}

function initTrends() {
  document.getElementById("trends-window").addEventListener("change", (e) => {
    trendsPanel.window = e.target.value;
    loadTrends();
  });
  document.getElementById("trends-refresh").addEventListener("click", loadTrends);
  document.getElementById("api-key").addEventListener("change", loadTrends);
  loadTrends();
}

window.murmurTrends = { loadTrends };
initTrends();
