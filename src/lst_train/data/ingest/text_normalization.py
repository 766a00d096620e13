"""Transcript -> the words a pronunciation dictionary can look up, each tied to the transcript token it came from.

The aligner needs lower-case dictionary words; training wants the transcript as written. So every whitespace
token of the transcript is normalised to zero or more dictionary words (case folded, accents and punctuation
stripped, hyphenated compounds split, numbers spelled out where easy), and word timings are mapped back to the
original tokens afterwards. A token with nothing to say (a dash, a quote) rides along with its neighbour.
"""

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_SPLIT = re.compile(r"[-\u2010-\u2015/]+")
_PIECE = re.compile(r"(?P<number>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?P<ordinal>st|nd|rd|th)?\b"
                    r"|[a-z0-9]+(?:'[a-z0-9]+)*")
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
             "twelve": "twelfth"}


def _below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def cardinal_words(n: int) -> list[str]:
    """0 <= n < 10**12 as English words: 2024 -> two thousand twenty four."""
    if n < 1000:
        return _below_thousand(n)
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return cardinal_words(n // scale) + [name] + (cardinal_words(rest) if rest else [])
    raise AssertionError(n)


def number_words(text: str) -> list[str]:
    """A number as spoken: four bare digits 1100-1999 as a year (1984 -> nineteen eighty four), else cardinals; decimals
    digit by digit after 'point'; thousands separators ignored."""
    whole, _, fraction = text.replace(",", "").partition(".")
    n = int(whole)
    if len(text) == 4 and 1100 <= n <= 1999:
        head, tail = divmod(n, 100)
        return _below_thousand(head) + (["hundred"] if tail == 0 else
                                        (["oh"] if tail < 10 else []) + _below_thousand(tail))
    words = cardinal_words(n) if n < 10**12 else [_ONES[int(d)] for d in whole]
    return words + (["point"] + [_ONES[int(d)] for d in fraction] if fraction else [])


def ordinal_words(text: str) -> list[str]:
    """21 -> twenty first, 100 -> one hundredth."""
    words = cardinal_words(int(text.replace(",", "")))
    last = words[-1]
    words[-1] = _ORDINALS.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return words


def _ascii_fold(token: str) -> str:
    token = token.replace("\u2019", "'").replace("\u2018", "'").lower()
    return unicodedata.normalize("NFKD", token).encode("ascii", "ignore").decode()


def token_words(token: str) -> list[str]:
    """One transcript token -> dictionary words (possibly none): "Ill-disposed," -> ["ill", "disposed"]."""
    words = []
    for part in _SPLIT.split(_ascii_fold(token)):
        for piece in _PIECE.finditer(part.replace("&", " and ")):
            if piece["number"] is None:
                words.append(piece[0])
            elif piece["ordinal"] and "." not in piece["number"]:
                words += ordinal_words(piece["number"])
            else:
                words += number_words(piece["number"])
    return words


def normalize_transcript(text: str) -> tuple[list[str], list[list[str]]]:
    """(tokens, words per token): the transcript's tokens, with tokens that normalise to nothing merged into the
    previous token (the next one at the start), so every returned token owns at least one dictionary word."""
    tokens: list[str] = []
    words: list[list[str]] = []
    pending = ""
    for token in text.split():
        normalised = token_words(token)
        if not normalised:
            if tokens:
                tokens[-1] += " " + token
            else:
                pending += token + " "
            continue
        tokens.append(pending + token)
        words.append(normalised)
        pending = ""
    return tokens, words
