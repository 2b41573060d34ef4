"""Command-line output as words: what a test asserts must not depend on the terminal's width.

Rich lays help, panels and tables out to the terminal's width (COLUMNS), breaking lines between words and drawing
borders; `words` removes the borders and joins the lines, so "not a medical device" is found however it wrapped.
"""

from __future__ import annotations

import re

_BOX = re.compile(r"[\u2500-\u257f]")


def words(output: str) -> str:
    return " ".join(_BOX.sub(" ", output).split())
