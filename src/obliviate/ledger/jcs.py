"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

Audit leaves and receipts are hashed and signed, so their JSON must serialise the same way
everywhere. RFC 8785 (Rundgren, Jordan, Erdtman, 2020) fixes the three things plain
``json.dumps(sort_keys=True)`` leaves open:

* object members are sorted by the UTF-16 code units of their names (not by code point);
* numbers are IEEE-754 doubles written as ECMAScript ``Number.prototype.toString`` writes
  them (shortest round-tripping digits, exponent only below 1e-6 or from 1e21 on);
* strings escape only ``"``, ``\\`` and control characters below U+0020 (``\\b \\f \\n \\r
  \\t`` in short form, the rest as lowercase ``\\u00xx``); everything else is raw UTF-8.

Integers are written exactly when they are safe (|n| < 2**53); larger ones would silently
lose precision in any JSON reader, so they are refused rather than rounded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from obliviate.ledger.errors import LedgerError

__all__ = ["MAX_SAFE_INTEGER", "canonicalize", "format_number"]

MAX_SAFE_INTEGER = 2**53 - 1
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _string(value: str) -> str:
    # Fast path (C-level checks): printable ASCII without quote or backslash needs no escape.
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"'


def _sorted_names(names: list[str]) -> list[str]:
    # Code-point order equals UTF-16 code-unit order unless supplementary characters meet
    # U+E000..U+FFFF; ASCII names (the usual case) can use the plain sort.
    if all(name.isascii() for name in names):
        return sorted(names)
    return sorted(names, key=lambda name: name.encode("utf-16-be", "surrogatepass"))


def format_number(value: float) -> str:
    """A finite double as ECMAScript's ``Number.prototype.toString`` writes it.

    Python's ``repr`` already yields the shortest digits that round-trip (and the closest
    of them), which is what ECMA-262 asks for; only the layout differs, so the digits and
    the decimal exponent are taken from ``repr`` and laid out by the ECMAScript rules.

    Raises:
        LedgerError: ``value`` is NaN or infinite (not representable in JSON).
    """
    if not math.isfinite(value):
        raise LedgerError(f"RFC 8785 JSON has no representation for {value!r}.")
    if value == 0:
        return "0"  # also for -0.0
    if value < 0:
        return "-" + format_number(-value)
    mantissa, _, exp_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value = 0.digits * 10**point, before stripping leading zeros.
    point = len(whole) + (int(exp_text) if exp_text else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits[0] if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exponent)}"


def _encode(value: Any, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif kind is int:
        _integer(value, out)
    elif kind is dict or (kind is not str and isinstance(value, Mapping)):
        _object(value, out)
    elif kind is list or kind is tuple:
        _array(value, out)
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(str(value)))
    elif isinstance(value, int):
        _integer(int(value), out)
    elif isinstance(value, float):
        out.append(format_number(float(value)))
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        _array(value, out)
    else:
        raise LedgerError(
            f"cannot put a {type(value).__name__} into canonical JSON; use dicts, lists, "
            "strings, numbers, booleans and None."
        )


def _integer(value: int, out: list[str]) -> None:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        out.append(str(value))
        return
    raise LedgerError(
        f"integer {value} is outside the range JSON numbers hold exactly "
        f"(|n| <= {MAX_SAFE_INTEGER}); store it as a string."
    )


def _object(value: Mapping[Any, Any], out: list[str]) -> None:
    names = list(value)
    for name in names:
        if type(name) is not str:
            raise LedgerError(f"JSON object names must be strings; got {name!r}.")
    out.append("{")
    first = True
    for name in _sorted_names(names):
        if not first:
            out.append(",")
        first = False
        out.append(_string(name))
        out.append(":")
        _encode(value[name], out)
    out.append("}")


def _array(value: Sequence[Any], out: list[str]) -> None:
    out.append("[")
    first = True
    for item in value:
        if not first:
            out.append(",")
        first = False
        _encode(item, out)
    out.append("]")


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-compatible Python value.

    Args:
        value: ``None``, ``bool``, ``int``, ``float``, ``str``, a mapping with string keys,
            or a list/tuple of those.

    Raises:
        LedgerError: a value JSON cannot hold (NaN, bytes, an unsafe integer, a lone
            surrogate in a string).

    Example:
        >>> canonicalize({"b": [1.0, 1e21, "\\u20ac"], "a": None})
        b'{"a":null,"b":[1,1e+21,"\\xe2\\x82\\xac"]}'
    """
    out: list[str] = []
    _encode(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LedgerError(
            f"string contains a lone surrogate at position {exc.start}; RFC 8785 needs "
            "valid Unicode."
        ) from None
