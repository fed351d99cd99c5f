// murmur web chat: one page, no build step. Streams replies from /v1/chat/completions (SSE over
// fetch + ReadableStream), keeps conversations in localStorage, renders markdown safely. When the
// server runs its own tools (search_posts), each run arrives as a chunk's `murmur_tool` field: the
// page shows the search, and citations [n] in the answer open the post the model read as [n].
"use strict";

// ------------------------------------------------------------------ safe markdown
// Model output is untrusted: every character is HTML-escaped first, and only then are a few
// markdown forms turned into tags we write ourselves. Links are kept only for http(s) URLs.

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function renderInline(escaped) {
  const codes = [];
  let s = escaped.replace(/`([^`\n]+)`/g, (_, code) => {
    codes.push(code);
    return `\uE000${codes.length - 1}\uE001`;
  });
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
    (_, label, url) => `<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>`);
  s = s.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/__([^_\n]+)__/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, "$1<em>$2</em>");
  s = s.replace(/(^|[^_\w])_([^_\n]+)_(?!\w)/g, "$1<em>$2</em>");
  return s.replace(/\uE000(\d+)\uE001/g, (m, i) => (i < codes.length ? `<code>${codes[i]}</code>` : ""));
}

const FENCE = /^\s*```\s*([\w+#.-]*)\s*$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d+[.)]\s+(.*)$/;
const HEADING = /^(#{1,6})\s+(.*)$/;

function renderMarkdown(source) {
  const lines = escapeHtml(String(source)).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  const isBlockStart = (line) => FENCE.test(line) || BULLET.test(line) || NUMBERED.test(line) || HEADING.test(line);
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(FENCE);
    if (fence) {
      const code = [];
      i++;
      while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) code.push(lines[i++]);
      i++; // closing fence (absent while a reply is still streaming)
      const lang = fence[1] ? ` class="language-${fence[1]}"` : "";
      out.push(`<pre><code${lang}>${code.join("\n")}</code></pre>`);
      continue;
    }
    const list = BULLET.test(line) ? ["ul", BULLET] : NUMBERED.test(line) ? ["ol", NUMBERED] : null;
    if (list) {
      const items = [];
      while (i < lines.length && list[1].test(lines[i])) items.push(`<li>${renderInline(lines[i++].match(list[1])[1])}</li>`);
      out.push(`<${list[0]}>${items.join("")}</${list[0]}>`);
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      const level = Math.min(6, heading[1].length + 2);
      out.push(`<h${level}>${renderInline(heading[2])}</h${level}>`);
      i++;
      continue;
    }
    if (line.trim() === "") { i++; continue; }
    const para = [line];
    i++;
    while (i < lines.length && lines[i].trim() !== "" && !isBlockStart(lines[i])) para.push(lines[i++]);
    out.push(`<p>${para.map(renderInline).join("<br>")}</p>`);
  }
  return out.join("");
}

// ------------------------------------------------------------------ state (localStorage)
const STORE = "murmur.chat.v1";
const $ = (id) => document.getElementById(id);

function loadStore() {
  try {
    const data = JSON.parse(localStorage.getItem(STORE) || "{}");
    return { conversations: Array.isArray(data.conversations) ? data.conversations : [], current: data.current || null,
             settings: data.settings || {} };
  } catch {
    return { conversations: [], current: null, settings: {} };
  }
}

const state = loadStore();
let model = null;        // id from /v1/models
let contextLen = null;   // the model's context in tokens (max_model_len from /v1/models)
let controller = null;   // AbortController of the reply being streamed

function save() {
  localStorage.setItem(STORE, JSON.stringify(state));
}

function current() {
  return state.conversations.find((c) => c.id === state.current) || null;
}

function newConversation() {
  const conv = { id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`, title: "New chat",
                 messages: [], updated: Date.now() };
  state.conversations.unshift(conv);
  state.current = conv.id;
  save();
  return conv;
}

// ------------------------------------------------------------------ rendering
function renderSidebar() {
  const nav = $("conversations");
  nav.replaceChildren();
  for (const conv of state.conversations) {
    const row = document.createElement("div");
    row.className = "conv" + (conv.id === state.current ? " active" : "");
    row.dataset.id = conv.id;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = conv.title || "New chat";
    const del = document.createElement("button");
    del.className = "delete";
    del.type = "button";
    del.title = "Delete conversation";
    del.textContent = "✕";
    del.addEventListener("click", (e) => {
      e.stopPropagation();
      if (controller && conv.id === state.current) controller.abort();
      state.conversations = state.conversations.filter((c) => c.id !== conv.id);
      if (state.current === conv.id) state.current = state.conversations[0]?.id || null;
      save();
      renderAll();
    });
    row.addEventListener("click", () => {
      if (controller) controller.abort();
      state.current = conv.id;
      save();
      renderAll();
    });
    row.append(title, del);
    nav.append(row);
  }
}

function messageElement(msg) {
  const el = document.createElement("div");
  el.className = `msg ${msg.role}`;
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.textContent = msg.role === "user" ? "you" : "m";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  fillBubble(bubble, msg);
  el.append(avatar, bubble);
  return el;
}

function fillBubble(bubble, msg) {
  if (msg.role === "user") {
    bubble.textContent = msg.content;  // the user's own text, shown as typed
  } else if (msg.tools && msg.tools.length) {
    bubble.replaceChildren(...msg.tools.map(toolLine));
    const answer = document.createElement("div");
    answer.className = "answer";
    answer.innerHTML = renderMarkdown(msg.content);
    const cited = msg.tools.filter((t) => t.status === "done" && Array.isArray(t.items)).pop();
    if (cited) linkCitations(answer, cited.items, bubble);
    bubble.append(answer);
  } else {
    bubble.innerHTML = renderMarkdown(msg.content);
  }
  if (msg.note) {
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = msg.note;
    bubble.append(note);
  }
}

// ------------------------------------------------------------------ server-run tools and citations
// A tool event: {id, name, arguments, status: "running" | "done" | "error", items?, error?}; the
// message keeps the latest state of each call (by id).
function noteTool(msg, event) {
  if (!event || typeof event !== "object") return;
  const tool = { id: String(event.id || ""), name: String(event.name || "tool"), status: String(event.status || ""),
                 query: event.arguments && typeof event.arguments.query === "string" ? event.arguments.query : null,
                 items: Array.isArray(event.items) ? event.items : undefined,
                 error: event.error ? String(event.error) : undefined };
  msg.tools = msg.tools || [];
  const at = msg.tools.findIndex((t) => t.id === tool.id);
  if (at >= 0) msg.tools[at] = tool; else msg.tools.push(tool);
}

function toolLine(tool) {
  const line = document.createElement("div");
  line.className = `tool-line ${tool.status}`;
  const search = tool.name === "search_posts" && tool.query !== null;
  const what = search ? `posts for “${tool.query}”` : tool.name;
  if (tool.status === "running") line.textContent = search ? `searching ${what}…` : `running ${what}…`;
  else if (tool.status === "error") line.textContent = `${search ? "searching" : "running"} ${what} failed: ${tool.error || "error"}`;
  else {
    const n = (tool.items || []).length;
    line.textContent = search ? `searched ${what} · ${n} post${n === 1 ? "" : "s"}` : `ran ${what}`;
  }
  return line;
}

// Turn "[n]" in the rendered answer's text (not in code or links) into buttons that open post n.
function linkCitations(root, items, bubble) {
  const byN = new Map(items.map((item, i) => [String(item.n ?? i + 1), item]));
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) {
    if (!walker.currentNode.parentElement.closest("code, pre, a")) nodes.push(walker.currentNode);
  }
  for (const node of nodes) {
    const parts = node.textContent.split(/(\[\d+\])/);
    if (parts.length === 1 || !parts.some((p) => byN.has(p.slice(1, -1)))) continue;
    const frag = document.createDocumentFragment();
    for (const part of parts) {
      const post = /^\[\d+\]$/.test(part) ? byN.get(part.slice(1, -1)) : null;
      if (!post) { if (part) frag.append(document.createTextNode(part)); continue; }
      const b = document.createElement("button");
      b.type = "button";
      b.className = "cite";
      b.textContent = part;
      b.title = "open the cited post";
      b.addEventListener("click", () => toggleCitedPost(bubble, post));
      frag.append(b);
    }
    node.replaceWith(frag);
  }
}

function toggleCitedPost(bubble, post) {
  const open = bubble.querySelector(".cite-post");
  const same = open && open.dataset.postId === String(post.post_id);
  if (open) open.remove();
  if (same) return;
  const box = document.createElement("blockquote");
  box.className = "cite-post";
  box.dataset.postId = String(post.post_id);
  const text = document.createElement("div");
  text.className = "cite-post-text";
  text.textContent = String(post.text ?? "");
  const meta = document.createElement("div");
  meta.className = "cite-post-meta";
  meta.textContent = `@${post.author_id ?? "?"} · ${String(post.created_at ?? "").slice(0, 16).replace("T", " ")}`;
  box.append(text, meta);
  const answer = bubble.querySelector(".answer");
  if (answer) answer.after(box); else bubble.append(box);
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  const conv = current();
  if (!conv || conv.messages.length === 0) {
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.innerHTML = "<strong>What's happening?</strong>Ask murmur anything.";
    box.append(empty);
  } else {
    for (const msg of conv.messages) box.append(messageElement(msg));
  }
  box.scrollTop = box.scrollHeight;
}

function renderAll() {
  const conv = current();
  $("chat-title").textContent = conv ? conv.title : "New chat";
  renderSidebar();
  renderMessages();
  updateButtons();
}

function updateButtons() {
  const busy = controller !== null;
  const conv = current();
  $("stop").hidden = !busy;
  $("send").disabled = busy;
  $("regenerate").hidden = busy || !conv || !conv.messages.some((m) => m.role === "assistant");
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// ------------------------------------------------------------------ server calls
function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function replyLimit() {
  return Math.max(1, Math.floor(contextLen / 2));
}

async function loadModel() {
  const label = $("model-name");
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    if (r.status === 401) {
      $("key-box").hidden = false;
      $("key-box").classList.add("needed");
      label.textContent = "API key needed";
      label.className = "model bad";
      return;
    }
    if (!r.ok) throw new Error(await errorText(r));
    const data = await r.json();
    model = data.data[0]?.id || null;
    contextLen = data.data[0]?.max_model_len || null;
    if (contextLen) {
      // A set reply length may take at most half the context, so the conversation keeps the other half
      // (a value stored by an older page, 256, would otherwise fill a small model's whole context);
      // an empty field lets the server fit each reply to the room left.
      $("max-tokens").max = String(replyLimit());
      if (Number($("max-tokens").value) > replyLimit()) $("max-tokens").value = String(replyLimit());
      readSettings();
    }
    label.textContent = model || "no model";
    label.className = "model ok";
    $("key-box").classList.remove("needed");
  } catch (e) {
    label.textContent = "server unreachable";
    label.className = "model bad";
    showError(String(e.message || e));
  }
}

// Read an SSE body, calling onEvent(json) for each "data:" event until [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function reply(conv) {
  const settings = readSettings();
  const history = conv.messages.filter((m) => m.content !== "" || m.role === "user")
    .map((m) => ({ role: m.role, content: m.content }));
  if (settings.system) history.unshift({ role: "system", content: settings.system });
  const msg = { role: "assistant", content: "" };
  conv.messages.push(msg);
  renderMessages();
  const el = $("messages").lastElementChild;
  el.classList.add("streaming");
  const bubble = el.querySelector(".bubble");
  controller = new AbortController();
  updateButtons();
  showError("");
  let pending = false;
  const paint = () => {
    pending = false;
    fillBubble(bubble, msg);
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  };
  try {
    let r, dropped = 0;
    for (;;) {
      const body = { messages: history, stream: true, temperature: settings.temperature };
      if (settings.maxTokens) body.max_tokens = settings.maxTokens;  // else: the room the context leaves
      if (model) body.model = model;
      r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                signal: controller.signal });
      if (r.status !== 400) break;
      // The conversation outgrew the model's context: leave out the oldest turn and ask again.
      const err = await r.clone().json().catch(() => null);
      const first = history.findIndex((m) => m.role !== "system");
      if (err?.error?.code !== "context_length_exceeded" || err.error.param !== "messages" ||
          first < 0 || first >= history.length - 1) break;
      history.splice(first, history[first + 1].role === "assistant" ? 2 : 1);
      dropped += 1;
    }
    if (!r.ok) throw new Error(await errorText(r));
    if (dropped) msg.note = "(earlier messages left out to fit the model's context)";
    await readEvents(r, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.murmur_tool) {
        noteTool(msg, chunk.murmur_tool);
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      }
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) return;
      if (choice.delta && choice.delta.content) {
        msg.content += choice.delta.content;
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      }
      if (choice.finish_reason === "length") msg.note = (msg.note ? msg.note + " " : "") + "(stopped at the token limit)";
    });
  } catch (e) {
    if (e.name === "AbortError") {
      msg.note = "(stopped)";
    } else {
      showError(String(e.message || e));
      if (!msg.content) conv.messages.pop();
    }
  } finally {
    controller = null;
    conv.updated = Date.now();
    save();
    el.classList.remove("streaming");
    paint();
    if (!conv.messages.includes(msg)) renderMessages();
    updateButtons();
  }
}

function readSettings() {
  const temperature = Number($("temperature").value);
  const raw = $("max-tokens").value.trim();
  let maxTokens = raw === "" ? null : Math.max(1, Math.floor(Number(raw) || 1));
  if (maxTokens && contextLen) maxTokens = Math.min(maxTokens, replyLimit());
  const system = $("system-prompt").value.trim();
  state.settings = { temperature, maxTokens, system, apiKey: $("api-key").value };
  save();
  return { temperature, maxTokens, system };
}

async function send(text) {
  if (controller) return;
  const conv = current() || newConversation();
  conv.messages.push({ role: "user", content: text });
  if (conv.title === "New chat") conv.title = text.slice(0, 48) + (text.length > 48 ? "…" : "");
  save();
  renderAll();
  await reply(conv);
}

async function regenerate() {
  const conv = current();
  if (!conv || controller) return;
  while (conv.messages.length && conv.messages[conv.messages.length - 1].role === "assistant") conv.messages.pop();
  if (!conv.messages.length) return;
  save();
  renderMessages();
  await reply(conv);
}

// ------------------------------------------------------------------ wiring
function init() {
  const s = state.settings;
  if (typeof s.temperature === "number") $("temperature").value = s.temperature;
  if (s.maxTokens) $("max-tokens").value = s.maxTokens;
  if (s.system) $("system-prompt").value = s.system;
  if (s.apiKey) { $("api-key").value = s.apiKey; $("key-box").hidden = false; }
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
    readSettings();
  });
  for (const id of ["max-tokens", "system-prompt"]) $(id).addEventListener("change", readSettings);
  $("api-key").addEventListener("change", () => { readSettings(); loadModel(); });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || controller) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("regenerate").addEventListener("click", regenerate);
  $("new-chat").addEventListener("click", () => {
    if (controller) controller.abort();
    const conv = current();
    if (!conv || conv.messages.length) newConversation();
    renderAll();
    $("prompt").focus();
  });
  renderAll();
  loadModel();
}

window.murmurChat = { renderMarkdown, escapeHtml };
init();
