"""How a post's text becomes index terms, for English and Spanish posts (and the query side).

One pass over the text finds tokens by shape:

- ``#hashtag`` -> the term ``#hashtag`` (folded), plus the words of a camel-case tag
  (``#MachineLearning`` -> ``machin``, ``learn``) so a query in plain words finds it;
- ``@handle`` -> the term ``@handle``; the ``@user`` placeholder that cleaning leaves is not a term;
- placeholders (``<url>``, ``<email>``, ``<phone>``, ``<card>``) and links are not terms;
- every other word: lower case, accents folded (``canción`` = ``cancion``: posts drop accents), then
  the Snowball stemmer of the post's language (English or Spanish; other languages are not stemmed).

A query's language is not known, so each query word is stemmed both ways and the alternatives are
one disjunction (:func:`query_terms`); English and Spanish function words (:data:`STOPWORDS`) are
dropped from a query that holds another word (posts keep them as terms). Highlights are found by analysing each word of a result's
text the same way and keeping those whose term the query asked for (:func:`highlight_spans`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

import Stemmer

STEMMED = {"en": "english", "es": "spanish"}
"""Languages with a stemmer (BCP-47 primary code -> Snowball name)."""

_PLACEHOLDERS = ("url", "email", "phone", "card")
_PLACEHOLDER_RE = r"<(?:" + "|".join(_PLACEHOLDERS) + r")>"
_TOKEN_RE = re.compile(
    _PLACEHOLDER_RE + r"|(?:https?://|www\.)\S+|(?<![\w#@])([#@])(\w+)|(\w+)", re.IGNORECASE)
_RUN_RE = re.compile(r"\w+")  # every run of word characters: a post's words are among them
# an ASCII text's bytes with every character made a space but # @ and those \w matches
_ASCII_TOKENS = bytes(i if i < 128 and (chr(i).isalnum() or chr(i) in "_#@") else 32 for i in range(256))
_CAMEL_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_MENTION_PLACEHOLDER = "user"

# Function words of the Snowball stop lists (folded), dropped from queries that hold another word:
# "la temporada de tierra batida" must not match every Spanish post through "la" and "de". Words
# that are content words in the other language ("son", "sin", "me") are left out.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having her here hers herself him himself his how i if in into is it its itself just more most my
myself nor not of off on once only or other our ours ourselves out over own same she should so some
such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves
al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante e el ella
ellas ellos en entre era eran es esa esas ese eso esos esta estaba estado estan estar estas este
esto estos fue fueron ha habia han hasta hay la las le les lo los mas mi mis mucho muchos muy nada
ni nos nosotros o os otra otras otro otros para pero poco por porque que quien se sea ser si sobre
su sus tambien tanto te tiene tienen todo todos tu tus un una unas uno unos y ya yo
""".split())


@functools.lru_cache(maxsize=4)
def _stemmer(lang: str) -> Stemmer.Stemmer | None:
    name = STEMMED.get(lang)
    return Stemmer.Stemmer(name) if name else None


@functools.lru_cache(maxsize=200_000)
def fold(word: str) -> str:
    """Lower case with accents removed (``Canción`` -> ``cancion``; ``ñ`` -> ``n``)."""
    word = word.lower()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _camel_parts(tag: str) -> list[str]:
    """The words of a camel-case tag, accents stripped first (``#FútbolSala`` -> ``Futbol``, ``Sala``)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", tag) if not unicodedata.combining(c))
    return _CAMEL_RE.findall(plain)


_TERMS: dict[str, dict[str, str]] = {}  # per language: word -> its term (a plain dict: read in C by map())
_TERMS_MAX = 400_000                     # words kept per language before its table starts again


def _terms(lang: str) -> dict[str, str]:
    """The term table of ``lang``; every language without a stemmer shares one (its terms are the folded
    words), so a post's language code, whatever it is, never adds a table."""
    key = lang if lang in STEMMED else ""
    table = _TERMS.get(key)
    if table is None or len(table) >= _TERMS_MAX:
        table = _TERMS[key] = {}
    return table


def _term(word: str, lang: str) -> str:
    folded = fold(word)
    stem = _stemmer(lang)
    return stem.stemWord(folded) if stem is not None else folded


def word_term(word: str, lang: str) -> str:
    """The term of a plain word in a post of language ``lang`` (kept per language once made)."""
    table = _TERMS.get(lang if lang in STEMMED else "")
    term = table.get(word) if table is not None else None
    if term is None:
        term = _terms(lang)[word] = _term(word, lang)
    return term


