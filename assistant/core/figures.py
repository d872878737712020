"""What counts as a figure: the salient spans of a sentence, the figures a text states, and how two
spellings of one figure compare. Content points, pairs, gates, the generated test set and the
key-fact metric all read figures here, so training and evaluation agree on what a fact is.

    python -m assistant.core.figures "Book at least 14 days ahead; over $2,500 the CFO approves."
"""
from __future__ import annotations

import re

NUMBER = r"\d(?:[\d,]*\d)?(?:\.\d+)?"                # 12 | 1,500 | 0.5; never the comma after it

_WORD = r"[A-Z][a-z][\w'&]*(?:-[A-Z][a-z][\w'&]*)*"    # a capitalised word, hyphenated parts too

# Checked in this order; an earlier kind wins where two overlap ("$25" is money, not a number).
SPAN_PATTERNS: tuple[tuple[str, re.Pattern], ...] = tuple((kind, re.compile(pattern)) for kind, pattern in (
    ("email", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("phone", r"\+\d[\d ]{7,}\d"),
    ("money", rf"(?:[$€£]\s?{NUMBER}|\b(?:USD|EUR|CAD|GBP|CHF)\s?{NUMBER})(?:\s?(?:million|billion|k)\b)?"
              rf"|\b{NUMBER}\s?(?:USD|EUR|GBP|CAD|CHF|dollars|euros)\b"),
    ("percent", r"\b\d+(?:\.\d+)?\s?(?:%|percent\b)"),
    ("date", r"\b\d{1,2}\s(?:January|February|March|April|May|June|July|August|September|October|November|December)"
             r"(?:\s\d{4})?\b|\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"),
    ("time", r"\b\d{1,2}:\d{2}\b"),
    ("duration", r"\b\d+(?:\.\d+)?(?:-|\s)(?:business |working |calendar )?(?:days?|weeks?|months?|years?|hours?|minutes?|nights?)\b"),
    ("code", r"\b(?:[A-Z]{2,}[A-Z0-9]*-?\d[\w-]*|WD[+-]?\d+)\b"),
    ("number", rf"(?<!/)\b{NUMBER}\b(?!/)"),
    # A whole run of capitalised words ("Bank of Halvard", "Tobias Ferreira-Lund"); one that opens a sentence
    # is capitalised for grammar and is dropped whole (find_spans), never trimmed to "Leave Oregon".
    ("name", rf"(?<![\w'&-]){_WORD}(?: (?:(?:of|and|for|the) )?{_WORD}){{1,3}}\b"),
))
FIGURE_KINDS = frozenset({"email", "phone", "money", "percent", "date", "time", "duration", "code", "number"})

# A capitalised name right after a role word is a person ("Controller Tobias Ferreira-Lund");
# other capitalised names are systems, banks or places ("Halvard Online").
ROLE_WORDS = re.compile(r"\b(CFO|CEO|VP|Controller|Manager|Lead|Director|coordinator|Coordinator|owner|Owner|Head of "
                        r"[A-Z]\w+(?: [A-Z]\w+)?|Treasurer|Librarian|Officer|Chair|Secretary|Analyst|Specialist|"
                        r"Accountant|contact|Contact)\s*,?\s*$")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")
_CITATION = re.compile(r"\[\d+\]")


def find_span_matches(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, span) of each salient span, in reading order."""
    taken: list[tuple[int, int, str, str]] = []
    for kind, pattern in SPAN_PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < t_end and t_start < end for t_start, t_end, _, _ in taken):
                continue
            if kind == "name":
                if _SENTENCE_START.search(text[:start]):
                    continue
                if ROLE_WORDS.search(text[:start]):
                    kind = "person"
            taken.append((start, end, kind, match.group(0)))
    return sorted(taken)


def find_spans(text: str) -> list[tuple[str, str]]:
    """(kind, span) of each salient span, in reading order: figures, codes, e-mails, names, persons."""
    return [(kind, span) for _, _, kind, span in find_span_matches(text)]


def stated_figures(text: str) -> list[str]:
    """The figures, codes and addresses a text states (citations "[2]" left out), in reading order."""
    return [span for kind, span in find_spans(_CITATION.sub(" ", text)) if kind in FIGURE_KINDS]


def numbers(text: str) -> set[str]:
    """Every number in a text, thousands separators dropped ("1,500" and "1500" are one number)."""
    return {n.replace(",", "") for n in re.findall(NUMBER, text)}


# --- comparing two spellings of a fact ------------------------------------------------------
_NUMBER_WORDS = {w: str(n) for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TRAILING_CENTS = re.compile(r"(?<=\d)\.0+\b")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")


def fact_tokens(text: str) -> list[str]:
    """Words and numbers, normalised so that surface differences do not count.

    Case, hyphens, dashes, slashes and spaces are equivalent ("6-week" = "6 weeks"); a plural
    `s` is dropped from words of four letters or more; thousands separators, currency symbols and
    zero cents go ("$1,500.00" = "1500"); "%" reads as "percent"; zero to twelve in words are digits.
    Numbers stay whole tokens, so matching on tokens puts every match on word boundaries."""
    text = _TRAILING_CENTS.sub("", _THOUSANDS.sub("", text.lower())).replace("%", " percent ")
    tokens = []
    for token in _TOKEN.findall(text):
        token = _NUMBER_WORDS.get(token, token)
        if len(token) >= 4 and token.endswith("s") and not token.endswith("ss") and token.isalpha():
            token = token[:-1]
        tokens.append(token)
    return tokens


def contains_fact(answer: str, fact: str) -> bool:
    """True when the fact's tokens occur, in order and adjacent, among the answer's tokens."""
    needle, haystack = fact_tokens(fact), fact_tokens(answer)
    if not needle:
        return False
    width = len(needle)
    return any(haystack[i:i + width] == needle for i in range(len(haystack) - width + 1))


if __name__ == "__main__":
    import sys

    sentence = " ".join(sys.argv[1:])
    print(f"spans:   {find_spans(sentence)}\nfigures: {stated_figures(sentence)}\nnumbers: {sorted(numbers(sentence))}")
