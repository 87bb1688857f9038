"""JSON from peers within limits: deep nesting and huge numbers are refused, naming where."""

from __future__ import annotations

import pytest

from agentkit.bounded_json import MAX_DEPTH, JsonLimitError, check, loads


def refusal(text: str) -> str:
    with pytest.raises(JsonLimitError) as info:
        loads(text)
    return str(info.value)


def test_deep_nesting_is_refused_naming_the_top_level_field() -> None:
    assert refusal("[" * 100_000 + "]" * 100_000) == "the body nests deeper than 32 levels"
    deep_object = '{"a": ' * 100_000 + "1" + "}" * 100_000
    assert refusal(deep_object) == "field 'a' nests deeper than 32 levels"
    within_stack = '{"k": "x", "spec": ' + "[" * 100 + "]" * 100 + "}"
    assert refusal(within_stack) == "field 'spec' nests deeper than 32 levels"
    tricky_key = '{"a\\"[": ' + "[" * 5000 + "]" * 5000 + "}"
    assert refusal(tricky_key) == "field 'a\"[' nests deeper than 32 levels"
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(at_limit) is not None


def test_huge_and_non_finite_numbers_are_refused_naming_the_field() -> None:
    assert refusal('{"limit": ' + "9" * 5000 + "}") == (
        "field 'limit' is a number of 5000 characters;"
        " a number may have at most 40 characters and must be finite"
    )
    assert refusal('{"a": [0, {"b": 1e999}]}').startswith("field 'a[1].b' is 1e999, not a finite")
    assert refusal('{"a": NaN}').startswith("field 'a' is NaN, not a finite number")
    assert refusal("-Infinity").startswith("the body is -Infinity")
    assert loads('{"size": 9223372036854775807, "ratio": -1.5e-3}') == {
        "size": 9223372036854775807,
        "ratio": -1.5e-3,
    }


def test_check_applies_the_same_limits_to_python_values() -> None:
    deep: list = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(JsonLimitError, match=r"^field 'x' of parameter p nests deeper than 32"):
        check({"x": deep}, "parameter p")
    with pytest.raises(JsonLimitError, match=r"^field 'x\[0\]' is an integer of more than 40"):
        check({"x": [10**40]})
    with pytest.raises(JsonLimitError, match=r"^the body is inf, not a finite number"):
        check(float("inf"))
    check({"x": [10**40 - 1, True, None, "s", 1.5]})


def test_not_json_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError) as info:
        loads("{nope")
    assert not isinstance(info.value, JsonLimitError)