def _tokens(text: str) -> Iterable[tuple[int, int, str, str]]:
    """(start, end, kind, token) for each word, hashtag and mention; kind is 'w', '#' or '@'."""
    for m in _TOKEN_RE.finditer(text):
        if m.group(3) is not None:
            yield m.start(), m.end(), "w", m.group(3)
        elif m.group(1) is not None:
            if m.group(1) == "@" and m.group(2).lower() == _MENTION_PLACEHOLDER:
                continue
            yield m.start(), m.end(), m.group(1), m.group(2)


def doc_terms(text: str, lang: str | None, hashtags: Iterable[str] = (), mentions: Iterable[str] = ()) -> list[str]:
    """Every index term of a post, in order (a term repeats as often as it occurs).

    ``hashtags`` and ``mentions`` are the post's entity lists (the schema's columns): a mention's
    handle is kept there even though cleaning replaced it by ``@user`` in the text.
    """
    lang = (lang or "").split("-")[0].lower()
    terms: list[str] = []
    tags_in_text = set()
    for _, _, kind, tok in _tokens(text):
        if kind == "w":
            terms.append(word_term(tok, lang))
        elif kind == "#":
            tags_in_text.add(fold(tok))
            terms.extend(tag_terms(tok, lang))
        else:
            terms.append("@" + fold(tok))
    for tag in hashtags or ():
        if fold(tag) not in tags_in_text:
            terms.extend(tag_terms(tag, lang))
    terms.extend("@" + fold(m) for m in mentions or () if m)
    return terms


@functools.lru_cache(maxsize=100_000)
def tag_terms(tag: str, lang: str) -> tuple[str, ...]:
    """``#tag`` itself plus its words (``#MachineLearning`` -> ``machin``, ``learn``)."""
    tag = tag.lstrip("#")
    return ("#" + fold(tag), *(word_term(p, lang) for p in _camel_parts(tag)))


def query_terms(query: str) -> list[set[str]]:
    """The query as a list of alternatives: one set of terms per query word.

    A plain word becomes its English stem, its Spanish stem and its folded form (the language of a
    query is unknown); function words count only when the query has nothing else; a hashtag matches the hashtag term or its words; a mention the mention term.
    """
    groups: list[set[str]] = []
    stop: list[set[str]] = []
    for _, _, kind, tok in _tokens(query):
        if kind == "w":
            (stop if fold(tok) in STOPWORDS else groups).append({word_term(tok, "en"), word_term(tok, "es"),
                                                                  fold(tok)})
        elif kind == "#":
            parts = _camel_parts(tok)
            groups.append({"#" + fold(tok)} | ({word_term(tok, "en"), word_term(tok, "es"), fold(tok)}
                                               if len(parts) == 1 else set()))
            for p in parts if len(parts) > 1 else ():
                groups.append({word_term(p, "en"), word_term(p, "es"), fold(p)})
        else:
            groups.append({"@" + fold(tok)})
    return groups or stop


def query_kinds(query: str) -> dict[str, int]:
    """How many plain words, hashtags and mentions the query has (``{"w": .., "#": .., "@": ..}``)."""
    counts = {"w": 0, "#": 0, "@": 0}
    for _, _, kind, tok in _tokens(query):
        if kind != "w" or fold(tok) not in STOPWORDS:
            counts[kind] += 1
    return counts


def highlight_spans(text: str, lang: str | None, wanted: set[str]) -> list[list[int]]:
    """``[start, end]`` character spans of the words of ``text`` whose term is in ``wanted``.

    A page of results is analysed on every query, and most results of a dense query hold a query
    word, so no match object is made per word: the text's runs of word characters (its words are
    among them) are split off in C (an ASCII text: its bytes with every character but ``#``, ``@``
    and the word characters turned to a space; any other: one ``findall``), looked up in the
    language's term table, and only the runs whose term is wanted are found again, by ``str.find``
    with the token rules checked at each hit (a run after a ``#``/``@`` that starts a tag is the tag's
    name, not a word; ``<url>``-style placeholders are not words). Hashtags and mentions are read only
    in a text with a ``#`` or ``@``. A text with a link falls back to :data:`_TOKEN_RE` (a link's words
    are not words either)."""
    if not wanted:
        return []
    lang = (lang or "").split("-")[0].lower()
    table = _terms(lang)  # this one table holds every run's term below, whatever another thread starts
    if text.isascii():
        spaced = text.encode("ascii").translate(_ASCII_TOKENS).decode("ascii")  # word characters, # and @
        if "#" in spaced or "@" in spaced:
            # a # or @ starts a tag only at a token's start (after a character that is none of these)
            names = ((t[0], t[1:].replace("@", "#").split("#", 1)[0]) for t in spaced.split() if t[0] in "#@")
            entities = {(tag, name) for tag, name in names if name}
            runs = spaced.replace("#", " ").replace("@", " ").split()
        else:
            entities, runs = set(), spaced.split()
    else:
        runs = _RUN_RE.findall(text)
        entities = _entities(text) if "#" in text or "@" in text else set()
    try:
        hits = {run for run in runs if table[run] in wanted}
    except KeyError:
        for run in runs:
            if run not in table:
                table[run] = _term(run, lang)
        hits = {run for run in runs if table[run] in wanted}
    tags = [(tag, name) for tag, name in entities if (not wanted.isdisjoint(tag_terms(name, lang)) if tag == "#"
            else name.lower() != _MENTION_PLACEHOLDER and "@" + fold(name) in wanted)]
    if not hits and not tags:
        return []
    if "://" in text or "www." in text.lower():
        return _token_spans(text, lang, wanted, table)
    out = []
    n = len(text)
    for run in hits:
        at = text.find(run)
        while at >= 0:
            end = at + len(run)
            before, after = text[at - 1] if at else " ", text[end] if end < n else " "
            if not (before.isalnum() or before == "_" or after.isalnum() or after == "_") \
                    and not ((before == "#" or before == "@" or before == "<") and _in_tag_or_placeholder(text, at, end)):
                out.append([at, end])
            at = text.find(run, at + 1)
    for tag, name in tags:
        token = tag + name
        at = text.find(token)
        while at >= 0:
            end = at + len(token)
            if (at == 0 or not (_is_word(text[at - 1]) or text[at - 1] in "#@")) and (end == n or not _is_word(text[end])):
                out.append([at, end])
            at = text.find(token, at + 1)
    out.sort()
    return out


