"""Rekognition's contract: botocore's service model (``rekognition/2016-06-27/service-2.json``) as data.

This module owns reading the model: it is loaded from the installed botocore once,
and every limit and pattern Visage checks is read from it rather than copied. The
wire codec (:mod:`visage.api.protocol`) validates each request against the whole
model; the layers below read the few constraints they re-check through
:func:`shape_pattern` and :func:`shape_max`.

The model's regular expressions are Java-flavoured and unanchored;
:func:`compile_pattern` translates them for Python's ``re`` (to be used with
``fullmatch``).
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Mapping
from typing import Any

Shape = Mapping[str, Any]


@functools.cache
def definition() -> Mapping[str, Any]:
    """The whole Rekognition service model from the installed botocore, loaded once."""
    import botocore.loaders  # here, so that importing Visage does not pay for botocore

    return botocore.loaders.Loader().load_service_model("rekognition", "service-2")


def shape(name: str) -> Shape:
    """The model's shape called ``name`` (``"CollectionId"``, ``"TagMap"``)."""
    return definition()["shapes"][name]


def shape_pattern(name: str) -> re.Pattern[str]:
    """The pattern of the string shape ``name``, compiled (match with ``fullmatch``)."""
    return compile_pattern(shape(name)["pattern"])


def shape_max(name: str) -> int:
    """The ``max`` of shape ``name``: a string's or blob's length, a list's or map's size, a number's value."""
    return int(shape(name)["max"])


# Java regular expressions ----------------------------------------------------------------

_UNICODE_PROPERTY = re.compile(r"\\p\{(\w+)\}")


@functools.cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a model pattern (Java syntax) for Python's ``re``.

    The only Java feature the model uses that ``re`` lacks is ``\\p{Category}``;
    it becomes the explicit ranges of that Unicode general category.
    """
    parts: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        match = _UNICODE_PROPERTY.match(pattern, i)
        if match:
            ranges = _category_ranges(match.group(1))
            parts.append(ranges if in_class else f"[{ranges}]")
            i = match.end()
            continue
        char = pattern[i]
        if char == "\\":
            parts.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        parts.append(char)
        i += 1
    return re.compile("".join(parts))


@functools.cache
def _category_ranges(category: str) -> str:
    """Character-class ranges (``\\Ua-\\Ub...``) of a Unicode general category (``L``, ``Lu``)."""
    runs = _category_runs()
    ends = [start - 1 for start, _ in runs[1:]] + [sys.maxunicode]
    ranges = [f"\\U{start:08x}-\\U{end:08x}" for (start, name), end in zip(runs, ends) if name.startswith(category)]
    if not ranges:
        raise ValueError(f"\\p{{{category}}} is not a Unicode general category")
    return "".join(ranges)


@functools.cache
def _category_runs() -> list[tuple[int, str]]:
    """``(first code point, category)`` for each run of code points sharing a category."""
    runs: list[tuple[int, str]] = []
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if not runs or runs[-1][1] != category:
            runs.append((code, category))
    return runs
