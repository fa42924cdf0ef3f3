"""Rewrite written English into its spoken form for TTS.

Numbers, years, times, money, percentages, ranges, ordinals, common abbreviations and regnal or
heading roman numerals become words; typographic punctuation is folded to ASCII and whitespace is
collapsed. Raw phonemes written as ``[[ ... ]]`` (from a lexicon) pass through untouched.
The output contains no digits, and the rules run until the text stops changing, so normalizing
twice gives the same text.
"""

from __future__ import annotations

import html
import re
import unicodedata

from num2words import num2words

# A raw phoneme block: "[[", anything but a newline or another "[[", then "]]". Excluding "[["
# keeps the search linear: with ".*?" every unclosed "[[" scanned to the end of the text.
PHONEME_BLOCK = r"\[\[(?:(?!\[\[)[^\n])*?\]\]"
_PHONEMES = re.compile("(" + PHONEME_BLOCK + ")")


_PASSES = 4  # rewriting until nothing changes; real text settles in two


def normalize(text: str) -> str:
    """The spoken form of ``text`` (one line, single spaces). Never raises for any ``str``.

    One pass of the rules can make text another pass would rewrite ("e.g.1990" -> "e.g. one
    thousand...", where "e.g." now stands alone), so the rules run until the text stops
    changing: normalize(normalize(x)) == normalize(x).
    """
    for _ in range(_PASSES):
        spoken = _normalize_once(text)
        if spoken == text:
            break
        text = spoken
    return text


def _normalize_once(text: str) -> str:
    # Phoneme blocks stand in as a capitalized word while the rules run, so their context still
    # counts ("Mr. [[ ... ]]" is a title before a name) and no rule can touch what is inside.
    blocks: list[str] = []

    def hide(m: re.Match) -> str:
        blocks.append(m.group(0))
        return f" Phonemes{_letters(len(blocks) - 1)}Q "

    text = _PHONEMES.sub(hide, text)
    for rule in _RULES:
        text = rule(text)
    if blocks:
        text = re.sub(r"Phonemes([a-z]+)Q", lambda m: _restore(blocks, m), text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"^,\s*", "", text)  # a dash that opened the text


def _restore(blocks: list[str], m: re.Match) -> str:
    index = _unletters(m.group(1))
    return blocks[index] if index < len(blocks) else m.group(0)


def _letters(n: int) -> str:
    """0 -> "a", 25 -> "z", 26 -> "ba": an index spelled without digits, which rules would read."""
    out = ""
    while True:
        out = chr(ord("a") + n % 26) + out
        n //= 26
        if not n:
            return out


def _unletters(code: str) -> int:
    n = 0
    for ch in code:
        n = n * 26 + ord(ch) - ord("a")
    return n


# --- number words -------------------------------------------------------------------------


def _digits(digits: str) -> str:
    """Read a digit string one digit at a time ("007" -> "zero zero seven")."""
    return " ".join(_DIGIT_WORDS[d] for d in digits if d.isdigit())


_DIGIT_WORDS = dict(zip("0123456789", "zero one two three four five six seven eight nine".split()))


def _cardinal(number: str) -> str:
    """"1,234" -> "one thousand two hundred and thirty-four"."""
    digits = number.replace(",", "")
    # Leading zeros and very long digit runs are codes or ids, read digit by digit.
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > 15:
        return _digits(digits)
    try:
        return num2words(int(digits), lang="en").replace(",", "")
    except (ValueError, OverflowError, ArithmeticError):
        return _digits(digits)


def _ordinal(number: str) -> str:
    digits = number.replace(",", "")
    if len(digits) > 15:
        return _digits(digits)
    try:
        return num2words(int(digits), lang="en", to="ordinal").replace(",", "")
    except (ValueError, OverflowError, ArithmeticError):
        return _digits(digits)


def _decimal(whole: str, fraction: str | None) -> str:
    """"3.5" -> "three point five"; the fraction is read digit by digit as people say it."""
    spoken = _cardinal(whole) if whole else ""
    if fraction:
        spoken = f"{spoken} point {_digits(fraction)}".strip()
    return spoken


