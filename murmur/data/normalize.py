"""Text normalisation, URL and mention handling, and PII scrubbing: small pure functions on one post.

What ``murmur data clean`` does to the text of every post, in this order:

1. ``normalize_text``: HTML entities that X escapes (``&amp;``, ``&lt;``, ``&gt;``...) unescaped,
   Unicode NFC, control and invisible format characters removed (zero-width space, BOM, bidi
   overrides, lone surrogates; the zero-width joiner and variation selectors stay because emoji
   sequences need them), every run of spaces and tabs folded to one space, line breaks kept
   (``\\r\\n`` and Unicode line separators become ``\\n``, at most one blank line in a row, no
   spaces around a line break) and the ends stripped. Line breaks are kept because they carry the
   structure of a post (lists, verse, sign-offs) that a model drafting posts should learn;
   ``keep_newlines=False`` folds them to spaces too.
2. URLs (``http(s)://...`` and ``www....``) become ``<url>``, are removed, or stay.
3. PII: e-mail addresses -> ``<email>``, card-like numbers (13 to 19 digits, spaces or dashes
   allowed, Luhn checksum valid) -> ``<card>``, phone numbers -> ``<phone>``. URLs are protected
   while this runs, so digits inside a link are never touched.
4. ``@mentions`` become ``@user``, are removed, or stay. A run of several placeholders of one kind
   in a row (the ``@a @b @c`` that opens a reply) collapses to one.

The placeholders are plain text that reads naturally (``<url>``, ``@user``, ``<email>``,
``<phone>``, ``<card>``): a model trained on them learns "a link goes here" without memorising
t.co hashes, handles or phone numbers, and a tokenizer can keep each as one token.

Phone numbers are found by shape and then checked, to avoid false positives on years (``2024``,
``2019 2020 2021``), scores (``2-1``), times (``10:30``), dates (``2024-03-15``), prices (``$1,299``,
``1.299.000``), hashtags (``#web3``) and round numbers (``100 000 000``). A candidate is a run
of digit groups joined by single spaces, dots or dashes, with an optional ``+country`` prefix or
``(area)`` code. It is a phone number when it has 8-15 digits after ``+`` or ``00``; otherwise
9-11 digits in groups of two or more digits (the first group may be shorter), or 9-11 digits
in a single unbroken run; and it is not a list of years or thousands grouped by dots/commas or
ending in ``000``.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from typing import Literal

import numpy as np

from murmur.data.jit import jit

URL_PLACEHOLDER = "<url>"
MENTION_PLACEHOLDER = "@user"
EMAIL_PLACEHOLDER = "<email>"
PHONE_PLACEHOLDER = "<phone>"
CARD_PLACEHOLDER = "<card>"
PLACEHOLDERS = (URL_PLACEHOLDER, MENTION_PLACEHOLDER, EMAIL_PLACEHOLDER, PHONE_PLACEHOLDER, CARD_PLACEHOLDER)

Mode = Literal["keep", "placeholder", "remove"]

# ---------------------------------------------------------------- normalisation

# C0/C1 controls except \t \n \r (handled as whitespace), invisible format characters, lone surrogates.
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")
_NEWLINE_RE = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_HSPACE_RE = re.compile(r"[^\S\n]+")
_SPACED_NL_RE = re.compile(r" ?\n ?")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_ANY_SPACE_RE = re.compile(r"\s+")


def normalize_text(text: str, keep_newlines: bool = True, unescape_html: bool = True) -> str:
    """NFC, HTML entities unescaped, control/invisible characters removed, whitespace folded."""
    if unescape_html and "&" in text:
        text = html.unescape(text)
    if not text.isprintable():  # controls, tabs, line breaks, unusual spaces or format characters
        text = _CONTROL_RE.sub("", text)
        if keep_newlines:
            text = _HSPACE_RE.sub(" ", _NEWLINE_RE.sub("\n", text))
            if "\n" in text:
                text = _BLANK_LINES_RE.sub("\n\n", _SPACED_NL_RE.sub("\n", text))
        else:
            text = _ANY_SPACE_RE.sub(" ", text)
    elif "  " in text:
        text = _HSPACE_RE.sub(" ", text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.strip()


_RETWEET_RE = re.compile(r"RT\s*@\w+", re.IGNORECASE)


def is_retweet(text: str) -> bool:
    """True for a classic retweet: the text starts with ``RT @user``."""
    return _RETWEET_RE.match(text) is not None


# ---------------------------------------------------------------- URLs and mentions

URL_RE = re.compile(r"(?:[Hh][Tt][Tt][Pp][Ss\u017f]?://|[Ww][Ww][Ww]\.)[^\s<>\"]+")
"""A link: ``(?i)(?:https?://|www\\.)`` and what follows up to a space, ``<``, ``>`` or ``"``; the
case-insensitive letters spelled out (``s`` also matches the long s, as under ``re.IGNORECASE``), which
lets ``re`` skip to the next candidate fast."""
_URL_TRAIL = ".,;:!?)]}'\u2026"
MENTION_RE = re.compile(r"@(?<![\w@&+-].)\w+")
"""``(?<![\\w@&+-])@\\w+``, with the ``@`` first so that ``re`` finds candidates by that one character."""


def _url_spans(text: str) -> list[tuple[int, int]]:
    """Spans of URLs, trailing punctuation excluded (``see https://x.co/a.`` keeps its full stop)."""
    spans = []
    for m in URL_RE.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1] in _URL_TRAIL:
            if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
                break  # a balanced parenthesis belongs to the URL (wikipedia links)
            end -= 1
        spans.append((start, end))
    return spans


def replace_mentions(text: str, mode: Mode) -> tuple[str, int]:
    """Replace ``@handle`` by ``@user`` (or remove it); returns the new text and how many were replaced."""
    if "@" not in text or mode == "keep":
        return text, 0
    return MENTION_RE.subn(MENTION_PLACEHOLDER if mode == "placeholder" else "", text)


# ---------------------------------------------------------------- PII

EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")

# Not preceded by a word character, hashtag, currency, mention, path, decimal point, thousands
# separator, colon (times), plus or dash (ranges); not followed by more of a word or a decimal.
_NUM_BEFORE = r"(?<![\w#$€£¥@/.,:+\-])"
_NUM_AFTER = r"(?![\w%°$€£¥]|[.,:/]\d)"
CARD_RE = re.compile(_NUM_BEFORE + r"\d(?:[ -]?\d){12,18}" + _NUM_AFTER)
PHONE_RE = re.compile(
    _NUM_BEFORE
    + r"(?:\+ ?\d{1,3}[ .-]?)?"      # +country code
    + r"(?:\(\d{1,4}\)[ .-]?)?"      # (area) code
    + r"\d+(?:[ .-]\d+)*"            # digit groups joined by single separators
    + _NUM_AFTER)
_DIGIT_RE = re.compile(r"\d")
_GROUP_RE = re.compile(r"\d+")
_MAYBE_NUMBER_RE = re.compile(r"\d[\d ().+-]{6,}\d")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(candidate: str) -> bool:
    """13-19 digits (spaces/dashes allowed) passing the Luhn check."""
    digits = "".join(_GROUP_RE.findall(candidate))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def is_phone_number(candidate: str) -> bool:
    """Whether a digit run found by ``PHONE_RE`` is shaped like a phone number (see module doc)."""
    groups = _GROUP_RE.findall(candidate)
    digits = sum(len(g) for g in groups)
    stripped = candidate.lstrip()
    if stripped.startswith("+") or stripped.startswith("00"):
        return 8 <= digits <= 15
    if not 9 <= digits <= 11:
        return False
    if len(groups) == 1:
        return True
    if "(" not in candidate and any(len(g) < 2 for g in groups[1:]):
        return False  # "9 10 11 12 13", "1 2 3 4 5 6 7 8 9"
    if all(len(g) == 4 and g[:2] in ("19", "20") for g in groups):
        return False  # "2019 2020 2021"
    if all(len(g) == 3 for g in groups[1:]) and len(groups[0]) <= 3:
        seps = set(re.sub(r"\d", "", candidate))
        if seps & {".", ","} or groups[-1] == "000":
            return False  # thousands: "1.234.567.890", "100 000 000"
    return True


def _sub_checked(pattern: re.Pattern[str], check, placeholder: str, text: str) -> tuple[str, int]:
    count = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal count
        if check(m.group()):
            count += 1
            return placeholder
        return m.group()

    return pattern.sub(repl, text), count


def scrub_emails(text: str) -> tuple[str, int]:
    """E-mail addresses -> ``<email>``; returns the text and the number replaced."""
    if "@" not in text:
        return text, 0
    return EMAIL_RE.subn(EMAIL_PLACEHOLDER, text)


def scrub_cards(text: str) -> tuple[str, int]:
    """Luhn-valid 13-19 digit numbers -> ``<card>``."""
    return _sub_checked(CARD_RE, is_card_number, CARD_PLACEHOLDER, text)


def scrub_phones(text: str) -> tuple[str, int]:
    """Phone numbers (international and local formats) -> ``<phone>``."""
    return _sub_checked(PHONE_RE, is_phone_number, PHONE_PLACEHOLDER, text)


PII_EMAIL, PII_PHONE, PII_CARD = 1, 2, 4


def scrub_pii(text: str, *, emails: bool = True, numbers: bool = True) -> tuple[str, int]:
    """Scrub e-mails, card numbers and phone numbers; returns the text and a bit mask of what was found.

    ``emails=False``: the text holds no e-mail address; ``numbers=False``: nothing shaped like a long
    number (no card or phone to look for).
    """
    found = 0
    if emails and "@" in text:
        text, n = scrub_emails(text)
        found |= PII_EMAIL if n else 0
    if numbers and _MAYBE_NUMBER_RE.search(text):
        text, n = scrub_cards(text)
        found |= PII_CARD if n else 0
        text, n = scrub_phones(text)
        found |= PII_PHONE if n else 0
    return text, found


# ---------------------------------------------------------------- one post

_RUNS = {p: re.compile(f"{re.escape(p)}(?:\\s+{re.escape(p)})+") for p in (URL_PLACEHOLDER, MENTION_PLACEHOLDER)}


def _collapse(text: str, placeholder: str) -> str:
    return _RUNS[placeholder].sub(placeholder, text)


def _tidy(text: str) -> str:
    """Fold the spaces that removals leave behind, keeping line breaks."""
    if "  " not in text and text.isprintable():  # no space but single " " (printable: no \n, \t...)
        return text.strip()
    text = _HSPACE_RE.sub(" ", text)
    if "\n" in text:
        text = _BLANK_LINES_RE.sub("\n\n", _SPACED_NL_RE.sub("\n", text))
    return text.strip()


def clean_text(text: str, url_mode: Mode = "placeholder", mention_mode: Mode = "placeholder",
               scrub: bool = True, *, emails: bool = True, numbers: bool = True) -> tuple[str, int]:
    """URLs, PII and mentions of an already normalised post; returns the text and the PII bit mask.

    URLs are cut out first so that nothing inside a link is scrubbed or taken for a mention.
    ``emails=False`` and ``numbers=False`` say that the text holds no e-mail address and nothing shaped
    like a long number (``_MAYBE_NUMBER_RE``): ``scrub_pii``'s searches for them are skipped.
    """
    if ("http" in text or "www." in text or "HTTP" in text or "WWW." in text) and (spans := _url_spans(text)):
        pieces, urls, last = [], [], 0
        for start, end in spans:
            pieces.append(text[last:start])
            urls.append(text[start:end])
            last = end
        pieces.append(text[last:])
    else:
        pieces, urls = [text], []
    found = mentions = 0
    out = []
    for i, piece in enumerate(pieces):
        if scrub:
            piece, f = scrub_pii(piece, emails=emails, numbers=numbers)
            found |= f
        piece, n = replace_mentions(piece, mention_mode)
        mentions += n
        out.append(piece)
        if i < len(urls):
            out.append(urls[i] if url_mode == "keep" else (URL_PLACEHOLDER if url_mode == "placeholder" else ""))
    text = "".join(out)
    changed = (url_mode != "keep" and urls) or (mention_mode != "keep" and mentions) or found
    if changed:
        if url_mode == "placeholder" and len(urls) > 1:
            text = _collapse(text, URL_PLACEHOLDER)
        if mention_mode == "placeholder" and text.count(MENTION_PLACEHOLDER) > 1:
            text = _collapse(text, MENTION_PLACEHOLDER)
        text = _tidy(text)
    return text, found


def clean_texts(texts: list[str], url_mode: Mode = "placeholder", mention_mode: Mode = "placeholder",
                scrub: bool = True) -> list[tuple[str, int]]:
    """``clean_text`` of many posts: one RE2 search over the batch finds the posts it would leave alone.

    A post with no ``@``, none of the strings ``clean_text`` looks for a link by, and nothing shaped
    like a long number (``_MAYBE_NUMBER_RE``, with Python's ``\\d`` spelled out for RE2) comes back as
    it is; the others go through ``clean_text``.
    """
    if not texts:
        return []
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(texts, type=pa.string())
    except (pa.ArrowException, UnicodeEncodeError):  # lone surrogates: not UTF-8
        return [clean_text(t, url_mode, mention_mode, scrub) for t in texts]
    def matches(pattern: str) -> np.ndarray:
        return pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False)

    marks = matches(r"http|HTTP|www\.|WWW\.|@")
    numbers, emails = matches(_number_pattern()), matches(_email_pattern())
    out = [(t, 0) for t in texts]
    for i in np.flatnonzero(marks | numbers).tolist():
        out[i] = clean_text(texts[i], url_mode, mention_mode, scrub, emails=bool(emails[i]), numbers=bool(numbers[i]))
    return out


