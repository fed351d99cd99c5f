"""Conversation data for chat fine-tuning: made from the project's own posts, read and checked from JSONL.

A conversation file is JSONL in the OpenAI shape, one conversation a line::

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "...", "tool_calls": [...]}, ...],
     "tools": [{"type": "function", "function": {...}}, ...]}

``tools`` (optional, as in OpenAI's fine-tuning files) are the tools the conversation offers; in
memory they are its first message, the tools turn exactly as the chat format renders it (a system
message whose ``content`` is :func:`murmur.chat.template.tools_text`, carrying the list under
``tools``), so training renders the conversation as a request with those tools is rendered.

:func:`build_conversations` makes such a file from cleaned posts without any outside data:

- **threads**: reply chains (``reply_to`` links) become multi-turn conversations. The root post is
  the user, replies alternate assistant / user down one path of the reply tree; a conversation
  ends on an assistant turn, so every chain of two or more posts gives at least one answer.
- **instructions**: question/answer pairs written from templates in English and Spanish, filled
  from the data: who murmur is, what it can do, writing a post about a topic seen in the data (the
  answer is a real post with that hashtag), summarising a thread (extractive: the answer is built
  from the thread's own posts), answering in the user's language, and drafting a reply (the answer
  is the reply someone actually wrote). The search-and-answer kind (a question -> a ``search_posts``
  call -> numbered results -> an answer citing them) comes in two shapes: offering the tool as a chat
  request does (the tool list, the question; ``tool_fraction`` of them), where the model learns to
  call it, and the answer route's (a system line asking for a cited answer, no tool list). The other
  instruction kinds offer the tool in ``tool_other_fraction`` of theirs and answer without calling it.
- **drafts** (``drafts = true``): the drafter's own request (murmur.chat.drafting: "Write a post about
  TOPIC in LANG [in the voice of @user, who recently posted: ...]" or "Reply to this post in LANG:
  ...") answered by a real post or reply that keeps the drafter's rules: at most 280 characters with
  links at 23, nothing the PII scrubber would change, no placeholders, in the post's language. A
  post's topic is one of its hashtags (as words or as the tag) or one of its own phrases that is
  topical: two or three content words that at least ``3`` posts use, at most 1% of all posts, and
  whose tagged posts mostly share one hashtag (at least 30% the same), so "marathon training plan"
  qualifies and "still thinking about" does not; the answer always contains its topic.

Every choice draws from a ``random.Random`` seeded by ``cfg.seed`` over posts sorted by
``post_id``, so the same posts give the same file whatever their order on disk.

:func:`read_conversations` reads a file back, checking every line: a bad line raises
``InputError`` naming the file, the line and the field (``messages[2].role``).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from murmur.chat.drafting import draft_messages
from murmur.chat.grounded import SEARCH_POSTS, search_answer_messages
from murmur.chat.template import TOOL_NAME, check_messages, tools_text
from murmur.config import knob, require_at_least
from murmur.data.normalize import MAX_POST_CHARS, scrub_pii, tweet_length
from murmur.errors import ConfigError, InputError
from murmur.io import atomic_open, check_not_input, open_parquet, open_text
from murmur.progress import Progress, log

Message = dict[str, str]
Conversation = list[Message]

LANGS = ("en", "es")
KINDS = ("identity", "capabilities", "write_post", "summarize", "language", "draft_reply", "search_answer", "drafts")
UNTOOLED = ("identity", "capabilities", "write_post", "summarize", "language", "draft_reply")  # answered directly
WEIGHTS = {"identity": 1, "capabilities": 1, "write_post": 3, "summarize": 2, "language": 2, "draft_reply": 3,
           "search_answer": 3, "drafts": 3}


@dataclass(frozen=True)
class ConversationDataConfig:
    """How to make conversations from clean posts (``murmur sft-data``)."""

    seed: int = knob(0, "Seed for every choice (paths through threads, templates, posts quoted).")
    threads: bool = knob(True, "Turn reply chains into multi-turn conversations.")
    max_thread_conversations: int = knob(0, "At most this many thread conversations (0 = all).")
    paths_per_thread: int = knob(2, "Distinct root-to-leaf paths taken from one reply tree.")
    max_turns: int = knob(8, "Messages per thread conversation at most (cut to end on an assistant turn).")
    instructions: int = knob(3000, "Instruction/answer conversations to write (English and Spanish).")
    system_fraction: float = knob(0.3, "Fraction of conversations that start with a system message.")
    min_chars: int = knob(12, "Posts shorter than this (after removing leading @mentions) are not used.")
    max_chars: int = knob(600, "Posts longer than this are not quoted in instruction answers.")
    shuffle: bool = knob(True, "Shuffle the output lines (seeded); false keeps threads first.")
    drafts: bool = knob(True, "Write drafting conversations: the drafter's request -> a real post or reply that "
                              "keeps its rules (one instruction kind among the others).")
    tool_fraction: float = knob(0.5, "Fraction of search-and-answer conversations that offer the search_posts "
                                     "tool as a chat request does (the model learns to call it); the rest are the "
                                     "answer route's prompt (a system line, the call already made).")
    tool_other_fraction: float = knob(0.2, "Fraction of the other instruction conversations (identity, writing, "
                                           "summaries, replies) that offer the tool too and answer without it, so "
                                           "that a tool on offer is not by itself a reason to call it.")

    def check(self) -> None:
        require_at_least(0, [(name, getattr(self, name))
                             for name in ("max_thread_conversations", "instructions", "min_chars")])
        require_at_least(1, [("paths_per_thread", self.paths_per_thread)])
        if self.max_turns < 2:
            raise ConfigError(f"max_turns must be at least 2 (a question and an answer), got {self.max_turns}")
        for name in ("system_fraction", "tool_fraction", "tool_other_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1] (got {getattr(self, name)})")


@dataclass
class ConversationStats:
    """What :func:`build_conversations` wrote."""

    path: Path
    posts: int = 0
    conversations: int = 0
    messages: int = 0
    assistant_messages: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_lang: dict[str, int] = field(default_factory=dict)
    threads: int = 0  # reply trees with at least two usable posts

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "posts": self.posts, "conversations": self.conversations,
                "messages": self.messages, "assistant_messages": self.assistant_messages,
                "by_kind": self.by_kind, "by_lang": self.by_lang, "threads": self.threads}

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.by_kind.items(), key=lambda kv: -kv[1]))
        langs = ", ".join(f"{k} {n:,}" for k, n in sorted(self.by_lang.items(), key=lambda kv: -kv[1]))
        return (f"{self.conversations:,} conversations ({self.messages:,} messages, {self.assistant_messages:,} "
                f"answers) from {self.posts:,} posts -> {self.path}\n  kinds: {kinds}\n  languages: {langs}")


# ---------------------------------------------------------------- reading and checking JSONL
def parse_conversation(obj: Any, path: str | Path | None = None, line: int | None = None) -> Conversation:
    """Check one decoded JSONL record and return its messages as ``{"role", "content"}`` dicts.

    The record must be an object with a ``messages`` list; each message needs a known role and text
    content (a string or OpenAI text parts), and at least one assistant message must have text.
    """
    if not isinstance(obj, Mapping):
        raise InputError(f"expected a JSON object with \"messages\", got {type(obj).__name__}", path, line)
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise InputError("missing or not a list", path, line, "messages")
    try:
        pairs = check_messages(messages)
    except InputError as e:
        raise InputError(_bare_message(e), path, line, e.field) from None
    if not any(role == "assistant" and (text or calls) for role, text, calls in pairs):
        raise InputError("no assistant message with text to learn from", path, line, "messages")
    conv = [{"role": role, "content": text, **({"tool_calls": m["tool_calls"]} if calls else {})}
            for (role, text, calls), m in zip(pairs, messages, strict=True)]
    tools = obj.get("tools")
    return conv if tools is None else [tools_turn(check_tools(tools, path, line)), *conv]


def check_tools(tools: Any, path: str | Path | None = None, line: int | None = None) -> list[dict[str, Any]]:
    """A record's ``tools``: a list of ``{"type": "function", "function": {"name", ...}}``."""
    if not isinstance(tools, list):
        raise InputError("must be a list of tools", path, line, "tools")
    for i, tool in enumerate(tools):
        f = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(f, Mapping) or not isinstance(f.get("name"), str) or not TOOL_NAME.match(f["name"]):
            raise InputError("a tool needs a function name of letters, digits, _ or -", path, line,
                             f"tools[{i}].function.name")
        if not isinstance(f.get("parameters", {}), Mapping | None):
            raise InputError("must be a JSON schema object", path, line, f"tools[{i}].function.parameters")
    return list(tools)


