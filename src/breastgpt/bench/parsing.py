"""Strict parsing of closed-ended (multiple-choice) answers and of grounding boxes.

The parser returns an option index only when the response commits to exactly one option in a recognised form;
everything else is `None` (scored wrong, counted unparseable). It never picks the "nearest" option.

Recognised forms (letters A-F, upper case inside text so the article "a" is never read as option A):
  whole response is a letter: "B", "b", "(B)", "B.", "**B**", "\\boxed{B}";
  an answer statement: "Answer: B", "Final answer - (B)", "The answer is B", "The correct option is **B**";
  "\\boxed{B}", "(B)", "**B**", "Option B" / "choice B", "B is correct", a leading "B." / "B)" / "B:";
  the exact text of one option (case/punctuation-insensitive), alone or inside a sentence when exactly one
  option's text appears.
Refused: several different letters ("B or C", "(B) ... (C)"), a negated option ("not B", "B is incorrect",
"not malignant"), the texts of two options, a letter outside the option range, a letter whose following text names
a different option ("B. Benign" when B is "Malignant").

Scope: when the response contains an answer statement ("answer is/:") or a \\boxed{}, only those sentences are
read, so a chain of thought that discusses other options before "Answer: B" still parses. Reasoning in
`<think>...</think>` is dropped; an unclosed `<think>` means no answer was given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from breastgpt.bench.items import OPTION_LETTERS

_L = "A-F"
_MARKER = re.compile(r"(?i)(?:\b(?:final\s+|correct\s+|best\s+)?answer\b[^\n.:]{0,20}?(?:\bis\b|\bwould\s+be\b|:|-)"
                     r"|\bcorrect\s+(?:option|choice)\s+is\b|\\boxed\{)")
_LETTER_PATTERNS = [
    re.compile(r"(?i:answer\b[^\n.:]{0,20}?(?:\bis\b|\bwould\s+be\b|:|-))\s*[\(\[*]*\s*([" + _L + r"])(?![A-Za-z0-9])"),
    # lower case only where nothing can follow it: "answer: c" / "answer: (c)." but not "answer: a mass"
    re.compile(r"(?i:answer\b[^\n.:]{0,20}?(?:\bis\b|:|-))\s*[\(\[*]*\s*([a-f])\s*[\)\]*]*\s*[.!]?\s*(?:$|\n)"),
    re.compile(r"(?i:correct\s+(?:option|choice)\s+is)\s*[\(\[*]*\s*([" + _L + r"])(?![A-Za-z0-9])"),
    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*([" + _L + r"])\s*\}?\s*\}"),
    re.compile(r"\(([" + _L + r"])\)"),
    re.compile(r"\[([" + _L + r"])\]"),
    re.compile(r"\*\*\s*\(?([" + _L + r"])\)?[.:]?\s*\*\*"),
    re.compile(r"(?i:\b(?:option|choice))\s+\(?([" + _L + r"])(?![A-Za-z0-9])"),
    re.compile(r"(?<![A-Za-z0-9])([" + _L + r"])\)?\s+is\s+(?:the\s+)?(?:correct|right|best)\b"),
    re.compile(r"(?m)^\s*([" + _L + r"])(?:[.):]|$)(?=\s|$)"),
]
# "B or C", "B and C", "B/C", "A, B": a committed answer never lists letters.
_LETTER_LIST = re.compile(r"(?<![A-Za-z0-9])\(?([" + _L + r"])\)?\s*(?:,|/|&|\bor\b|\band\b)\s*\(?([" + _L +
                          r"])\)?(?![A-Za-z0-9])")
_LETTER_NEGATIONS = [
    re.compile(r"(?i:\b(?:not|isn't|isnt|except|exclude|excluding|rule\s+out|eliminate|never))\s+"
               r"(?i:option\s+|choice\s+)?[\(\[*]*([" + _L + r"])(?![A-Za-z0-9])"),
    re.compile(r"(?<![A-Za-z0-9])[\(\[*]*([" + _L + r"])[\)\]*]*\s+(?i:is|was|would\s+be|seems)\s+"
               r"(?i:not\b|incorrect|wrong|unlikely|excluded|ruled\s+out|false)"),
]
_TEXT_NEG_BEFORE = {"not", "no", "non", "isnt", "without", "excluding", "exclude", "except", "than", "never",
                    "nor", "neither", "unlikely"}
_TEXT_NEG_AFTER = re.compile(r"^\s*(?:is|are|was|seems|would be)\s+(?:not\b|incorrect|wrong|unlikely|excluded|"
                             r"ruled out|false)")
_WHOLE_LETTER = re.compile(r"^[\(\[]?([A-Fa-f])[\)\]]?[.:]?$")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")
_THINK = re.compile(r"(?is)<think>.*?</think>")


@dataclass(frozen=True)
class ChoiceParse:
    """Outcome of parsing one closed-ended response: `index` is None unless status is 'letter' or 'text'."""

    index: int | None
    status: str  # letter | text | empty | unparseable | ambiguous | negated | out_of_range


def parse_choice(response: str, options: list[str] | tuple[str, ...]) -> int | None:
    """The chosen option index, or None when the response does not commit to exactly one option."""
    return parse_choice_detailed(response, options).index


def parse_choice_detailed(response: str, options: list[str] | tuple[str, ...]) -> ChoiceParse:
    if not 2 <= len(options) <= len(OPTION_LETTERS):
        raise ValueError(f"closed questions need 2-{len(OPTION_LETTERS)} options, got {len(options)}")
    text = _strip_reasoning(response or "")
    if not text.strip():
        return ChoiceParse(None, "empty")
    whole = _whole_letter(text)
    if whole is not None:
        return _in_range(whole, len(options))
    scope = _answer_scope(text)
    letters = _letters(scope)
    if _negated_letters(scope):
        return ChoiceParse(None, "negated")
    if len(letters) > 1:
        return ChoiceParse(None, "ambiguous")
    if len(letters) == 1:
        (letter,) = letters
        result = _in_range(letter, len(options))
        if result.index is not None and _letter_text_conflict(text, letter, options):
            return ChoiceParse(None, "ambiguous")
        return result
    return _match_option_text(scope, options)


def _strip_reasoning(text: str) -> str:
    text = _THINK.sub(" ", text)
    if re.search(r"(?i)<think>", text):
        return ""
    return text


def _whole_letter(text: str) -> str | None:
    core = re.sub(r"[*_`\s]", "", text)
    core = re.sub(r"^\\boxed\{(.*)\}$", r"\1", core)
    m = _WHOLE_LETTER.match(core)
    return m.group(1).upper() if m else None


def _in_range(letter: str, n_options: int) -> ChoiceParse:
    idx = OPTION_LETTERS.index(letter)
    return ChoiceParse(idx, "letter") if idx < n_options else ChoiceParse(None, "out_of_range")


def _answer_scope(text: str) -> str:
    """The sentences holding an answer statement or \\boxed{}, or the whole text when there are none."""
    parts = []
    for m in _MARKER.finditer(text):
        end = _sentence_end(text, m.end())
        parts.append(text[m.start():end])
    return "\n".join(parts) if parts else text


def _sentence_end(text: str, start: int) -> int:
    m = _SENTENCE_END.search(text, start)
    return len(text) if m is None else m.end()


def _letters(scope: str) -> set[str]:
    found = {m.group(1).upper() for pat in _LETTER_PATTERNS for m in pat.finditer(scope)}
    for m in _LETTER_LIST.finditer(scope):
        if found & {m.group(1), m.group(2)}:
            found |= {m.group(1), m.group(2)}
    return found


def _negated_letters(scope: str) -> set[str]:
    return {m.group(1) for pat in _LETTER_NEGATIONS for m in pat.finditer(scope)}


def _letter_text_conflict(text: str, letter: str, options: list[str] | tuple[str, ...]) -> bool:
    """True when the words right after the letter are another option's text (and not this option's)."""
    idx = OPTION_LETTERS.index(letter)
    for m in re.finditer(r"(?<![A-Za-z0-9])" + letter + r"(?![A-Za-z0-9])[\)\].:*\s-]*", text):
        after = normalise_text(text[m.end():m.end() + 200])
        if not after:
            continue
        own = normalise_text(options[idx])
        if own and (after == own or after.startswith(own + " ")):
            continue
        for j, opt in enumerate(options):
            norm = normalise_text(opt)
            if j != idx and norm and (after == norm or after.startswith(norm + " ")):
                return True
    return False


def normalise_text(text: str) -> str:
    """Lower case, punctuation to spaces, collapsed whitespace: the form option texts are compared in."""
    text = text.lower().replace("'", "")
    return " ".join(re.sub(r"[^0-9a-z\u00c0-\uffff]+", " ", text).split())


def _match_option_text(scope: str, options: list[str] | tuple[str, ...]) -> ChoiceParse:
    norm = normalise_text(scope)
    norms = [normalise_text(o) for o in options]
    for i, o in enumerate(norms):
        if o and norm == o:
            return ChoiceParse(i, "text")
    spans = _option_spans(norm, norms)
    if not spans:
        return ChoiceParse(None, "unparseable")
    if any(_text_negated(norm, s, e) for _, s, e in spans):
        return ChoiceParse(None, "negated")
    chosen = {i for i, _, _ in spans}
    if len(chosen) > 1:
        return ChoiceParse(None, "ambiguous")
    return ChoiceParse(chosen.pop(), "text")


def _option_spans(norm: str, norms: list[str]) -> list[tuple[int, int, int]]:
    """(option, start, end) of every whole-word occurrence, minus those inside a longer option's occurrence
    (so "mass" does not also count when "mass with calcifications" is the option named)."""
    spans = []
    for i, o in enumerate(norms):
        if not o:
            continue
        for m in re.finditer(r"(?<![0-9a-z])" + re.escape(o) + r"(?![0-9a-z])", norm):
            spans.append((i, m.start(), m.end()))
    return [(i, s, e) for i, s, e in spans
            if not any((s2 <= s and e <= e2) and (e2 - s2) > (e - s) for _, s2, e2 in spans)]


def _text_negated(norm: str, start: int, end: int) -> bool:
    before = norm[:start].split()[-3:]
    if any(w in _TEXT_NEG_BEFORE for w in before[-2:]) or before[-2:] == ["rule", "out"] or before[-3:-1] == [
            "rather", "than"] or before[-2:] == ["instead", "of"]:
        return True
    return bool(_TEXT_NEG_AFTER.match(norm[end:]))


# ----------------------------------------------------------------------------------------------- grounding boxes

_BOX = re.compile(r"\[\s*(-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3}(?:\s*,\s*-?\d+(?:\.\d+)?){0,2})\s*\]")


@dataclass(frozen=True)
class BoxParse:
    box: tuple[float, ...] | None
    status: str  # ok | none | ambiguous | invalid


def parse_box(response: str, dims: int = 2) -> BoxParse:
    """The one box in the response as [x1,y1,x2,y2] (dims=2) or [x1,y1,x2,y2,z1,z2] (dims=3) on the 0-1000 grid.

    Several different boxes are ambiguous; repeats of one box are fine. A box with coordinates outside 0-1000 or
    with x1 > x2 (etc.) is invalid: the grid is part of the task, so it is not clipped or reordered.
    """
    want = 4 if dims == 2 else 6
    found: list[tuple[float, ...]] = []
    for m in _BOX.finditer(_strip_reasoning(response or "")):
        vals = tuple(float(v) for v in m.group(1).split(","))
        if len(vals) == want and vals not in found:
            found.append(vals)
    if not found:
        return BoxParse(None, "none")
    if len(found) > 1:
        return BoxParse(None, "ambiguous")
    box = found[0]
    ordered = box[0] <= box[2] and box[1] <= box[3] and (dims == 2 or box[4] <= box[5])
    if not ordered or not all(0 <= v <= 1000 for v in box):
        return BoxParse(None, "invalid")
    return BoxParse(box, "ok")