@functools.cache
def _number_pattern() -> str:
    """``_MAYBE_NUMBER_RE`` for RE2."""
    from murmur.data.codepoints import re2_class

    d = re2_class(r"\d")
    return d + "[" + d[1:-1] + r" ().+\-]{6,}" + d


@functools.cache
def _email_pattern() -> str:
    """Whether ``EMAIL_RE`` matches somewhere, for RE2: where it matches, a match also starts one
    character before the ``@`` (the lookbehind only picks the first of a run); ``\\w`` and ``\\b`` spelled
    out as Python's."""
    from murmur.data.codepoints import re2_class

    w = re2_class(r"\w")
    assert EMAIL_RE.pattern == r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
    return "[" + w[1:-1] + r".+\-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?:$|[^" + w[1:-1] + "])"


# ---------------------------------------------------------------- dedup key

_KEY_DROP_RE = re.compile(r"<(?:url|email|phone|card)>|(?:https?://|www\.)\S+|(?<![\w@&+-])[@#]\w+",
                          re.IGNORECASE)
_NON_WORD_RE = re.compile(r"[\W_]+")
_DIGITS_RE = re.compile(r"\d+")


def fold_key(content: str, fold_digits: bool = True) -> str:
    """Lowercase, fold digit runs to ``0``, punctuation/emoji/whitespace runs to one space."""
    text = content.lower()
    if fold_digits:
        text = _DIGITS_RE.sub("0", text)
    return _NON_WORD_RE.sub(" ", text).strip()