def _year(number: int) -> str:
    try:
        return num2words(number, lang="en", to="year").replace(",", "")
    except (ValueError, OverflowError, ArithmeticError):
        return _cardinal(str(number))


def _is_year(digits: str) -> bool:
    return len(digits) == 4 and 1100 <= int(digits) <= 2099


# --- typography ---------------------------------------------------------------------------

_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"', "\u2039": "'", "\u203a": "'",
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-", "\u2044": "/",
        "\u00ad": None, "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None,
    }
)
# An em dash (or a spaced dash) is a pause; a comma is what the phonemizer turns into one.
_DASH = re.compile(r"\s*[\u2014\u2015]\s*|\s*--+\s*|\s+[\u2013-]\s+")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# A character reference left in the text ("&amp;", "&#8212;", "&eacute;"): the character it names,
# before "&" is read as "and". Only complete references (with their ";"), so "AT&T" stays.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _ascii_digit(m: re.Match) -> str:
    value = unicodedata.decimal(m.group(0), None)
    return m.group(0) if value is None else str(value)


def _typography(text: str) -> str:
    text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    # NFKC folds ligatures, full-width forms and exotic spaces; the ellipsis becomes "...".
    text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    text = _CONTROL.sub(" ", text)  # NUL and the like (standard input may carry any byte)
    # Every rule below reads ASCII digits; other scripts' digits (which \d also matches) are mapped.
    text = re.sub(r"[^\x00-\x7f]", _ascii_digit, text) if not text.isascii() else text

    def dash(m: re.Match) -> str:
        s = m.string
        before = s[m.start() - 1] if m.start() else ""
        after = s[m.end()] if m.end() < len(s) else ""
        if before.isdigit() and after.isdigit():
            return "-"  # "1990 - 1995" stays a range
        return ", "

    text = _DASH.sub(dash, text)
    return text.replace("\u2013", "-").replace("&", " and ")


# --- abbreviations --------------------------------------------------------------------------

# Capitalized words that usually open a sentence rather than follow a title ("Baker St. It was").
_SENTENCE_STARTERS = frozenset(
    "I It It's The He She They We You A An This That These Those There Then But And So His Her "
    "Their Our My Its In On At When As If What Who Why How Now Yet Still After Before".split()
)


_AFTER_ABBREVIATION = re.compile(r"\s*$|\s+[\"'(]?([A-Z][\w']*)")
_NEXT_WORD = re.compile(r"\s+([A-Z][\w']*)")
_PREV_WORD = re.compile(r"([A-Z0-9][\w']*)\s+$")


def _keep_period(s: str, end: int) -> str:
    """"." when an abbreviation's period also ends the sentence.

    That is certain at the end of the text; before a capital only when the next word usually opens
    a sentence ("Baker St. It was"), since "U.S. Army" and "7 p.m. John" are one sentence.
    """
    m = _AFTER_ABBREVIATION.match(s, end)
    return "." if m and (m.group(1) is None or m.group(1) in _SENTENCE_STARTERS) else ""


def _next_is_name(s: str, end: int) -> bool:
    m = _NEXT_WORD.match(s, end)
    return m is not None and m.group(1) not in _SENTENCE_STARTERS


def _prev_is_name(s: str, start: int) -> bool:
    # A bounded look back: these run once per match and the text may be a whole chapter.
    return _PREV_WORD.search(s[max(0, start - 80):start]) is not None


def _title_or_street(title: str, street: str):
    """"St. Paul" -> Saint, "Baker St." -> Street (likewise Doctor / Drive)."""

    def sub(m: re.Match) -> str:
        s = m.string
        if _next_is_name(s, m.end()):
            return title
        if _prev_is_name(s, m.start()):
            return street + (_keep_period(s, m.end()) if m.group(0).endswith(".") else "")
        return title + (_keep_period(s, m.end()) if m.group(0).endswith(".") else "")

    return sub


