"""A batch of texts as one numpy array of code points, with Python's own character classes per code point.

The per-post rules of ``murmur data clean`` are written with Python's ``re`` and ``str`` methods. Run
post by post they cost a regex call or a Python loop each; run here they are a few numpy operations
over every code point of a batch at once. The answers are the same by construction: what a code point
is (``\\w``, ``\\d``, ``\\s``, upper case, an emoji, its lower case...) is asked of Python itself, the
first time that code point is met, and kept in a table; numpy only counts and compares. Nothing here
depends on a second Unicode database (RE2's or ICU's), whose version and rules differ from Python's.

``CharTable`` holds the table. Each property is a one-character regular expression (``\\w``,
``[^\\W_]``, a class of emoji...) or a ``str`` predicate evaluated on ``chr(cp)``; ``lower`` maps a code
point to its lower case where that is one code point regardless of its neighbours (``str.lower`` turns
``İ`` into two code points and a final ``Σ`` into ``ς``: those are flagged ``irregular_lower``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MAX_CODE_POINT = 0x10FFFF


@dataclass(frozen=True)
class Batch:
    """Texts as code points: ``cp[starts[i]:starts[i] + lens[i]]`` is text ``i``."""

    cp: np.ndarray  # uint32
    starts: np.ndarray  # int64
    lens: np.ndarray  # int64

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.lens

    def row_of(self) -> np.ndarray:
        """The text each code point belongs to."""
        return np.repeat(np.arange(len(self.lens), dtype=np.int64), self.lens)

    def row_sums(self, values: np.ndarray) -> np.ndarray:
        """Per text, the sum of ``values`` (one per code point; empty texts give 0)."""
        csum = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(values, out=csum[1:])
        return csum[self.ends] - csum[self.starts]

    def first_in_row(self) -> np.ndarray:
        """True at the first code point of every text."""
        first = np.zeros(len(self.cp), dtype=bool)
        first[self.starts[self.lens > 0]] = True
        return first


def encode(texts: Sequence[str]) -> Batch:
    """The code points of ``texts`` (lone surrogates included, as their own values)."""
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts), dtype=np.int64)
    if len(texts):
        np.cumsum(lens[:-1], out=starts[1:])
    cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return Batch(cp, starts, lens)


def decode(cp: np.ndarray, lens: np.ndarray) -> list[str]:
    """Texts from their code points laid end to end and their lengths (``encode``'s inverse)."""
    joined = np.ascontiguousarray(cp, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    ends = np.cumsum(lens).tolist()
    out, start = [], 0
    for end in ends:
        out.append(joined[start:end])
        start = end
    return out


Property = re.Pattern[str] | Callable[[str], bool]


class CharTable:
    """Properties of code points, asked of Python once per code point met and kept.

    ``properties`` name at most 9 properties, each a compiled one-character pattern (a code point has
    it when the pattern matches ``chr(cp)`` entirely) or a predicate on ``chr(cp)``. ``lookup(cp)``
    gives, per code point, one ``uint32``: its lower case in the low 21 bits (``LOWER_MASK``), bit
    ``21 + i`` for the ``i``-th property (``bit(name)``), and ``IRREGULAR_LOWER`` where ``str.lower`` of
    the code point is not one code point independent of its neighbours (``İ`` -> two code points, a
    final ``Σ`` -> ``ς``), whose lower case is then given as itself: check those apart.
    """

    LOWER_MASK = (1 << 21) - 1
    IRREGULAR_LOWER = 1 << 30
    _KNOWN = 1 << 31

    def __init__(self, properties: dict[str, Property]):
        if len(properties) > 9:
            raise ValueError("at most 9 properties")
        self.names = list(properties)
        self._bits = {name: 1 << (21 + i) for i, name in enumerate(self.names)}
        self._tests = list(properties.values())
        self._table = np.zeros(MAX_CODE_POINT + 1, dtype=np.uint32)

    def bit(self, name: str) -> int:
        return self._bits[name]

    def lookup(self, cp: np.ndarray) -> np.ndarray:
        """Lower case and property bits of each code point (see the class doc)."""
        out = self._table[cp]
        if len(out) and not (out.min() & self._KNOWN):
            self._learn(cp[(out & self._KNOWN) == 0])
            out = self._table[cp]
        return out

    def _learn(self, new: np.ndarray) -> None:
        for c in np.unique(new).tolist():
            ch = chr(c)
            entry = self._KNOWN
            for test, bit in zip(self._tests, self._bits.values(), strict=True):
                if (test.fullmatch(ch) is not None) if isinstance(test, re.Pattern) else test(ch):
                    entry |= bit
            low = ch.lower()
            if len(low) != 1 or ch == "\u03a3":
                entry |= self.IRREGULAR_LOWER | c
            else:
                entry |= ord(low)
            self._table[c] = entry


@functools.cache
def re2_class(pattern: str) -> str:
    """An RE2 character class of every code point that Python's one-character ``pattern`` matches.

    Spelled out code point by code point from Python's own answers, so a regex built from such classes
    (and no other Unicode-dependent syntax: no ``\\w``, ``\\b``, case folding) matches the same text in
    RE2 (pyarrow.compute) as in ``re``.
    """
    every = _every_code_point()
    parts = []
    for m in re.finditer(f"(?:{pattern})+", every):
        lo, hi = ord(every[m.start()]), ord(every[m.end() - 1])
        parts.append(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}")
    return "[" + "".join(parts) + "]"


@functools.cache
def _every_code_point() -> str:
    """Every code point but the surrogates, in order, as one string."""
    cps = np.arange(MAX_CODE_POINT + 1, dtype=np.uint32)
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]
    return cps.tobytes().decode("utf-32-le")
