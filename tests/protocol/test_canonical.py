"""RFC 8785 canonical JSON and strict parsing of untrusted JSON."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coral.protocol.canonical import canonical_json, parse_json
from coral.protocol.errors import InvalidUtf8, MalformedJson, NonCanonicalNumber, TooDeep

# The example from RFC 8785 section 3.2.2 / the reference implementation's README.
RFC_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_rfc8785_example_vector():
    assert canonical_json(json.loads(RFC_INPUT)).decode() == RFC_OUTPUT


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-0.0, "0"), (1e30, "1e+30"), (4.50, "4.5"), (2e-3, "0.002"), (1e-27, "1e-27"), (1.0, "1")],
)
def test_number_serialization_follows_ecmascript(value, expected):
    assert canonical_json(value).decode() == expected


def test_keys_sort_by_utf16_code_units():
    # U+1F600 (surrogate pair D83D DE00) sorts before U+FB01 in UTF-16 order.
    value = {"\ufb01": 1, "\U0001f600": 2, "a": 3}
    assert canonical_json(value).decode() == '{"a":3,"\U0001f600":2,"\ufb01":1}'


def test_integers_beyond_ieee_exact_range_are_refused():
    with pytest.raises(NonCanonicalNumber):
        canonical_json(2**53 + 1)


def test_nan_is_refused():
    with pytest.raises(NonCanonicalNumber):
        canonical_json(math.nan)


def test_duplicate_keys_are_refused():
    with pytest.raises(MalformedJson, match="duplicate"):
        parse_json('{"a": 1, "a": 2}')


def test_excessive_nesting_is_refused_before_parsing():
    with pytest.raises(TooDeep):
        parse_json("[" * 100_000 + "]" * 100_000, max_depth=32)


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert parse_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', max_depth=3)


def test_invalid_utf8_is_refused():
    with pytest.raises(InvalidUtf8):
        parse_json(b'{"a": "\xff\xfe"}')


def test_lone_surrogate_escape_is_refused():
    with pytest.raises(InvalidUtf8):
        parse_json('{"a": "\\ud800"}')


def test_malformed_json_reports_position():
    with pytest.raises(MalformedJson, match="line 1"):
        parse_json('{"a": }')


def test_nan_literal_is_refused():
    with pytest.raises(NonCanonicalNumber):
        parse_json('{"a": NaN}')


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    # Integral floats at or above 2**53 canonicalize to integer text, which I-JSON
    # cannot carry exactly; they are a documented JCS edge, not a codec bug.
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f.is_integer() and abs(f) >= 2**53)
    )
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",))), children, max_size=4
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_is_a_fixed_point(value):
    once = canonical_json(value)
    assert canonical_json(parse_json(once)) == once


@given(json_values)
def test_canonical_form_ignores_key_order(value):
    if isinstance(value, dict):
        reordered = dict(reversed(list(value.items())))
        assert canonical_json(reordered) == canonical_json(value)
    else:
        assert canonical_json([value]) == b"[" + canonical_json(value) + b"]"


@given(json_values)
def test_fast_path_agrees_with_the_reference_implementation(value):
    import rfc8785

    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        return
    assert canonical_json(value) == expected


@given(st.dictionaries(st.text(max_size=3), st.integers(-(2**53) + 1, 2**53 - 1), max_size=6))
def test_fast_path_key_order_matches_utf16_order(value):
    import rfc8785

    assert canonical_json(value) == rfc8785.dumps(value)