_TITLES = {
    "Mrs": "Missus", "Mr": "Mister", "Ms": "Miz", "Prof": "Professor", "Rev": "Reverend",
    "Capt": "Captain", "Lt": "Lieutenant", "Col": "Colonel", "Sgt": "Sergeant", "Gen": "General",
    "Mt": "Mount", "Ft": "Fort", "Gov": "Governor", "Sen": "Senator", "Rep": "Representative",
}
# Titles are only expanded before a capitalized name; British style drops the period of the
# short ones ("Mr Smith"), while "Gen Z" or "Col" without one are not titles.
_TITLE = re.compile(r"\b(?:(Mrs|Mr|Ms)\b\.?|(" + "|".join(list(_TITLES)[3:]) + r")\.)(?=\s+[A-Z])")
_TRAILING = {"Jr": "Junior", "Sr": "Senior", "Ave": "Avenue", "Blvd": "Boulevard", "Rd": "Road"}
_TRAILING_RE = re.compile(r"\b(" + "|".join(_TRAILING) + r")\.")
_LATIN = [
    (re.compile(r"\be\.\s?g\.(?=\W|$)", re.I), "for example"),
    (re.compile(r"\bi\.\s?e\.(?=\W|$)", re.I), "that is"),
    (re.compile(r"\ba\.k\.a\.(?=\W|$)", re.I), "also known as"),
    (re.compile(r"\bcf\.(?=\s)"), "compare"),
    (re.compile(r"\bapprox\.(?=\s)", re.I), "approximately"),
    (re.compile(r"\bvs\b\.?"), "versus"),
]
_ETC = re.compile(r"\betc\.", re.I)
_NUMBER_SIGN = re.compile(r"\b(?:No|no|Nos|nos)\.\s?(?=\d)|#(?=\d)")
_INITIALISM = re.compile(r"\b((?:[A-Z]\.){2,})")


def _abbreviations(text: str) -> str:
    text = _TITLE.sub(lambda m: _TITLES[m.group(1) or m.group(2)], text)
    text = re.sub(r"\bSt\b\.?", _title_or_street("Saint", "Street"), text)
    text = re.sub(r"\bDr\b\.?", _title_or_street("Doctor", "Drive"), text)
    text = _TRAILING_RE.sub(lambda m: _TRAILING[m.group(1)] + _keep_period(m.string, m.end()), text)
    for pattern, spoken in _LATIN:
        text = pattern.sub(spoken, text)
    text = _ETC.sub(lambda m: "et cetera" + _keep_period(m.string, m.end()), text)
    text = _NUMBER_SIGN.sub("number ", text)
    # "U.S." -> "US": the phonemizer reads the periods of an initialism as sentence ends.
    return _INITIALISM.sub(
        lambda m: m.group(1).replace(".", "") + _keep_period(m.string, m.end()), text
    )


# --- roman numerals -----------------------------------------------------------------------

_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_ROMAN = r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_SMALL_ROMAN = r"X{0,3}(?:IX|IV|V?I{0,3})"


def roman_to_int(numeral: str) -> int:
    """Value of a valid roman numeral (either case); 0 if it is not one."""
    numeral = numeral.upper()
    if not numeral or not re.fullmatch(_ROMAN, numeral):
        return 0
    total = 0
    for i, ch in enumerate(numeral):
        value = _ROMAN_VALUES[ch]
        nxt = _ROMAN_VALUES[numeral[i + 1]] if i + 1 < len(numeral) else 0
        total += -value if value < nxt else value
    return total


