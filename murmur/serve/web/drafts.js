// murmur web chat: the "Draft a post" action. Shown only when the server offers POST /v1/drafts (a
// server with a search index: `murmur serve --index`): an empty request answers 400 there (it names the
// missing topic) and 404 elsewhere, so the probe never generates. The action drafts posts on the topic
// typed in the message box and lists them with their scores; "Use" puts one into the message box.
// Every text from the server is set as text, never as HTML.
"use strict";

function draftsHeaders() {
  const key = document.getElementById("api-key").value.trim();
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

function draftsEl(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

async function draftsProbe() {
  let r;
  try {
    r = await fetch("/v1/drafts", { method: "POST", headers: draftsHeaders(), body: "{}" });
  } catch {
    return;
  }
  document.getElementById("draft-post").hidden = r.status !== 400;
}

function draftsShow(body) {
  const box = document.getElementById("drafts-box");
  const list = document.getElementById("drafts-list");
  list.replaceChildren();
  box.hidden = false;
  const data = Array.isArray(body.data) ? body.data : [];
  const dropped = Object.entries(body.filtered || {}).filter(([, v]) => v > 0).map(([k, v]) => `${k.replace("_", " ")} ${v}`);
  document.getElementById("drafts-note").textContent =
    `${data.length} of ${body.requested} drafts (${body.lang}) from ${body.candidates} candidates` +
    (dropped.length ? `; dropped: ${dropped.join(", ")}` : "");
  for (const d of data) {
    const item = draftsEl("li", "draft");
    item.append(draftsEl("div", "draft-text", d.text));
    const row = draftsEl("div", "draft-meta");
    row.append(draftsEl("span", "draft-score", `score ${Number(d.score).toFixed(3)} · ${[...d.text].length} chars`));
    const use = draftsEl("button", "draft-use ghost", "Use");
    use.type = "button";
    use.addEventListener("click", () => {
      const prompt = document.getElementById("prompt");
      prompt.value = d.text;
      prompt.focus();
    });
    row.append(use);
    item.append(row);
    list.append(item);
  }
}

async function draftPost() {
  const topic = document.getElementById("prompt").value.trim();
  const note = document.getElementById("drafts-note");
  const box = document.getElementById("drafts-box");
  box.hidden = false;
  document.getElementById("drafts-list").replaceChildren();
  if (!topic) { note.textContent = "Type a topic in the message box, then Draft a post."; return; }
  note.textContent = `Drafting posts about “${topic}”…`;
  const button = document.getElementById("draft-post");
  button.disabled = true;
  try {
    const r = await fetch("/v1/drafts", { method: "POST", headers: draftsHeaders(),
                                          body: JSON.stringify({ kind: "post", topic, n: 3 }) });
    if (!r.ok) {
      let message = `HTTP ${r.status}`;
      try { message = (await r.json()).error?.message || message; } catch { /* not JSON */ }
      note.textContent = message;
      return;
    }
    draftsShow(await r.json());
  } catch {
    note.textContent = "The server did not answer.";
  } finally {
    button.disabled = false;
  }
}

function initDrafts() {
  document.getElementById("draft-post").addEventListener("click", draftPost);
  document.getElementById("drafts-close").addEventListener("click", () => {
    document.getElementById("drafts-box").hidden = true;
  });
  document.getElementById("api-key").addEventListener("change", draftsProbe);
  draftsProbe();
}

window.murmurDrafts = { draftPost };
initDrafts();