def _entities(text: str) -> set[tuple[str, str]]:
    """The ``(#/@, name)`` of each hashtag and mention as :data:`_TOKEN_RE` reads one (a ``#`` or ``@`` not
    after a word character, ``#`` or ``@``, then word characters), found from each ``#`` and ``@`` (a text
    has few; a regex would test its lookbehind at every character)."""
    out = set()
    for tag in ("#", "@"):
        at = text.find(tag)
        while at >= 0:
            if at == 0 or not (_is_word(text[at - 1]) or text[at - 1] in "#@"):
                m = _RUN_RE.match(text, at + 1)
                if m is not None:
                    out.add((tag, m.group()))
            at = text.find(tag, at + 1)
    return out


def _is_word(ch: str) -> bool:
    """Whether ``ch`` is a word character as ``\\w`` reads it."""
    return ch.isalnum() or ch == "_"


def _in_tag_or_placeholder(text: str, at: int, end: int) -> bool:
    """Whether the run ``text[at:end]`` (whole, word characters only) is a tag's or mention's name (after a
    ``#``/``@`` that starts one: one not after a word character, ``#`` or ``@``) or a placeholder's word."""
    before = text[at - 1] if at else ""
    if before in ("#", "@"):
        return at < 2 or not (_is_word(text[at - 2]) or text[at - 2] in "#@")
    return before == "<" and end < len(text) and text[end] == ">" and text[at:end].lower() in _PLACEHOLDERS


def _token_spans(text: str, lang: str, wanted: set[str], table: dict[str, str]) -> list[list[int]]:
    """:func:`highlight_spans` token by token with :data:`_TOKEN_RE` (a text with a link)."""
    out = []
    for m in _TOKEN_RE.finditer(text):
        tag, name, word = m.groups()
        if (table[word] in wanted) if word else (tag is not None and _hit(tag, name, None, lang, wanted)):
            out.append(list(m.span()))
    return out


def _hit(tag: str | None, name: str | None, word: str | None, lang: str, wanted: set[str]) -> bool:
    """Whether one token (the groups of :data:`_TOKEN_RE`: a word, or a ``#``/``@`` and its name) is wanted;
    links, placeholders and the ``@user`` placeholder never are."""
    if word:
        return word_term(word, lang) in wanted
    if not tag:
        return False
    if tag == "#":
        return any(t in wanted for t in tag_terms(name, lang))
    return name.lower() != _MENTION_PLACEHOLDER and "@" + fold(name) in wanted


def surface_terms(text: str, lang: str | None, hashtags: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(term, shown)`` for each word and hashtag of a post (no mentions, links or placeholders): the
    term as :func:`doc_terms` makes it (``#solareclipse``, ``eclips``) and how a person would read it
    (``#SolarEclipse`` as written, ``eclipse`` folded), for showing terms, as trends do."""
    lang = (lang or "").split("-")[0].lower()
    out: list[tuple[str, str]] = []
    seen_tags = set()
    for _, _, kind, tok in _tokens(text):
        if kind == "w":
            out.append((word_term(tok, lang), fold(tok)))
        elif kind == "#":
            seen_tags.add(fold(tok))
            out.append(("#" + fold(tok), "#" + tok))
    out.extend(("#" + fold(t.lstrip("#")), "#" + t.lstrip("#")) for t in hashtags or ()
               if t and fold(t.lstrip("#")) not in seen_tags)
    return out