_HEADING_WORDS = (
    "Chapter|Book|Part|Volume|Vol\\.|Act|Scene|Section|Canto|Appendix|Letter|Stave|Psalm|Lesson|Unit"
)
# The keyword must be capitalized so that "the part I liked" is left alone.
_HEADING_ROMAN = re.compile(
    r"\b((?:" + _HEADING_WORDS + r")|(?:" + _HEADING_WORDS.upper() + r"))\s+([IVXLCDM]+|[ivxlcdm]+)\b(?!')"
)
_REGNAL_TITLES = "King|Queen|Pope|Emperor|Empress|Tsar|Czar|Tsarina|Kaiser|Sultan|Prince|Princess|Duke|Saint"
_REGNAL = re.compile(
    r"\b(?:(" + _REGNAL_TITLES + r")\s+)?([A-Z][a-z]+)\s+(?=[IVX])(" + _SMALL_ROMAN + r")\b(?!-|'(?!s\b))"
)
# Names common enough with a single-letter numeral ("Henry V", "Pius X") to expand without a title.
_REGNAL_NAMES = frozenset(
    "Henry Edward George William Charles James Richard John Louis Philip Peter Frederick Napoleon "
    "Elizabeth Mary Anne Catherine Alexander Nicholas Ferdinand Francis Leo Pius Gregory Innocent "
    "Clement Benedict Boniface Urban Alfonso Carlos Juan Victor Ivan".split()
)
# Words whose numeral is a plain number ("World War II" -> "World War two").
_COUNTED = frozenset(
    "War Type Phase Class Stage Grade Level Mark Model Series Title Article Round Episode Season "
    "Apollo Gemini Vatican Rocky Star Wars Final Fantasy".split()
)


_AFTER_REGNAL_I = re.compile(r"\s*$|\s*[.,;:!?)]|\s+of\b|\s+and\b|'s\b")


def _roman_numerals(text: str) -> str:
    def heading(m: re.Match) -> str:
        value = roman_to_int(m.group(2))
        if not value:
            return m.group(0)
        keyword = "Volume" if m.group(1) in ("Vol.", "VOL.") else m.group(1)
        return f"{keyword} {num2words(value, lang='en')}"

    def regnal(m: re.Match) -> str:
        title, name, numeral = m.group(1), m.group(2), m.group(3)
        value = roman_to_int(numeral)
        if not value:
            return m.group(0)
        prefix = f"{title} {name}" if title else name
        if name in _COUNTED:
            return f"{prefix} {num2words(value, lang='en')}"
        if len(numeral) == 1 and not title:
            if name not in _REGNAL_NAMES:
                return m.group(0)
            # "Then James I went" is the pronoun; "Charles I of England", "Elizabeth I." are kings.
            if numeral == "I" and not _AFTER_REGNAL_I.match(m.string, m.end()):
                return m.group(0)
        ordinal = num2words(value, lang="en", to="ordinal")
        return f"{prefix} the {ordinal.capitalize()}"

    text = _HEADING_ROMAN.sub(heading, text)
    return _REGNAL.sub(regnal, text)


# --- numbers in context -----------------------------------------------------------------------

_INT = r"\d{1,3}(?:,\d{3})+|\d+"
_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan\\.|Feb\\.|Mar\\.|Apr\\.|Jun\\.|Jul\\.|Aug\\.|Sept?\\.|Oct\\.|Nov\\.|Dec\\."
)
_MONTH_NAMES = "January February March April May June July August September October November December".split()


def _iso_dates(text: str) -> str:
    def sub(m: re.Match) -> str:
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return m.group(0)
        return f"{_MONTH_NAMES[month - 1]} {_ordinal(str(day))}, {_year(year)}"

    return re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", sub, text)


def _phones(text: str) -> str:
    def sub(m: re.Match) -> str:
        return ", ".join(_digits(group) for group in m.group(0).split("-"))

    return re.sub(r"(?<![\d-])(?:\d{3}-)?[2-9]\d{2}-\d{4}\b(?!-)", sub, text)


_AMPM = r"(?:\s?([AaPp])\.?\s?[Mm]\b\.?)"
_CLOCK = re.compile(r"(?<![\d.:])(\d{1,2}):(\d{2})(?![:\d])" + _AMPM + "?")
_HOUR = re.compile(r"(?<![\d.:,])(\d{1,2})" + _AMPM)