def fold_keys(contents: list[str], fold_digits: bool = True) -> list[str]:
    """``fold_key`` of many posts at once, one compiled pass over the code points of the whole batch.

    Each code point's lower case and whether it is ``\\d`` or ``[^\\W_]`` come from Python itself
    (``codepoints.CharTable``), so the keys are ``fold_key``'s; the few posts whose lower case depends on
    context (a final ``Σ``) or grows (``İ``) go through ``fold_key`` one by one.
    """
    from murmur.data import codepoints

    if not contents:
        return []
    table = _fold_table()
    batch = codepoints.encode(contents)
    entry = table.lookup(batch.cp)
    low = entry & np.uint32(table.LOWER_MASK)
    classes = table.lookup(low)  # the classes of the lower-case code points, which the regexes see
    out_cp = np.empty(len(low), dtype=np.uint32)
    out_lens = np.empty(len(contents), dtype=np.int64)
    _fold(low, classes, batch.starts, batch.lens, table.bit("digit") if fold_digits else 0, table.bit("alnum"),
          out_cp, out_lens)
    out = codepoints.decode(out_cp[:int(out_lens.sum())], out_lens)
    irregular = batch.row_sums((entry & np.uint32(table.IRREGULAR_LOWER)) != 0)
    for i in np.flatnonzero(irregular).tolist():
        out[i] = fold_key(contents[i], fold_digits)
    return out


