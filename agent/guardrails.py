"""PII redaction and system-prompt leak detection.

Detected kinds, applied in this order (earlier kinds win on overlapping text):

* ``email``        -> ``[EMAIL]``
* ``iban``         -> ``[IBAN]``: country code + 2 check digits + BBAN, spaces allowed,
  upper-case letters only (as printed), accepted only when the ISO 13616 mod-97
  check passes and, for countries in ``_IBAN_LENGTHS``, the length is right.
* ``card``         -> ``[CARD]``: 13-19 digits with optional spaces/dashes, leading
  digit 2-6 (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro),
  accepted only when the Luhn checksum passes. The prefix rule keeps Luhn-valid
  tracking numbers (often starting 1 or 9) out.
* ``national_id``  -> ``[NATIONAL_ID]``:
    - US SSN ``AAA-GG-SSSS`` (dashes or spaces); areas 000, 666 and 900-999,
      group 00 and serial 0000 are never issued, so they are not redacted.
    - UK National Insurance number ``QQ 12 34 56 C`` (upper case); HMRC's prefix
      rules are applied, except that the specimen prefix QQ is accepted.
    - Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter),
      validated with the mod-23 control letter.
    - Dutch BSN (9 digits, 11-check), only right after the word "BSN",
      "burgerservicenummer" or "sofinummer": a bare 9-digit number passes the
      11-check too often to be redacted on its own.
* ``phone``        -> ``[PHONE]``: ``+CC`` international forms, US ``(555) 123-4567`` /
  ``555-123-4567``, and national numbers with a trunk 0 (UK ``020 7946 0958``,
  ``07700 900123``), 9-15 digits. Bare digit runs without ``+`` or a leading 0 are
  left alone because they are indistinguishable from order numbers.

Card runs before phone so a card number is not labelled a phone. Placeholders
contain no digits or ``@``, so redacting twice gives the same text. Only ASCII
digits are considered.
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_Replacer = Callable[[re.Match[str]], "str | None"]
_Step = Callable[[str], "tuple[str, int]"]


@dataclass(frozen=True)
class Redaction:
    """Redacted text and how many items of each kind were replaced."""

    text: str
    found: dict[str, int]


# Every pattern starts with a plain character class and checks the preceding
# character with a lookbehind *after* it: the regex engine can then skip most
# positions in C, which keeps 100 KB of text well under the time budget.

# --- email ---------------------------------------------------------------------
# Scanning from the "@" is ~30x faster than trying a local part at every position.
_EMAIL_DOMAIN = re.compile(r"@[^\W_](?:[\w-]*[^\W_])?(?:\.[\w-]+)*\.[A-Za-z]{2,63}\b")
_LOCAL_PART_EXTRA = frozenset("._%+-'")


def _redact_emails(text: str) -> tuple[str, int]:
    if "@" not in text:
        return text, 0
    pieces: list[str] = []
    last = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = _local_part_start(text, match.start(), last)
        if start < match.start():
            pieces += [text[last:start], "[EMAIL]"]
            last = match.end()
    pieces.append(text[last:])
    return "".join(pieces), (len(pieces) - 1) // 2


def _local_part_start(text: str, at: int, floor: int) -> int:
    start = at
    while start > floor and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_PART_EXTRA):
        start -= 1
    return start


# --- IBAN --------------------------------------------------------------------------
# Upper-case only, as printed on statements; it also stops the match running into the next word.
_IBAN = re.compile(r"[A-Z]{2}(?<!\w[A-Z]{2})[0-9]{2}(?: ?[A-Z0-9]){11,30}(?!\w)")
_LETTER_VALUES = {ord(letter): str(value) for value, letter in enumerate(string.ascii_uppercase, start=10)}
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_is_valid(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    if not 15 <= len(compact) <= 34 or (expected and len(compact) != expected) or not compact.isalnum():
        return False
    return int((compact[4:] + compact[:4]).translate(_LETTER_VALUES)) % 97 == 1


def _iban(match: re.Match[str]) -> str | None:
    return _longest_valid_prefix(match.group(), iban_is_valid, "[IBAN]")


# --- payment cards -------------------------------------------------------------------
# A plain character class instead of a repeated group: far less backtracking on long digit runs.
_CARD = re.compile(r"[0-9](?<![\w+.,/-][0-9])[0-9 -]{11,35}[0-9](?!\w)(?![.,/-][0-9])")


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_is_valid(number: str) -> bool:
    """Luhn (mod-10) checksum over a string of digits."""
    digits = [int(ch) for ch in reversed(number)]
    return (sum(digits[0::2]) + sum(_LUHN_DOUBLED[d] for d in digits[1::2])) % 10 == 0


def _card_is_valid(candidate: str) -> bool:
    if "  " in candidate or "--" in candidate or " -" in candidate or "- " in candidate:
        return False
    digits = candidate.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_is_valid(digits)


def _card(match: re.Match[str]) -> str | None:
    candidate = match.group()
    if len(candidate) - candidate.count(" ") - candidate.count("-") < 13:
        return None  # cheap exit for the many phone- and date-like runs
    return _longest_valid_prefix(candidate, _card_is_valid, "[CARD]")


def _longest_valid_prefix(candidate: str, is_valid: Callable[[str], bool], placeholder: str) -> str | None:
    """Try the whole candidate, then drop trailing groups: a CVV or a following word may have been swallowed."""
    if is_valid(candidate):
        return placeholder
    for cut in reversed([i for i, ch in enumerate(candidate) if ch in " -"]):
        if is_valid(candidate[:cut]):
            return placeholder + candidate[cut:]
    return None


# --- national ids ----------------------------------------------------------------------
_SSN = re.compile(r"[0-9](?<![\w-][0-9])[0-9]{2}([- ])[0-9]{2}\1[0-9]{4}(?![\w-])")
_UK_NINO = re.compile(r"[A-Z]{2}(?<!\w[A-Z]{2}) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?!\w)")
_UK_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
# A lower-case control letter only counts when attached: "12345678 a" is usually the article "a".
_ES_DNI = re.compile(r"[XYZ0-9](?<![\w-][XYZ0-9])[0-9]{7}(?:[- ]?[A-Z]|[a-z])(?![\w-])")
_ES_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_NL_BSN = re.compile(
    r"(\b(?:bsn|burgerservicenummer|sofinummer|sofi-nummer)\b[^\d\n]{0,25}?)"
    r"([0-9]{9}|[0-9]{4}\.[0-9]{2}\.[0-9]{3}|[0-9]{3} [0-9]{3} [0-9]{3})(?![\w.-]?[0-9])",
    re.IGNORECASE,
)
_NL_BSN_KEYWORDS = ("bsn", "sofi", "burgerservice")


def _ssn(match: re.Match[str]) -> str | None:
    area, group, serial = re.split(r"[- ]", match.group())
    never_issued = area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000"
    return None if never_issued else "[NATIONAL_ID]"


def _uk_nino(match: re.Match[str]) -> str | None:
    prefix = match.group()[:2]
    if prefix != "QQ" and (
        prefix[0] in "DFIQUV" or prefix[1] in "DFIOQUV" or prefix in _UK_NINO_BAD_PREFIXES
    ):
        return None
    return "[NATIONAL_ID]"


def _es_dni(match: re.Match[str]) -> str | None:
    compact = match.group().replace("-", "").replace(" ", "").upper()
    body, letter = compact[:-1], compact[-1]
    # NIE numbers swap their X/Y/Z prefix for 0/1/2 before the mod-23 lookup.
    number = int(str("XYZ".index(body[0])) + body[1:]) if body[0] in "XYZ" else int(body)
    return "[NATIONAL_ID]" if _ES_LETTERS[number % 23] == letter else None


def bsn_is_valid(number: str) -> bool:
    """Dutch 11-check: weights 9..2 for the first eight digits and -1 for the last."""
    digits = [int(ch) for ch in number if ch.isdigit()]
    if len(digits) != 9:
        return False
    total = sum(d * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1)))
    return total % 11 == 0 and total > 0


def _nl_bsn(match: re.Match[str]) -> str | None:
    return match.group(1) + "[NATIONAL_ID]" if bsn_is_valid(match.group(2)) else None


# --- phone numbers ----------------------------------------------------------------------
# The first character picks the branch via a lookbehind. Possessive quantifiers never
# split a digit run, so a failed candidate cannot backtrack exponentially.
_PHONE = re.compile(
    r"""
    [+(0-9](?<![\w+\#$£€¥/.,(-][+(0-9])
    (?:
        (?<=\+)[0-9]{1,3}+(?:[ .-]?\(0\))?(?:[ .-]?\(?[0-9]++\)?){1,5}+      # +44 20 7946 0958
      | (?<=\()[0-9]{3}\)\ ?[0-9]{3}[ .-][0-9]{4}                            # (555) 123-4567
      | (?<=0)[0-9]*+(?:[ .-][0-9]++){0,3}+                                  # 020 7946 0958
      | (?<=[1-9])[0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4}                         # 555-123-4567
    )
    (?![\w/])(?![.,:-][0-9])
    """,
    re.VERBOSE,
)
_DATE_LIKE = re.compile(r"[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{1,4}")


def _phone(match: re.Match[str]) -> str | None:
    candidate = match.group()
    if not 9 <= sum(map(str.isdigit, candidate)) <= 15:
        return None
    if not candidate.startswith("+") and _DATE_LIKE.search(candidate):
        return None
    return "[PHONE]"


# --- driver -------------------------------------------------------------------------------
def _regex_step(pattern: re.Pattern[str], replacer: _Replacer) -> _Step:
    def step(text: str) -> tuple[str, int]:
        count = 0

        def substitute(match: re.Match[str]) -> str:
            nonlocal count
            replacement = replacer(match)
            if replacement is None:
                return match.group()
            count += 1
            return replacement

        return pattern.sub(substitute, text), count

    return step


def _only_if_mentioned(keywords: tuple[str, ...], step: _Step) -> _Step:
    def gated(text: str) -> tuple[str, int]:
        lowered = text.lower()
        return step(text) if any(word in lowered for word in keywords) else (text, 0)

    return gated


_STEPS: tuple[tuple[str, _Step], ...] = (
    ("email", _redact_emails),
    ("iban", _regex_step(_IBAN, _iban)),
    ("card", _regex_step(_CARD, _card)),
    ("national_id", _regex_step(_SSN, _ssn)),
    ("national_id", _regex_step(_UK_NINO, _uk_nino)),
    ("national_id", _regex_step(_ES_DNI, _es_dni)),
    ("national_id", _only_if_mentioned(_NL_BSN_KEYWORDS, _regex_step(_NL_BSN, _nl_bsn))),
    ("phone", _regex_step(_PHONE, _phone)),
)
_ANY_DIGIT = re.compile(r"[0-9]")


def redact_pii(text: str) -> Redaction:
    """Replace emails, IBANs, cards, national ids and phone numbers with ``[KIND]`` placeholders."""
    found: dict[str, int] = {}
    if "@" not in text and not _ANY_DIGIT.search(text):
        return Redaction(text, found)  # every kind needs an @ or a digit
    for kind, step in _STEPS:
        text, count = step(text)
        if count:
            found[kind] = found.get(kind, 0) + count
    return Redaction(text, found)


def redact_value(value: object) -> object:
    """Redact every string inside nested dicts/lists/tuples/sets; other values are returned as they are.

    Dict keys are redacted too: an audit row must not keep an email just because it was used as a key.
    """
    if isinstance(value, str):
        return redact_pii(value).text
    if isinstance(value, Mapping):
        return {redact_value(key): redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_value(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(redact_value(item) for item in value)
    return value


# --- system prompt leaks ------------------------------------------------------------------
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _ngrams(words: list[str], size: int) -> set[str]:
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def leaks_system_prompt(output: str, system_prompt: str, *, min_overlap_words: int = 12) -> bool:
    """True when ``output`` repeats ``min_overlap_words`` consecutive words of ``system_prompt``.

    Case, punctuation and whitespace are ignored. A prompt shorter than the window
    counts as leaked only when the output contains all of it.
    """
    if min_overlap_words < 1:
        raise ValueError("min_overlap_words must be at least 1")
    prompt_words = _words(system_prompt)
    size = min(min_overlap_words, len(prompt_words))
    if size == 0:
        return False
    prompt_grams = _ngrams(prompt_words, size)
    output_words = _words(output)
    return any(" ".join(output_words[i : i + size]) in prompt_grams for i in range(len(output_words) - size + 1))