def _times(text: str) -> str:
    def suffix(m: re.Match, group: int) -> str:
        if not m.group(group):
            return ""
        # "AM"/"PM" in capitals is what the phonemizer reads as letters, not as the word "am".
        period = "AM" if m.group(group).lower() == "a" else "PM"
        raw = m.group(0)
        return f" {period}" + (_keep_period(m.string, m.end()) if raw.endswith(".") else "")

    def clock(m: re.Match) -> str:
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour > 24 or minute > 59:
            return m.group(0)
        spoken = _cardinal(str(hour))
        if minute == 0:
            if not m.group(3):
                spoken += " o'clock" if 1 <= hour <= 12 else " hundred"
        elif minute < 10:
            spoken += f" oh {_cardinal(str(minute))}"
        else:
            spoken += f" {_cardinal(str(minute))}"
        return spoken + suffix(m, 3)

    def hour(m: re.Match) -> str:
        if not 1 <= int(m.group(1)) <= 12:
            return m.group(0)
        return _cardinal(m.group(1)) + suffix(m, 2)

    return _HOUR.sub(hour, _CLOCK.sub(clock, text))


_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_MONEY = re.compile(
    r"([$£€¥])\s?(" + _INT + r")(?:\.(\d+))?(?:\s?(thousand|million|billion|trillion)\b)?"
)


def _money(text: str) -> str:
    def sub(m: re.Match) -> str:
        one, many, sub_one, sub_many = _CURRENCIES[m.group(1)]
        whole, fraction, scale = m.group(2), m.group(3), m.group(4)
        if scale:
            return f"{_decimal(whole, fraction)} {scale} {many}"
        if fraction and len(fraction) > 2:
            return f"{_decimal(whole, fraction)} {many}"
        units = int(whole.replace(",", ""))
        cents = int(fraction.ljust(2, "0")) if fraction else 0
        main = f"{_cardinal(whole)} {one if units == 1 else many}"
        if not cents:
            return main
        small = f"{_cardinal(str(cents))} {sub_one if cents == 1 else sub_many}"
        return small if units == 0 else f"{main} and {small}"

    text = _MONEY.sub(sub, text)
    return re.sub(r"\b(\d+)\s?¢", lambda m: f"{_cardinal(m.group(1))} {'cent' if m.group(1) == '1' else 'cents'}", text)


def _percent(text: str) -> str:
    return re.sub(
        r"(?<!\d)(" + _INT + r")(?:\.(\d+))?\s?%",  # from a run's first digit only: linear
        lambda m: f"{_decimal(m.group(1), m.group(2))} percent",
        text,
    )


def _ordinals(text: str) -> str:
    text = re.sub(
        r"\b(" + _INT + r")(?:st|nd|rd|th)\b", lambda m: _ordinal(m.group(1)), text, flags=re.I
    )
    # A day after a month is said as an ordinal: "May 5" -> "May fifth".
    return re.sub(
        r"\b(" + _MONTHS + r") (\d{1,2})\b(?![:.,]\d)",
        lambda m: f"{m.group(1)} {_ordinal(m.group(2))}" if 1 <= int(m.group(2)) <= 31 else m.group(0),
        text,
    )


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _decades(text: str) -> str:
    def sub(m: re.Match) -> str:
        digits = m.group(1)
        spoken = _year(int(digits)) if _is_year(digits) else _cardinal(digits)
        return _plural(spoken)

    return re.sub(r"(?<![\w'])'?(\d{0,3}0)'?s\b", sub, text)


def _ranges(text: str) -> str:
    def sub(m: re.Match) -> str:
        first, second = m.group(1), m.group(2)
        if _is_year(first) and (_is_year(second) or len(second) == 2):
            return f"{_year(int(first))} to {_year(int(second)) if len(second) == 4 else _cardinal(second)}"
        return f"{_cardinal(first)} to {_cardinal(second)}"

    return re.sub(r"(?<![\w.,-])(\d{1,4})\s?-\s?(\d{1,4})(?![\w.,]?\d|-)", sub, text)