@jit
def _fold(low, classes, starts, lens, digit, alnum, out, out_lens):  # pragma: no cover - compiled by numba
    """``fold_key``'s rules over lower-cased code points (``low``, their ``classes``), text by text: a
    run of ``digit`` code points becomes ``0`` (``digit`` 0: digits stay), a run of anything but
    ``alnum`` one space, and none at either end of a text. The folded texts go to ``out`` end to end,
    their lengths to ``out_lens``."""
    o = 0
    for i in range(len(starts)):
        start, end = starts[i], starts[i] + lens[i]
        last = start - 1  # the last alphanumeric code point of the text
        for j in range(end - 1, start - 1, -1):
            if classes[j] & alnum:
                last = j
                break
        begin = o
        seen = prev_digit = prev_other = False
        for j in range(start, end):
            f = classes[j]
            if f & alnum:
                is_digit = (f & digit) != 0
                if not (is_digit and prev_digit):
                    out[o] = 48 if is_digit else low[j]
                    o += 1
                seen, prev_digit, prev_other = True, is_digit, False
            else:
                if seen and j < last and not prev_other:
                    out[o] = 32
                    o += 1
                prev_digit, prev_other = False, True
        out_lens[i] = o - begin


@functools.cache
def _fold_table():
    from murmur.data.codepoints import CharTable

    return CharTable({"digit": re.compile(r"\d"), "alnum": re.compile(r"[^\W_]")})


def dedup_key(text: str, fold_digits: bool = True) -> str:
    """The text two posts must share to count as duplicates.

    Lowercased; URLs, mentions, hashtags and placeholders dropped (two posts that differ only in a
    link, a handle or the hashtags appended to them are the same post); punctuation, emoji and
    whitespace folded to single spaces; every digit run folded to ``0`` when ``fold_digits``
    (templated posts such as "Daily reminder #123" then collapse onto one).
    """
    return fold_key(_KEY_DROP_RE.sub(" ", text), fold_digits)


# ---------------------------------------------------------------- length as X counts it

MAX_POST_CHARS = 280
_LINK_RE = re.compile(r"https?://\S+")


def tweet_length(text: str) -> int:
    """Length as X counts it: every http(s) link counts 23 characters."""
    return len(_LINK_RE.sub("x" * 23, text))
