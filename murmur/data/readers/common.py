"""What every reader shares: row batches, per-file reports, fast dates, entities and a streaming JSON parser.

A reader yields rows as plain tuples in the order of :data:`ROW_FIELDS` (the post schema without
``source``) and turns every ``batch_size`` of them into one ``pyarrow.RecordBatch`` with
:func:`to_batch`; that keeps the per-post work in tight Python and the columnar work in Arrow.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import IO, Any

import pyarrow as pa

from murmur.data.schema import POST_SCHEMA
from murmur.errors import InputError

ROW_FIELDS = tuple(n for n in POST_SCHEMA.names if n != "source")
_ROW_TYPES = [POST_SCHEMA.field(n).type for n in ROW_FIELDS]
assert POST_SCHEMA.names[-1] == "source"

Row = tuple  # (post_id, author_id, created_us, lang, text, reply_to, conversation_id,
#             hashtags, mentions, urls, likes, reposts, replies)


class NoPostsHere(InputError):
    """The file is readable but holds no posts at all (no text column, not tweet data).

    Fatal for a file named on the command line; inside a directory walk the file is noted and skipped
    (a world's ``truth/*.parquet`` or ``world.json`` sit beside the posts). ``short`` is the reason
    shown for such a skipped file.
    """

    def __init__(self, message: str, path: object | None = None, short: str | None = None):
        super().__init__(message, path)
        self.short = short or message


@dataclass
class FileReport:
    """What reading one file did: posts kept, records skipped or fields left empty, with a first example."""

    posts: int = 0
    reader: str = ""
    skipped: Counter = field(default_factory=Counter)
    nulled: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_read: str | None = None

    def skip(self, reason: str, where: str) -> None:
        """Count one record that could not become a post (for example it has no text)."""
        self.skipped[reason] += 1
        self.examples.setdefault(reason, where)

    def null(self, reason: str, where: str) -> None:
        """Count one field value that could not be read and was left empty."""
        self.nulled[reason] += 1
        self.examples.setdefault(reason, where)


def to_batch(rows: list[Row], source: str) -> pa.RecordBatch:
    """Rows (tuples in :data:`ROW_FIELDS` order) plus a constant ``source`` -> one batch in POST_SCHEMA."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in ROW_FIELDS]
    arrays = [pa.array(col, type=typ) for col, typ in zip(columns, _ROW_TYPES, strict=True)]
    arrays.append(pa.array([source] * len(rows), type=pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=POST_SCHEMA)


# ---------------------------------------------------------------- dates
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_day_cache: dict[tuple[int, int, int], int] = {}
_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


def _days(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (validated; cached, dates repeat a lot)."""
    key = (y, m, d)
    days = _day_cache.get(key)
    if days is None:
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        if not (1 <= y <= 9999 and 1 <= m <= 12 and 1 <= d <= _MONTH_DAYS[m - 1] + (leap and m == 2)):
            raise ValueError(f"no such date {y:04d}-{m:02d}-{d:02d}")
        yy = y - (m <= 2)
        era = yy // 400
        yoe = yy - era * 400
        doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
        days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
        if len(_day_cache) < 1_000_000:
            _day_cache[key] = days
    return days


_archive_day_cache: dict[str, int] = {}


def parse_x_archive_time(s: str) -> int:
    """``Wed Oct 10 20:19:24 +0000 2018`` (X archive / API v1.1) -> microseconds since the epoch (UTC).

    Sliced by position, with the (date, offset) part cached: about 10x faster than ``datetime.strptime``.
    """
    if len(s) == 30 and s[3] == " " and s[7] == " " and s[10] == " " and s[13] == ":" and s[19] == " ":
        key = s[4:10] + s[19:30]  # "Oct 10 +0000 2018"
        base = _archive_day_cache.get(key)
        if base is None:
            tz = s[20:25]
            if tz[0] not in "+-" or not tz[1:].isdigit():
                raise ValueError(f"bad UTC offset in {s!r}")
            off = (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60) * (-1 if tz[0] == "-" else 1)
            month = _MONTHS.get(s[4:7])
            if month is None:
                raise ValueError(f"no such month in {s!r}")
            base = _days(int(s[26:30]), month, int(s[8:10])) * 86400 - off
            if len(_archive_day_cache) < 1_000_000:
                _archive_day_cache[key] = base
        h, mi, sec = int(s[11:13]), int(s[14:16]), int(s[17:19])
        if not (0 <= h < 24 and 0 <= mi < 60 and 0 <= sec < 61):
            raise ValueError(f"no such time in {s!r}")
        return (base + h * 3600 + mi * 60 + sec) * 1_000_000
    dt = datetime.strptime(s, "%a %b %d %H:%M:%S %z %Y")
    return (dt - _EPOCH) // _ONE_US


_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=_UTC) - _EPOCH
_EPOCH_NAIVE = datetime(1970, 1, 1)
_fromiso = datetime.fromisoformat


def parse_iso_time(s: str) -> int:
    """ISO 8601 (``2024-05-01T12:34:56.000Z``, offsets, or a bare date) -> microseconds since the epoch.

    A time without an offset is taken as UTC. ``datetime.fromisoformat`` (C, accepts ``Z`` since
    Python 3.11) does the parsing.
    """
    dt = _fromiso(s)
    if dt.tzinfo is None:
        return (dt - _EPOCH_NAIVE) // _ONE_US
    return (dt - _EPOCH) // _ONE_US


def datetime_us(dt: datetime | date) -> int:
    """A datetime (naive = UTC) or date -> microseconds since the epoch."""
    if not isinstance(dt, datetime):
        return _days(dt.year, dt.month, dt.day) * 86_400_000_000
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    return (dt - _EPOCH) // _ONE_US


# The timestamps a post may carry: years 1 to 9999, as Python's datetime (and every reader) knows them.
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_799_999_999


def epoch_us(v: float) -> int:
    """A Unix time -> microseconds: seconds below 1e11, milliseconds below 1e14, else microseconds.

    ValueError outside years 1-9999 (``1e22``, infinities).
    """
    a = abs(v)
    if a < 1e11:
        return int(round(v * 1_000_000))
    if a < 1e14:
        return int(round(v * 1000))
    if not a <= MAX_US:
        raise ValueError(f"time out of range: {v!r}")
    return in_time_range(int(v))


def in_time_range(us: int) -> int:
    """``us`` itself when it lies in years 1-9999, else ValueError."""
    if not MIN_US <= us <= MAX_US:
        raise ValueError(f"time out of range: {us} us")
    return us


def parse_time(v: Any) -> int | None:
    """Any timestamp we accept -> microseconds since the epoch (UTC), ``None`` for empty; ValueError if unreadable.

    Accepts ISO 8601 strings, the X archive format, Unix times (numbers or digit strings, in seconds,
    milliseconds or microseconds) and datetime/date objects.
    """
    if v is None:
        return None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        c = s[0]
        if c.isdigit() and len(s) >= 10 and s[4] == "-":
            return parse_iso_time(s)
        if c.isdigit() or c == "-":
            try:
                return epoch_us(float(s))
            except ValueError:
                return parse_iso_time(s)
        if len(s) == 30 and s[3] == " ":
            return parse_x_archive_time(s)
        return parse_iso_time(s)
    if isinstance(v, bool):
        raise ValueError(f"not a time: {v!r}")
    if isinstance(v, int | float):
        if v != v:  # NaN from a float column
            return None
        return epoch_us(v)
    if isinstance(v, datetime | date):
        return datetime_us(v)
    raise ValueError(f"not a time: {v!r}")


# ---------------------------------------------------------------- entities and values
HASHTAG_RE = re.compile(r"(?<![\w&/])[#＃](\w*[^\W\d_]\w*)")
MENTION_RE = re.compile(r"(?<![\w@/])[@＠](\w{1,15})(?!\w)")
URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAIL = ".,;:!?)]}'\""


def extract_hashtags(text: str) -> list[str]:
    """``#tags`` in ``text`` without the ``#`` (a tag needs a letter, as on X)."""
    return HASHTAG_RE.findall(text) if ("#" in text or "＃" in text) else []


def extract_mentions(text: str) -> list[str]:
    """``@handles`` in ``text`` without the ``@`` (not e-mail addresses)."""
    return MENTION_RE.findall(text) if ("@" in text or "＠" in text) else []


def extract_urls(text: str) -> list[str]:
    """``http(s)://`` links in ``text``, trailing punctuation removed."""
    if "://" not in text:
        return []
    return [u.rstrip(_URL_TRAIL) for u in URL_RE.findall(text)]


def unescape_x(text: str) -> str:
    """X escapes ``&``, ``<`` and ``>`` in post text as HTML entities; undo exactly those three."""
    if "&" in text:
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text


def to_id(v: Any) -> str | None:
    """An identifier as a string (``12.0`` from a float column -> ``"12"``); empty -> None.

    ValueError for a value that is not an identifier (an object, a list, bytes, an infinity).
    """
    if type(v) is str:
        v = v.strip()
        return v or None
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return None
        if v.is_integer():
            return str(int(v))
        if v in (_INF, -_INF):
            raise ValueError(f"not an id: {v!r}")
        return str(v)
    if isinstance(v, int | str):
        return str(v)
    raise ValueError(f"not an id: {type(v).__name__}")


_INF = float("inf")
INT64_MAX = (1 << 63) - 1


def to_count(v: Any) -> int | None:
    """A like/repost/reply count: ints, digit strings (X archives store ``"3"``).

    ValueError for anything else, and for a count that does not fit in int64 (a 20-digit count).
    """
    if v is None:
        return None
    if type(v) is int:
        n = v
    elif isinstance(v, str):
        s = v.strip().replace(",", "").replace("_", "")
        if not s:
            return None
        try:
            n = int(s)
        except ValueError:
            f = float(s)
            if f != f or f in (_INF, -_INF):
                raise ValueError(f"not a count: {v!r}") from None
            n = int(f)
    elif isinstance(v, float):
        if v != v:
            return None
        if v in (_INF, -_INF):
            raise ValueError(f"not a count: {v!r}")
        n = int(v)
    else:
        raise ValueError(f"not a count: {v!r}")
    if not -INT64_MAX <= n <= INT64_MAX:
        raise ValueError(f"count out of range: {v!r}")
    return n


_SURROGATE = re.compile("[\ud800-\udfff]")
_OPTIONAL_STRINGS = ((1, "author_id"), (3, "lang"), (5, "reply_to"), (6, "conversation_id"))
_LISTS = ((7, "hashtags"), (8, "mentions"), (9, "urls"))
_COUNTS = ((10, "likes"), (11, "reposts"), (12, "replies"))


def _bad_str(v: Any) -> bool:
    """Not a string Arrow can store: another type, or a lone surrogate (``"\\ud800"`` in JSON)."""
    return type(v) is not str or (not v.isascii() and _SURROGATE.search(v) is not None)


def _ok_list(v: Any) -> bool:
    if type(v) is not list:
        return v is None
    for x in v:
        if type(x) is not str or (not x.isascii() and _SURROGATE.search(x) is not None):
            return False
    return True


def finish_row(row: Row, where: str, report: FileReport) -> Row | None:
    """Every reader's last check: a row the post schema can hold, or None (skipped and counted).

    A post_id or text that is not valid Unicode skips the record; any other value the schema cannot
    hold (a lone surrogate, a count beyond int64, a time outside years 1-9999, a wrong type) is left
    empty and counted. One pass of cheap tests when the row is fine, which is almost always.
    """
    pid, author, ts, lang, text, reply, conv, tags, ments, urls, likes, reposts, replies = row
    if (type(text) is str and (text.isascii() or _SURROGATE.search(text) is None)
            and type(pid) is str and pid.isascii() and type(lang) is str and lang.isascii()
            and (author is None or type(author) is str and author.isascii())
            and (reply is None or type(reply) is str and reply.isascii())
            and (conv is None or type(conv) is str and conv.isascii())
            and (ts is None or type(ts) is int and MIN_US <= ts <= MAX_US)
            and (likes is None or type(likes) is int and -INT64_MAX <= likes <= INT64_MAX)
            and (reposts is None or type(reposts) is int and -INT64_MAX <= reposts <= INT64_MAX)
            and (replies is None or type(replies) is int and -INT64_MAX <= replies <= INT64_MAX)
            and (not tags or _ok_list(tags)) and (not ments or _ok_list(ments)) and (not urls or _ok_list(urls))):
        return row
    return _finish_slow(row, where, report)


def _finish_slow(row: Row, where: str, report: FileReport) -> Row | None:
    if _bad_str(row[4]):
        report.skip("text not valid Unicode" if type(row[4]) is str else "text is not a string", where)
        return None
    if _bad_str(row[0]):
        report.skip("post_id not valid Unicode", where)
        return None
    fixed: list | None = None
    for i, name in _OPTIONAL_STRINGS:
        v = row[i]
        if v is not None and _bad_str(v):
            fixed = fixed or list(row)
            fixed[i] = "und" if name == "lang" else None
            report.null(f"{name} unreadable", where)
    for i, name in _LISTS:
        v = row[i]
        if v is None:
            continue
        if _ok_list(v):
            continue
        fixed = fixed or list(row)
        fixed[i] = None
        report.null(f"{name} unreadable", where)
    for i, name in _COUNTS:
        v = row[i]
        if v is not None and (type(v) is not int or not -INT64_MAX <= v <= INT64_MAX):
            fixed = fixed or list(row)
            fixed[i] = None
            report.null(f"{name} unreadable", where)
    v = row[2]
    if v is not None and (type(v) is not int or not MIN_US <= v <= MAX_US):
        fixed = fixed or list(row)
        fixed[2] = None
        report.null("created_at unreadable", where)
    return tuple(fixed) if fixed is not None else row


def as_list(v: Any) -> list | tuple:
    """``v`` when it is a list, else an empty tuple (an entity list given as something else)."""
    return v if isinstance(v, list) else ()


def stable_id(label: str, n: int) -> str:
    """The post_id given to a post whose input has none: ``<file label>#<line or row number>``."""
    return f"{label}#{n}"


# ---------------------------------------------------------------- text input and errors
def read_head(f: IO[str], size: int = 1 << 16) -> str:
    """First characters of a text stream, without a UTF-8 byte-order mark."""
    head = f.read(size)
    return head[1:] if head.startswith("\ufeff") else head


def locate_bad_utf8(open_bytes: Callable[[], IO[bytes]]) -> tuple[int, int]:
    """(byte offset, 1-based line) of the first byte that is not valid UTF-8 in a stream."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    consumed = lines = 0
    with open_bytes() as f:
        while True:
            chunk = f.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                rel = max(e.start - pending, 0)
                return consumed + rel, lines + chunk[:rel].count(b"\n") + 1
            if not chunk:
                return consumed, lines + 1
            consumed += len(chunk)
            lines += chunk.count(b"\n")


def guard_utf8(rows: Iterator[Any], where: str, open_bytes: Callable[[], IO[bytes]]) -> Iterator[Any]:
    """Pass ``rows`` through, turning a UnicodeDecodeError into the one-line :func:`encoding_error`."""
    try:
        yield from rows
    except UnicodeDecodeError:
        raise encoding_error(where, open_bytes) from None


def encoding_error(where: str, open_bytes: Callable[[], IO[bytes]]) -> InputError:
    """The one-line error for a file that is not UTF-8, naming byte offset and line."""
    offset, line = locate_bad_utf8(open_bytes)
    return InputError(f"not valid UTF-8 (byte offset {offset}); save the file as UTF-8", where, line)


# ---------------------------------------------------------------- streaming JSON
_WS = re.compile(r"[ \t\n\r]*")
_MAX_DEPTH_HINT = 900  # json's C decoder recurses; Python's default limit stops it near 1000 levels
_DECODER = json.JSONDecoder()
_CHUNK = 1 << 20


def iter_json(f: IO[str], where: str, initial: str = "", first_line: int = 1,
              unwrap_arrays: bool = True, allow_trailing_semicolon: bool = False,
              ) -> Iterator[tuple[Any, int]]:
    """Yield ``(value, line)`` for each JSON value in a text stream, parsed incrementally.

    The stream may hold one value, several (JSON Lines or concatenated pretty-printed values), or a
    top-level array; with ``unwrap_arrays`` each element of a top-level array is yielded on its own,
    so a multi-gigabyte ``[...]`` is never in memory at once (only about one megabyte plus one
    element). ``line`` is the 1-based line in the file where the value starts. Malformed JSON raises
    :class:`InputError` naming ``where`` and the line of the error.
    """
    buf = initial
    pos = 0
    eof = False
    line = first_line  # line number at buf[line_pos]
    line_pos = 0
    want = _CHUNK

    def line_at(i: int) -> int:
        nonlocal line, line_pos
        if i > line_pos:
            line += buf.count("\n", line_pos, i)
            line_pos = i
        return line

    def fill() -> None:
        nonlocal buf, pos, eof, line_pos, want
        chunk = f.read(want)
        if not chunk:
            eof = True
            return
        if pos > 0:
            line_at(pos)
            buf = buf[pos:]
            line_pos -= pos
            pos = 0
        buf += chunk

    def skip_ws() -> bool:
        """Move ``pos`` to the next non-space character; False at end of input."""
        nonlocal pos
        while True:
            pos = _WS.match(buf, pos).end()
            if pos < len(buf):
                return True
            if eof:
                return False
            fill()

    def decode() -> Any:
        nonlocal pos, want
        while True:
            try:
                value, end = _DECODER.raw_decode(buf, pos)
            except RecursionError:
                raise InputError(f"JSON nested too deeply to read (over {_MAX_DEPTH_HINT} levels)", where,
                                 line_at(pos)) from None
            except json.JSONDecodeError as e:
                truncated = e.pos >= len(buf) - 16 or e.msg.startswith("Unterminated string")
                if eof or not truncated:
                    msg = e.msg.removesuffix(" at")
                    raise InputError(f"malformed JSON: {msg}", where, line_at(min(e.pos, len(buf)))) from None
                want = max(_CHUNK, len(buf) - pos)  # grow geometrically for a huge single value
                fill()
                continue
            except ValueError as e:  # an integer of more than 4300 digits
                raise InputError(f"unreadable JSON value: {e}", where, line_at(pos)) from None
            if end >= len(buf) and not eof:  # a number may continue in the next chunk
                want = _CHUNK
                fill()
                continue
            want = _CHUNK
            pos = end
            return value

    while skip_ws():
        if unwrap_arrays and buf[pos] == "[":
            open_line = line_at(pos)
            pos += 1
            if not skip_ws():
                raise InputError("malformed JSON: the file ends inside '[' opened here", where, open_line)
            if buf[pos] == "]":
                pos += 1
            else:
                while True:
                    start = line_at(pos)
                    yield decode(), start
                    if not skip_ws():
                        raise InputError("malformed JSON: the file ends before the closing ']'", where,
                                         line_at(pos))
                    c = buf[pos]
                    pos += 1
                    if c == "]":
                        break
                    if c != ",":
                        raise InputError(f"malformed JSON: expected ',' or ']' but found {c!r}", where,
                                         line_at(pos - 1))
                    if not skip_ws():
                        raise InputError("malformed JSON: the file ends after ','", where, line_at(pos))
            if allow_trailing_semicolon and skip_ws() and buf[pos] == ";":
                pos += 1
        else:
            start = line_at(pos)
            yield decode(), start


def iter_json_lines(f: IO[str], where: str, report: FileReport | None = None,
                    label: str | None = None) -> Iterator[tuple[Any, int]]:
    """Yield ``(value, line)`` for each non-blank line of a JSON Lines stream.

    A line that is not JSON stops the file (:class:`InputError`); a line of valid JSON that Python
    cannot hold (nested too deeply, a number of thousands of digits) is one bad record: skipped and
    counted in ``report`` when one is given (an error otherwise).
    """
    loads = json.loads
    for n, text in enumerate(f, 1):
        if not text or text.isspace():
            continue
        try:
            value = loads(text)
        except RecursionError:
            if report is None:
                raise InputError(f"JSON nested too deeply to read (over {_MAX_DEPTH_HINT} levels)", where,
                                 n) from None
            report.skip("JSON nested too deeply", f"{label or where}:{n}")
            continue
        except json.JSONDecodeError:
            try:  # again without the line break, so the column points into the line
                loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise InputError(f"malformed JSON: {e.msg} (column {e.colno})", where, n) from None
            raise InputError("malformed JSON: a value runs past the end of the line", where, n) from None
        except ValueError as e:  # an integer of more than 4300 digits
            if report is None:
                raise InputError(f"unreadable JSON value: {e}", where, n) from None
            report.skip("JSON number too long", f"{label or where}:{n}")
            continue
        yield value, n