_FRACTIONS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _fractions(text: str) -> str:
    def sub(m: re.Match) -> str:
        top, bottom = int(m.group(1)), int(m.group(2))
        if not (0 < top < bottom <= 10):
            return m.group(0)
        one, many = _FRACTIONS.get(bottom) or (
            num2words(bottom, lang="en", to="ordinal"),
            num2words(bottom, lang="en", to="ordinal") + "s",
        )
        return f"{_cardinal(str(top))} {one if top == 1 else many}"

    return re.sub(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])", sub, text)


_YEAR_BEFORE = re.compile(
    r"(?:\b(?:in|In|since|Since|until|Until|till|during|During|from|From|circa|c\.|ca\.|year|Year|AD|A\.D\.)"
    r"|\b(?:spring|summer|autumn|fall|winter|year|class) of"
    r"|\b(?:" + _MONTHS + r")(?:\s+(?:\d{1,2}|[a-z]+(?:-[a-z]+)?),?)?"
    r"|\b(?:1[1-9]|20)\d\d\s*(?:to|and|or|through|until|till|-))\s*$"
)
_YEAR_AFTER = re.compile(r"\s*(?:AD|A\.D\.|BC|B\.C\.|BCE|CE)\b")
_NUMBER = re.compile(r"(?<![\d.])(" + _INT + r")(?:\.(\d+))?(?!\d)|(?<![\w.])\.(\d+)\b")


def _numbers(text: str) -> str:
    # Dotted version numbers ("1.2.3") before decimals, so each dot is read as "point".
    text = re.sub(
        r"\b\d+(?:\.\d+){2,}\b",
        lambda m: " point ".join(_cardinal(p) for p in m.group(0).split(".")),
        text,
    )
    text = re.sub(r"(?:(?<=\s)|^)-(?=\d)", "minus ", text)

    def sub(m: re.Match) -> str:
        s = m.string
        whole, fraction = m.group(1), m.group(2)
        if whole is None:
            spoken = _decimal("", m.group(3))
        elif fraction is None and _is_year(whole) and _year_context(s, m.start(), m.end()):
            spoken = _year(int(whole))
        else:
            spoken = _decimal(whole, fraction)
        # Keep words apart from letters they were glued to ("MP3" -> "MP three").
        if m.start() and s[m.start() - 1].isalpha():
            spoken = " " + spoken
        if m.end() < len(s) and s[m.end()].isalpha():
            spoken += " "
        return spoken

    text = _NUMBER.sub(sub, text)
    # Whatever digits no pattern claimed ("v.2", "1,2,3") are still read, never left as digits.
    return re.sub(r"\d+", lambda m: f" {_cardinal(m.group(0))} ", text)


_YEAR_ALONE_END = re.compile(r"[.!?]?\s*")


def _year_context(s: str, start: int, end: int) -> bool:
    if _YEAR_BEFORE.search(s[max(0, start - 40):start]) or _YEAR_AFTER.match(s, end):
        return True
    # A year standing alone as the whole sentence: "1984."
    return start < 16 and not s[:start].strip() and _YEAR_ALONE_END.fullmatch(s, end) is not None


def _degrees(text: str) -> str:
    def sub(m: re.Match) -> str:
        scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m.group(2) or "", "")
        return f"{m.group(1)} degrees{scale}"

    return re.sub(r"(?<!\d)(-?\d+(?:\.\d+)?)\s?°\s?([CF]\b)?", sub, text)


# --- tidy -----------------------------------------------------------------------------------


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    text = re.sub(r"\s*,\s*([.!?;:])", r"\1", text)  # a dash before a full stop
    text = re.sub(r'(^|\s)(["(])\s*,\s*', r"\1\2", text)  # a dash right after an opening quote
    return re.sub(r"\s+([,.;:!?])(?=\s|$)", r"\1", text)


_RULES = (
    _typography,
    _abbreviations,
    _roman_numerals,
    _iso_dates,
    _phones,
    _times,
    _money,
    _percent,
    _degrees,
    _fractions,
    _ordinals,
    _decades,
    _ranges,
    _numbers,
    _tidy,
)
