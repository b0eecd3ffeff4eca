"""RFC 8785 canonical JSON: the RFC's examples, Appendix B numbers, and refusals."""

from __future__ import annotations

import json
import struct

import pytest

from obliviate.ledger.errors import LedgerError
from obliviate.ledger.jcs import canonicalize, format_number

# RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(bits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert format_number(value) == expected
    assert canonicalize([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(LedgerError, match="no representation"):
        canonicalize(struct.unpack(">d", bytes.fromhex(bits))[0])


def test_rfc_section_3_2_2_example() -> None:
    # RFC 8785 §3.2.2 input, written as JSON text and parsed.
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(json.loads(text)) == expected.encode()


def test_rfc_section_3_2_3_sorting_by_utf16_code_units() -> None:
    data = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonicalize(data)))
    # The emoji (surrogates D83D DE00) sorts before U+FB33 in UTF-16, after it by code point.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonicalize(data).startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80"')


def test_escaping_and_raw_unicode() -> None:
    assert canonicalize("\x00\x1f\x7f\u2028") == b'"\\u0000\\u001f\x7f\xe2\x80\xa8"'
    assert canonicalize('\b\f\n\r\t"\\/') == b'"\\b\\f\\n\\r\\t\\"\\\\/"'


def test_integers_and_nesting() -> None:
    assert canonicalize({"b": [1, -0.0, 2.0, True], "a": {"z": None}}) == (
        b'{"a":{"z":null},"b":[1,0,2,true]}'
    )
    assert canonicalize(2**53 - 1) == b"9007199254740991"
    with pytest.raises(LedgerError, match="outside the range"):
        canonicalize(2**53)


@pytest.mark.parametrize(
    ("value", "message"),
    [({1: "x"}, "names must be strings"), (b"raw", "cannot put a bytes"), ("\ud800", "surrogate")],
)
def test_values_json_cannot_hold_are_refused(value: object, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        canonicalize(value)