def tools_turn(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The first message of a conversation that offers ``tools``: the tools turn as the chat format
    renders it, carrying the list (written back as the record's ``tools``)."""
    return {"role": "system", "content": tools_text(tools), "tools": list(tools)}


def _bare_message(e: InputError) -> str:
    """An InputError's message without its "field 'x': " prefix (to re-raise it with a path and line)."""
    msg = str(e)
    prefix = f"field {e.field!r}: " if e.field is not None else ""
    return msg[len(prefix):] if prefix and msg.startswith(prefix) else msg


def iter_conversations(path: str | Path) -> Iterator[Conversation]:
    """Stream the conversations of a JSONL file (plain, .gz or .zst); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError("conversation file not found", path)
    with open_text(path) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 text ({e.reason})", path, lineno + 1) from None
            if not raw:
                break
            lineno += 1
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON: {e.msg} (column {e.colno})", path, lineno) from None
            except RecursionError:
                raise InputError("JSON nested too deeply to read", path, lineno) from None
            yield parse_conversation(obj, path, lineno)


def read_conversations(path: str | Path) -> list[Conversation]:
    """Every conversation of a JSONL file, checked; InputError if there are none."""
    convs = list(iter_conversations(path))
    if not convs:
        raise InputError("no conversations in the file", path)
    return convs


def write_conversations(path: str | Path, conversations: Sequence[Conversation]) -> Path:
    """Write conversations as OpenAI-shape JSONL, atomically."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        for conv in conversations:
            record = {"messages": conv[1:], "tools": conv[0]["tools"]} if conv and "tools" in conv[0] \
                else {"messages": conv}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------- posts
_LEADING_MENTIONS = re.compile(r"^(?:[@＠][\w.]+[\s,:]*)+")
_NOISY = re.compile(r"<url>|[!?]{3,}|(.)\1{4,}")


@dataclass
class _Post:
    id: str
    text: str  # without leading @mentions
    lang: str
    reply_to: str | None
    hashtags: tuple[str, ...]
    author: str | None = None


def _strip_mentions(text: str) -> str:
    return _LEADING_MENTIONS.sub("", text.strip()).strip()


def read_posts(parquet: str | Path, min_chars: int = 1) -> list[_Post]:
    """Posts with usable text from a clean Parquet file, sorted by post_id (order-independent)."""
    parquet = Path(parquet)
    if not parquet.is_file():
        raise InputError("posts file not found", parquet)
    pf = open_parquet(parquet)
    names = set(pf.schema_arrow.names)
    for col in ("post_id", "text"):
        if col not in names:
            raise InputError(f"missing column {col!r} (expected the clean posts schema)", parquet, field=col)
    columns = ["post_id", "text", *(c for c in ("lang", "reply_to", "hashtags", "author_id") if c in names)]
    posts = []
    for batch in pf.iter_batches(columns=columns, batch_size=65536):
        n = batch.num_rows
        cols = {c: batch.column(c).to_pylist() if c in columns else [None] * n
                for c in ("post_id", "text", "lang", "reply_to", "hashtags", "author_id")}
        for pid, text, lang, reply, tags, author in zip(*cols.values(), strict=True):
            text = _strip_mentions(text or "")
            if pid is None or len(text) < min_chars:
                continue
            posts.append(_Post(str(pid), text, lang or "und", reply or None, tuple(tags or ()),
                               None if author is None else str(author)))
    posts.sort(key=lambda p: p.id)
    return posts


# ---------------------------------------------------------------- threads
def reply_paths(posts: Sequence[_Post], paths_per_thread: int, rng: random.Random) -> list[list[_Post]]:
    """Root-to-leaf paths of at least two posts through each reply tree (``paths_per_thread`` per tree)."""
    by_id = {p.id: p for p in posts}
    children: dict[str, list[_Post]] = defaultdict(list)
    for p in posts:
        if p.reply_to is not None and p.reply_to in by_id and p.reply_to != p.id:
            children[p.reply_to].append(p)
    roots = [p for p in posts if p.id in children and (p.reply_to is None or p.reply_to not in by_id)]
    out = []
    for root in roots:
        leaves: list[list[_Post]] = []
        stack = [[root]]
        while stack:  # depth first, children in post_id order; a visited set guards against cycles
            path = stack.pop()
            kids = [c for c in children.get(path[-1].id, []) if c not in path]
            if not kids:
                if len(path) >= 2:
                    leaves.append(path)
                continue
            stack.extend(path + [k] for k in reversed(kids))
        chosen = leaves if len(leaves) <= paths_per_thread else rng.sample(leaves, paths_per_thread)
        out.extend(chosen)
    return out


def thread_conversation(path: Sequence[_Post], max_turns: int) -> Conversation:
    """Root = user, then assistant / user alternately; cut to end on an assistant turn."""
    n = min(len(path), max_turns)
    n -= n % 2
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": p.text} for i, p in enumerate(path[:n])]


# ---------------------------------------------------------------- instruction templates
SYSTEM_PROMPTS = {
    "en": ["You are murmur, a helpful assistant trained on this network's posts.",
           "You are murmur. Be brief and friendly.",
           "You are murmur, an assistant for people who post on this network. Answer clearly."],
    "es": ["Eres murmur, un asistente útil entrenado con las publicaciones de esta red.",
           "Eres murmur. Sé breve y amable.",
           "Eres murmur, un asistente para quienes publican en esta red. Responde con claridad."],
}
LANGUAGE_SYSTEM = {"en": "Answer in the language the user writes in.",
                   "es": "Responde en el idioma en que escribe el usuario."}

IDENTITY_Q = {
    "en": ["Who are you?", "What is your name?", "Tell me about yourself.", "Are you a person or a bot?",
           "Introduce yourself in one sentence.", "who r u", "Hey, what are you?", "What should I call you?"],
    "es": ["¿Quién eres?", "¿Cómo te llamas?", "Háblame de ti.", "¿Eres una persona o un bot?",
           "Preséntate en una frase.", "quien eres", "Oye, ¿qué eres?", "¿Cómo debo llamarte?"],
}
IDENTITY_A = {
    "en": ["I'm murmur, a language model trained on the public posts of this network.",
           "My name is murmur. I'm a language model that learned from the posts people share here.",
           "I'm murmur, an AI assistant built from this network's own posts, not a person.",
           "Call me murmur: a language model trained on posts from this network."],
    "es": ["Soy murmur, un modelo de lenguaje entrenado con las publicaciones públicas de esta red.",
           "Me llamo murmur. Soy un modelo de lenguaje que aprendió de lo que la gente publica aquí.",
           "Soy murmur, un asistente de IA creado a partir de las publicaciones de esta red, no una persona.",
           "Llámame murmur: un modelo de lenguaje entrenado con publicaciones de esta red."],
}
IDENTITY_TAIL = {
    "en": ["I can help you write posts and replies.", "Ask me to draft a post or summarise a thread.",
           "I answer in English or Spanish.", ""],
    "es": ["Puedo ayudarte a escribir publicaciones y respuestas.", "Pídeme un post o el resumen de un hilo.",
           "Respondo en español o en inglés.", ""],
}
CAPABILITY_Q = {
    "en": ["What can you do?", "How can you help me?", "What are you good at?", "What kind of things can I ask you?"],
    "es": ["¿Qué puedes hacer?", "¿Cómo me puedes ayudar?", "¿En qué eres bueno?", "¿Qué cosas te puedo pedir?"],
}
CAPABILITY_INTRO = {"en": ["I can:", "Here is what I can do:", "A few things I can help with:"],
                    "es": ["Puedo:", "Esto es lo que puedo hacer:", "Te puedo ayudar con:"]}
CAPABILITIES = {
    "en": ["write a post about a topic", "draft a reply to a post", "summarise a thread",
           "answer in English or Spanish", "tell you what people post about a hashtag",
           "suggest hashtags for a post"],
    "es": ["escribir una publicación sobre un tema", "redactar una respuesta a un post", "resumir un hilo",
           "responder en español o en inglés", "contarte qué publica la gente sobre un hashtag",
           "sugerir hashtags para un post"],
}
WRITE_POST_Q = {
    "en": ["Write a post about {topic}.", "Draft a short post about {topic} with the hashtag #{tag}.",
           "Can you write something about #{tag}?", "I need a post on {topic}. Keep it short.",
           "write me a post about {topic}", "Give me a post for #{tag}."],
    "es": ["Escribe una publicación sobre {topic}.", "Redacta un post corto sobre {topic} con el hashtag #{tag}.",
           "¿Puedes escribir algo sobre #{tag}?", "Necesito un post sobre {topic}. Que sea corto.",
           "escríbeme un post sobre {topic}", "Dame un post para #{tag}."],
}
SUMMARY_Q = {"en": ["Summarize this thread:", "What is this thread about?", "Give me a short summary of this thread:"],
             "es": ["Resume este hilo:", "¿De qué trata este hilo?", "Dame un resumen corto de este hilo:"]}
SUMMARY_A = {
    "en": ("The thread has {n} posts. It starts with: \"{first}\"", "Replies:", "The last post says: \"{last}\""),
    "es": ("El hilo tiene {n} publicaciones. Empieza con: \"{first}\"", "Respuestas:",
           "La última publicación dice: \"{last}\""),
}
LANGUAGE_Q = {
    "en": ["What are people saying about #{tag}?", "What do people post about {topic}?",
           "Show me what people think about #{tag}."],
    "es": ["¿Qué dice la gente sobre #{tag}?", "¿Qué publica la gente sobre {topic}?",
           "Enséñame qué opina la gente de #{tag}."],
}
LANGUAGE_A = {"en": ["Here are some posts about #{tag}:", "People are posting things like:",
                     "A few posts about {topic}:"],
              "es": ["Aquí tienes algunas publicaciones sobre #{tag}:", "La gente publica cosas como:",
                     "Algunas publicaciones sobre {topic}:"]}
REPLY_Q = {"en": ["Draft a reply to this post:", "How could I reply to this?", "Write a reply to this post:"],
           "es": ["Escribe una respuesta a esta publicación:", "¿Cómo podría responder a esto?",
                  "Redacta una respuesta a este post:"]}


SEARCH_Q = {"en": ["What are people saying about {topic}?", "What is new about {topic}?",
                    "Summarize the posts about {topic}.", "What do people think of #{tag}?"],
            "es": ["¿Qué dice la gente sobre {topic}?", "¿Qué se comenta sobre {topic}?",
                   "Resume los posts sobre {topic}.", "¿Qué opina la gente de #{tag}?"]}
SEARCH_A = {"en": ["People are posting about {topic}.", "Here is what people say about {topic}.",
                   "Posts about {topic}:"],
            "es": ["La gente publica sobre {topic}.", "Esto es lo que se dice sobre {topic}.",
                   "Posts sobre {topic}:"]}


_PLACEHOLDER = re.compile(r"<(?:url|email|phone|card|user)>", re.IGNORECASE)
_PHRASE_TOKEN = re.compile(r"[#@][\w'’-]*|<\w+>|https?://\S+|([^\W\d_]+(?:['’-][^\W\d_]+)*)(?![\w'’-])|[^\s]")


def keeps_draft_rules(text: str) -> bool:
    """What the drafter asks of a draft, short of language and novelty: at most 280 characters with
    links at 23, nothing the PII scrubber would change, no placeholder the cleaner left."""
    return (tweet_length(text) <= MAX_POST_CHARS and not _PLACEHOLDER.search(text) and not _NOISY.search(text)
            and scrub_pii(text)[0] == text)


def draft_langs(texts: Sequence[str]) -> list[str]:
    """The language the drafter's check gives each text (the cleaner's identifier, in one batch)."""
    if not texts:
        return []
    from murmur.data.langid import LanguageIdentifier, langid_text

    return [lang for lang, _ in LanguageIdentifier().identify([langid_text(t) for t in texts])]


def _word_runs(text: str) -> list[list[str]]:
    """Runs of plain words (lowercased), broken at punctuation, tags, mentions, links and numbers."""
    runs, run = [], []
    for m in _PHRASE_TOKEN.finditer(text.lower()):
        w = m.group(1)
        if w:
            run.append(w)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs


def topical_phrases(posts: Sequence[_Post], max_share: float = 0.01, min_posts: int = 3,
                    min_focus: float = 0.3) -> dict[str, list[str]]:
    """Each post's topical phrases, most used first (see the module doc, **drafts**): n-grams of two or
    three words that neither start nor end with a word in more than ``max_share`` of posts, used by
    ``min_posts`` to ``max_share`` of the posts, whose tagged posts share one hashtag ``min_focus`` of
    the time."""
    runs = [_word_runs(p.text) for p in posts]
    cap = max(min_posts, max_share * len(posts))
    word_df: Counter[str] = Counter()
    for rs in runs:
        word_df.update({w for r in rs for w in r})
    common = {w for w, n in word_df.items() if n > cap}
    grams = []
    for rs in runs:
        g = {" ".join(r[i:i + n]) for r in rs for n in (2, 3) for i in range(len(r) - n + 1)
             if r[i] not in common and r[i + n - 1] not in common}
        grams.append(g)
    df: Counter[str] = Counter()
    for g in grams:
        df.update(g)
    tags: dict[str, Counter[str]] = defaultdict(Counter)
    tagged: Counter[str] = Counter()
    for p, g in zip(posts, grams, strict=True):
        ht = {t.lower() for t in p.hashtags}
        if ht:
            for phrase in g:
                if min_posts <= df[phrase] <= cap:
                    tags[phrase].update(ht)
                    tagged[phrase] += 1
    topical = {ph for ph, c in tags.items() if tagged[ph] >= min_posts and c.most_common(1)[0][1] >= min_focus * tagged[ph]}
    out = {}
    for p, g in zip(posts, grams, strict=True):
        mine = [ph for ph in g if ph in topical]
        # a phrase inside a longer one of the post that is nearly as used says less ("free flour")
        mine = [ph for ph in mine if not any(ph != o and ph in o and 2 * df[o] >= df[ph] for o in mine)]
        if mine:
            out[p.id] = sorted(mine, key=lambda ph: (-df[ph], ph))
    return out


def topic_name(tag: str) -> str:
    """A hashtag as words: ``WeddingPlanning`` -> ``wedding planning``."""
    words = re.sub(r"(?<=[a-záéíóúñ0-9])(?=[A-ZÁÉÍÓÚÑ])", " ", tag.lstrip("#"))
    return words.replace("_", " ").lower()


def _first_sentence(text: str, limit: int = 160) -> str:
    m = re.match(r"(.+?[.!?¡¿])(\s|$)", text)
    s = m.group(1) if m else text
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


class InstructionMaker:
    """Fills the instruction templates from posts; one ``random.Random`` makes every choice."""

    def __init__(self, posts: Sequence[_Post], paths: Sequence[list[_Post]], cfg: ConversationDataConfig,
                 rng: random.Random):
        self.cfg, self.rng = cfg, rng
        good = [p for p in posts if p.lang in LANGS and len(p.text) <= cfg.max_chars and not _NOISY.search(p.text)]
        self.by_tag: dict[str, dict[str, list[_Post]]] = {lang: defaultdict(list) for lang in LANGS}
        for p in good:
            for t in dict.fromkeys(p.hashtags):
                if f"#{t}".lower() in p.text.lower():
                    self.by_tag[p.lang][t].append(p)
        # tags seen at least twice, most common first (ties by name), so answers rest on real usage
        self.tags = {lang: sorted((t for t, ps in self.by_tag[lang].items() if len(ps) >= 2),
                                  key=lambda t: (-len(self.by_tag[lang][t]), t)) for lang in LANGS}
        by_id = {p.id: p for p in posts}
        self.pairs = {lang: [(by_id[p.reply_to], p) for p in good if p.reply_to in by_id
                             and by_id[p.reply_to].lang == p.lang == lang] for lang in LANGS}
        self.threads = {lang: [path for path in paths if path[0].lang == lang and len(path) >= 3] for lang in LANGS}
        # drafts: posts that keep the drafter's rules, their topics, their authors' other posts
        fit = [p for p in good if keeps_draft_rules(p.text)] if cfg.drafts else []
        self.phrases = topical_phrases(posts) if cfg.drafts else {}
        fit_ids = {p.id for p in fit}
        posts_ = [p for p in fit if p.reply_to is None and self._topics(p)]
        pairs_ = [(a, b) for lang in LANGS for a, b in self.pairs[lang] if b.id in fit_ids] if cfg.drafts else []
        targets = list({p.id: p for p in [*posts_, *(b for _, b in pairs_)]}.values())
        ok = {p.id for p, lang in zip(targets, draft_langs([p.text for p in targets]), strict=True) if lang == p.lang}
        self.draft_posts = {lang: [p for p in posts_ if p.lang == lang and p.id in ok] for lang in LANGS}
        self.draft_pairs = {lang: [(a, b) for a, b in pairs_ if b.lang == lang and b.id in ok] for lang in LANGS}
        self.by_author: dict[str, list[_Post]] = defaultdict(list)
        for p in fit:
            if p.author is not None:
                self.by_author[p.author].append(p)

    def langs_for(self, kind: str) -> list[str]:
        """Languages in which ``kind`` can be filled from the data."""
        if kind in ("identity", "capabilities"):
            return list(LANGS)
        if kind in ("write_post", "language", "search_answer"):
            return [lang for lang in LANGS if self.tags[lang]]
        if kind == "draft_reply":
            return [lang for lang in LANGS if self.pairs[lang]]
        if kind == "drafts":
            return [lang for lang in LANGS if self.cfg.drafts and (self.draft_posts[lang] or self.draft_pairs[lang])]
        return [lang for lang in LANGS if self.threads[lang]]

    def make(self, kind: str, lang: str) -> Conversation:
        return getattr(self, kind)(lang)

    def _pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def _tag(self, lang: str) -> str:
        tags = self.tags[lang]
        return tags[min(int(self.rng.paretovariate(1.2)) - 1, len(tags) - 1)] if self.rng.random() < 0.5 \
            else self._pick(tags)

    def identity(self, lang: str) -> Conversation:
        answer = " ".join(s for s in (self._pick(IDENTITY_A[lang]), self._pick(IDENTITY_TAIL[lang])) if s)
        return [{"role": "user", "content": self._pick(IDENTITY_Q[lang])}, {"role": "assistant", "content": answer}]

    def capabilities(self, lang: str) -> Conversation:
        items = self.rng.sample(CAPABILITIES[lang], self.rng.randint(3, len(CAPABILITIES[lang])))
        answer = self._pick(CAPABILITY_INTRO[lang]) + "\n" + "\n".join(f"- {x}" for x in items)
        return [{"role": "user", "content": self._pick(CAPABILITY_Q[lang])}, {"role": "assistant", "content": answer}]

    def write_post(self, lang: str) -> Conversation:
        tag = self._tag(lang)
        post = self._pick(self.by_tag[lang][tag])
        q = self._pick(WRITE_POST_Q[lang]).format(topic=topic_name(tag), tag=tag)
        return [{"role": "user", "content": q}, {"role": "assistant", "content": post.text}]

    def summarize(self, lang: str) -> Conversation:
        path = self._pick(self.threads[lang])[:6]
        thread = "\n".join(f"{i + 1}. {p.text}" for i, p in enumerate(path))
        head, replies, tail = SUMMARY_A[lang]
        lines = [head.format(n=len(path), first=_first_sentence(path[0].text)), replies]
        lines += [f"- {_first_sentence(p.text)}" for p in path[1:-1]]
        lines.append(tail.format(last=_first_sentence(path[-1].text)))
        if len(path) == 2:
            lines = [lines[0], lines[-1]]
        q = self._pick(SUMMARY_Q[lang]) + "\n\n" + thread
        return [{"role": "user", "content": q}, {"role": "assistant", "content": "\n".join(lines)}]

    def language(self, lang: str) -> Conversation:
        tag = self._tag(lang)
        posts = self.by_tag[lang][tag]
        quoted = self.rng.sample(posts, min(len(posts), self.rng.randint(1, 3)))
        q = self._pick(LANGUAGE_Q[lang]).format(tag=tag, topic=topic_name(tag))
        answer = self._pick(LANGUAGE_A[lang]).format(tag=tag, topic=topic_name(tag)) + "\n" + \
            "\n".join(f"- {p.text}" for p in quoted)
        conv = [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
        if self.rng.random() < 0.5:  # the system message is in the other language; the answer follows the user
            other = LANGS[1 - LANGS.index(lang)]
            conv.insert(0, {"role": "system", "content": LANGUAGE_SYSTEM[other]})
        return conv

    def search_answer(self, lang: str) -> Conversation:
        """A question about a topic -> a ``search_posts`` call -> numbered results (the topic's posts,
        sometimes with an off-topic one) -> an answer quoting the on-topic posts, each cited as [n].
        ``tool_fraction`` of them offer the tool (the tools turn, no system line)."""
        tag = self._tag(lang)
        posts = self.by_tag[lang][tag]
        on = self.rng.sample(posts, min(len(posts), self.rng.randint(2, 4)))
        results = list(on)
        others = [t for t in self.tags[lang] if t != tag]
        if others and self.rng.random() < 0.5:
            off = [p for p in self.by_tag[lang][self._pick(others)] if tag not in p.hashtags]
            if off:
                results.insert(self.rng.randrange(len(results) + 1), self._pick(off))
        topic = topic_name(tag)
        q = self._pick(SEARCH_Q[lang]).format(topic=topic, tag=tag)
        cites = " ".join(f"{_first_sentence(p.text)} [{i}]" for i, p in enumerate(results, 1) if p in on)
        answer = self._pick(SEARCH_A[lang]).format(topic=topic) + " " + cites
        offer = self.rng.random() < self.cfg.tool_fraction
        conv = [*search_answer_messages(q, topic, [p.text for p in results], lang, system=not offer),
                {"role": "assistant", "content": answer}]
        return [tools_turn([SEARCH_POSTS]), *conv] if offer else conv

    def _topics(self, p: _Post) -> list[str]:
        """What ``p`` can be asked for as: its topical phrases (the two most used), its hashtags in words."""
        tags = [t for t in dict.fromkeys(p.hashtags) if f"#{t}".lower() in p.text.lower()]
        return [*self.phrases.get(p.id, [])[:2], *(topic_name(t) for t in tags[:2])]

    def _voice(self, p: _Post) -> list[str]:
        """Up to three other posts by ``p``'s author (its language first), or none."""
        mine = [q for q in self.by_author.get(p.author or "", []) if q.id != p.id]
        if len(mine) < 2:
            return []
        mine.sort(key=lambda q: q.lang != p.lang)  # stable: post_id order within each group
        return [q.text for q in mine[:3]]

    def drafts(self, lang: str) -> Conversation:
        """The drafter's request -> a real post (about one of its topics, sometimes in its author's voice)
        or a real reply (to its parent), each keeping the drafter's rules."""
        posts, pairs = self.draft_posts[lang], self.draft_pairs[lang]
        if pairs and (not posts or self.rng.random() < 0.3):
            parent, reply = self._pick(pairs)
            topics = self._topics(reply)
            topic = self._pick(topics) if topics and self.rng.random() < 0.3 else None
            voice = self._voice(reply) if self.rng.random() < 0.3 else []
            msgs = draft_messages("reply", lang, topic, parent=parent.text, voice=reply.author if voice else None,
                                  voice_posts=voice)
            return [*msgs, {"role": "assistant", "content": reply.text}]
        post = self._pick(posts)
        topics = self._topics(post)
        topic = self._pick(topics)
        if topic not in post.text.lower() and self.rng.random() < 0.5:
            topic = "#" + next(t for t in post.hashtags if topic_name(t) == topic)  # the tag as written
        voice = self._voice(post) if self.rng.random() < 0.4 else []
        msgs = draft_messages("post", lang, topic, voice=post.author if voice else None, voice_posts=voice)
        return [*msgs, {"role": "assistant", "content": post.text}]

    def draft_reply(self, lang: str) -> Conversation:
        parent, reply = self._pick(self.pairs[lang])
        q = self._pick(REPLY_Q[lang]) + "\n\n" + parent.text
        return [{"role": "user", "content": q}, {"role": "assistant", "content": reply.text}]


# ---------------------------------------------------------------- the builder
def build_conversations(clean_parquet: str | Path, out_jsonl: str | Path,
                        cfg: ConversationDataConfig | None = None) -> ConversationStats:
    """Make a conversation JSONL file from clean posts (see the module doc); returns what was written."""
    cfg = cfg or ConversationDataConfig()
    cfg.check()
    check_not_input(clean_parquet, out_jsonl)
    rng = random.Random(cfg.seed)
    posts = read_posts(clean_parquet, cfg.min_chars)
    if not posts:
        raise InputError("no posts with text to make conversations from", clean_parquet)
    stats = ConversationStats(Path(out_jsonl), posts=len(posts))
    out: list[tuple[str, str, Conversation]] = []  # (kind, lang, conversation)
    seen: set[str] = set()

    def add(kind: str, lang: str, conv: Conversation) -> bool:
        if kind in UNTOOLED and rng.random() < cfg.tool_other_fraction:
            conv = [tools_turn([SEARCH_POSTS]), *conv]
        lead = 1 if conv and "tools" in conv[0] else 0   # a system prompt follows the tools turn
        if rng.random() < cfg.system_fraction and conv[lead]["role"] != "system":
            sys_lang = lang if lang in SYSTEM_PROMPTS else "en"
            conv = [*conv[:lead], {"role": "system", "content": rng.choice(SYSTEM_PROMPTS[sys_lang])}, *conv[lead:]]
        key = json.dumps(conv[lead:], ensure_ascii=False, sort_keys=True)   # with or without the tool: one
        if key in seen:
            return False
        seen.add(key)
        out.append((kind, lang, conv))
        return True

    paths = reply_paths(posts, cfg.paths_per_thread, rng)
    stats.threads = len({p[0].id for p in paths})
    if cfg.threads:
        chosen = paths
        if cfg.max_thread_conversations and len(paths) > cfg.max_thread_conversations:
            chosen = rng.sample(paths, cfg.max_thread_conversations)
        for path in chosen:
            add("thread", path[0].lang, thread_conversation(path, cfg.max_turns))

    maker = InstructionMaker(posts, paths, cfg, rng)
    kinds = [k for k in KINDS if maker.langs_for(k)]
    weights = WEIGHTS
    missing = sorted(set(KINDS) - set(kinds) - ({"drafts"} if not cfg.drafts else set()))
    if missing and cfg.instructions:
        log(f"sft-data: the posts have too little to fill {', '.join(missing)} (no hashtags, replies or threads)")
    made, tries = 0, 0
    with Progress("sft-data: instructions", total=cfg.instructions, unit="conversations") as prog:
        while made < cfg.instructions and tries < cfg.instructions * 20:
            tries += 1
            kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
            lang = rng.choice(maker.langs_for(kind))
            if add(kind, lang, maker.make(kind, lang)):
                made += 1
                prog.advance()
    if made < cfg.instructions:
        log(f"sft-data: only {made:,} distinct instruction conversations of {cfg.instructions:,} asked for")
    if not out:
        raise InputError("no conversations could be made (no reply chains and instructions=0)", clean_parquet)
    if cfg.shuffle:
        rng.shuffle(out)
    write_conversations(out_jsonl, [conv for _, _, conv in out])
    stats.conversations = len(out)
    stats.messages = sum(len(c) for _, _, c in out)
    stats.assistant_messages = sum(m["role"] == "assistant" for _, _, c in out for m in c)
    stats.by_kind = dict(Counter(k for k, _, _ in out))
    stats.by_lang = dict(Counter(lang for _, lang, _ in out))
    return stats
