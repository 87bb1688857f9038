"""API messages: declared parameters, coercion from strings, and validation rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.kernel.api import ApiMessage, ApiReply, QueryResult, param
from core.kernel.errors import ErrorCode, OperationError, SysErrors


class CreateThing(ApiMessage):
    """Make a thing."""

    name: str = param(required=True, max_length=8, non_empty=True)
    cpu_num: int = param(default=1, number_range=(1, 64))
    memory_ratio: float = param(number_range=(0.5, 2.5))
    enabled: bool = param(default=True)
    l3_network_uuids: list[str] = param(default=[], non_empty=False)
    state_event: str = param(valid_values=("enable", "disable"))
    host_name: str | None = param(regex=r"[a-z][a-z0-9-]*")
    labels: list[str] = param(max_length=3, valid_values=("a", "b", "abc", "abcd"))
    options: dict = param()
    zone_uuid: str = param(resource_type="ZoneVO", description="where it goes")


class NeedsList(ApiMessage):
    items: list[str] = param(required=True, non_empty=True)


class Child(CreateThing):
    extra: int = param(default=0)


def error_of(raw: dict, cls: type[ApiMessage] = CreateThing) -> ErrorCode:
    with pytest.raises(OperationError) as info:
        cls.from_params(raw)
    assert info.value.error.code == SysErrors.INVALID_ARGUMENT
    return info.value.error


def test_params_are_declared_in_order_with_camel_case_names() -> None:
    assert CreateThing.api_name == "CreateThing"
    assert list(CreateThing.params) == [
        "name",
        "cpuNum",
        "memoryRatio",
        "enabled",
        "l3NetworkUuids",
        "stateEvent",
        "hostName",
        "labels",
        "options",
        "zoneUuid",
    ]
    specs = CreateThing.params
    assert specs["cpuNum"].attr == "cpu_num"
    assert specs["cpuNum"].kind is int
    assert specs["memoryRatio"].kind is float
    assert specs["enabled"].kind is bool
    assert specs["l3NetworkUuids"].kind is list
    assert specs["hostName"].kind is str  # Optional[str] is a string
    assert specs["options"].kind is dict


def test_subclass_inherits_parameters() -> None:
    assert list(Child.params)[-1] == "extra"
    assert set(CreateThing.params) < set(Child.params)
    assert Child.api_name == "Child"


def test_unsupported_parameter_type_is_refused() -> None:
    with pytest.raises(TypeError, match="unsupported API parameter type"):

        class Bad(ApiMessage):
            when: bytes = param()


def test_describe_lists_the_rules() -> None:
    specs = CreateThing.params
    assert specs["name"].describe() == "string, required, max length 8"
    assert specs["cpuNum"].describe() == "integer, default 1, in [1, 64]"
    assert specs["memoryRatio"].describe() == "number, in [0.5, 2.5]"
    assert specs["stateEvent"].describe() == "string, one of enable|disable"
    assert specs["zoneUuid"].describe() == "string, uuid or name of a ZoneVO: where it goes"


def test_constructor_defaults_and_unknown_attribute() -> None:
    msg = CreateThing(name="x")
    assert msg.cpu_num == 1
    assert msg.enabled is True
    assert msg.memory_ratio is None
    assert msg.system_tags == [] and msg.user_tags == []
    other = CreateThing(name="y")
    msg.l3_network_uuids.append("u")
    assert other.l3_network_uuids == []  # mutable defaults are copied
    with pytest.raises(TypeError, match="CreateThing has no parameter bogus"):
        CreateThing(name="x", bogus=1)


def test_from_params_coerces_strings() -> None:
    msg = CreateThing.from_params(
        {
            "name": "web1",
            "cpuNum": "4",
            "memoryRatio": "1.5",
            "enabled": "False",
            "l3NetworkUuids": "a, b,,c",
            "labels": "a,b",
            "systemTags": "x::1,y",
            "userTags": ["u1"],
            "options": '{"p": ["DHCP", "DNS"]}',
        }
    )
    assert msg.options == {"p": ["DHCP", "DNS"]}
    # An optional parameter left empty is not held to its pattern.
    assert CreateThing.from_params({"name": "x", "hostName": ""}).host_name == ""
    assert "must be a map" in str(error_of({"name": "x", "options": "{not json"}))
    assert msg.name == "web1"
    assert msg.cpu_num == 4
    assert msg.memory_ratio == 1.5
    assert msg.enabled is False
    assert msg.l3_network_uuids == ["a", "b", "c"]
    assert msg.labels == ["a", "b"]
    assert msg.system_tags == ["x::1", "y"]
    assert msg.user_tags == ["u1"]


def test_from_params_accepts_typed_json_values() -> None:
    msg = CreateThing.from_params(
        {
            "name": 12,
            "cpuNum": 2,
            "memoryRatio": 1,
            "enabled": True,
            "l3NetworkUuids": ["a"],
            "options": {"k": 1},
        }
    )
    assert msg.name == "12"
    assert msg.cpu_num == 2
    assert msg.memory_ratio == 1.0 and isinstance(msg.memory_ratio, float)
    assert msg.options == {"k": 1}


def test_none_means_not_given() -> None:
    msg = CreateThing.from_params({"name": "a", "cpuNum": None})
    assert msg.cpu_num == 1


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("cpuNum", "four", "integer"),
        ("cpuNum", "1.5", "integer"),
        ("cpuNum", True, "integer"),
        ("cpuNum", 2.0, "integer"),
        ("memoryRatio", "lots", "number"),
        ("memoryRatio", False, "number"),
        ("enabled", "yes", "boolean"),
        ("enabled", 1, "boolean"),
        ("name", ["x"], "string"),
        ("name", True, "string"),
        ("options", "k=v", "map"),
    ],
)
def test_bad_types_name_the_parameter(name: str, value: object, kind: str) -> None:
    err = error_of({"name": "a", name: value})
    article = "an" if kind == "integer" else "a"
    assert err.description.startswith(f"parameter {name} of CreateThing must be {article} {kind}")


def test_bad_list_names_the_parameter() -> None:
    err = error_of({"name": "a", "l3NetworkUuids": [1, 2]})
    assert err.description == "parameter l3NetworkUuids of CreateThing must be a list of strings"
    err = error_of({"name": "a", "systemTags": 5})
    assert "systemTags" in err.description


def test_missing_required() -> None:
    err = error_of({"cpuNum": "2"})
    assert err.description == "missing required parameter name of CreateThing"
    err = error_of({"name": None})
    assert "missing required parameter name" in err.description
    with pytest.raises(OperationError, match="missing required parameter name"):
        CreateThing().validate()


def test_unknown_parameter_lists_the_known_ones() -> None:
    err = error_of({"name": "a", "cpuNumber": "2"})
    assert err.description.startswith("unknown parameter cpuNumber for CreateThing")
    assert "cpuNum" in err.description and "zoneUuid" in err.description
    # snake_case attribute names are not API names
    assert "unknown parameter cpu_num" in error_of({"name": "a", "cpu_num": 2}).description


def test_valid_values() -> None:
    assert CreateThing.from_params({"name": "a", "stateEvent": "disable"}).state_event == "disable"
    err = error_of({"name": "a", "stateEvent": "Enable"})
    assert err.description == (
        "parameter stateEvent of CreateThing must be one of [enable, disable], got 'Enable'"
    )


@pytest.mark.parametrize("value", ["1", "64", "32"])
def test_number_range_includes_its_edges(value: str) -> None:
    assert CreateThing.from_params({"name": "a", "cpuNum": value}).cpu_num == int(value)


@pytest.mark.parametrize("value", ["0", "65", "-1"])
def test_number_range_outside(value: str) -> None:
    err = error_of({"name": "a", "cpuNum": value})
    assert err.description == (
        f"parameter cpuNum of CreateThing must be in the range [1, 64], got {value}"
    )


def test_float_range_edges() -> None:
    assert CreateThing.from_params({"name": "a", "memoryRatio": "0.5"}).memory_ratio == 0.5
    assert CreateThing.from_params({"name": "a", "memoryRatio": "2.5"}).memory_ratio == 2.5
    err = error_of({"name": "a", "memoryRatio": "2.51"})
    assert "memoryRatio" in err.description and "[0.5, 2.5]" in err.description
    for value in ("nan", "inf", "-Infinity", "1" * 5000, 10**400):
        err = error_of({"name": "a", "memoryRatio": value})
        assert err.code == SysErrors.INVALID_ARGUMENT
        assert "parameter memoryRatio of CreateThing" in err.description


@given(st.integers(min_value=-1000, max_value=1000))
def test_range_property(n: int) -> None:
    if 1 <= n <= 64:
        assert CreateThing.from_params({"name": "a", "cpuNum": str(n)}).cpu_num == n
    else:
        with pytest.raises(OperationError, match=r"cpuNum .* range \[1, 64\]"):
            CreateThing.from_params({"name": "a", "cpuNum": str(n)})


def test_max_length() -> None:
    assert CreateThing.from_params({"name": "a" * 8}).name == "a" * 8
    err = error_of({"name": "a" * 9})
    assert err.description == "parameter name of CreateThing is longer than 8 characters"


def test_max_length_and_valid_values_apply_to_each_list_item() -> None:
    err = error_of({"name": "a", "labels": "a,abcd"})
    assert err.description == "parameter labels of CreateThing is longer than 3 characters"
    err = error_of({"name": "a", "labels": "a,zz"})
    assert "parameter labels of CreateThing must be one of" in err.description


def test_regex() -> None:
    assert CreateThing.from_params({"name": "a", "hostName": "web-1"}).host_name == "web-1"
    err = error_of({"name": "a", "hostName": "Web_1"})
    assert err.description == (
        "parameter hostName of CreateThing must match [a-z][a-z0-9-]*, got 'Web_1'"
    )
    # the whole value must match, not a prefix
    assert "hostName" in error_of({"name": "a", "hostName": "web 1"}).description


def test_non_empty_string_and_list() -> None:
    err = error_of({"name": "   "})
    assert err.description == "parameter name of CreateThing must not be empty"
    err = error_of({"items": ""}, NeedsList)
    assert err.description == "parameter items of NeedsList must not be empty"
    assert NeedsList.from_params({"items": "x"}).items == ["x"]


def test_validate_catches_bad_values_set_in_code() -> None:
    msg = CreateThing(name="a", cpu_num=100)
    with pytest.raises(OperationError, match="cpuNum of CreateThing must be in the range"):
        msg.validate()


def test_to_params_round_trip() -> None:
    msg = CreateThing.from_params({"name": "a", "cpuNum": "3", "systemTags": ["t"]})
    out = msg.to_params()
    assert out["cpuNum"] == 3 and out["systemTags"] == ["t"] and "userTags" not in out
    again = CreateThing.from_params(out)
    assert again.to_params() == out


def test_resource_uuids() -> None:
    assert CreateThing(name="a").resource_uuids() == []
    msg = CreateThing(name="a", zone_uuid="z" * 32)
    assert msg.resource_uuids() == [("zoneUuid", "ZoneVO", "z" * 32)]
    assert msg.sync_signature() is None


def test_reply_round_trip_keeps_the_cause_chain() -> None:
    root = ErrorCode("HOST.1", "agent down", "connection refused")
    err = ErrorCode(SysErrors.OPERATION_ERROR, "cannot start vm", cause=root, location="flow 2/3")
    reply = ApiReply.failure(err)
    raw = reply.to_dict()
    assert raw["error"]["cause"]["code"] == "HOST.1"
    back = ApiReply.from_dict(raw)
    assert not back.success
    assert back.error == err
    assert [e.code for e in back.error.causes()] == [SysErrors.OPERATION_ERROR, "HOST.1"]
    assert back.error.root_cause() == root
    assert str(err) == (
        "SYS.1006: cannot start vm; caused by HOST.1: agent down (connection refused)"
    )
    ok = ApiReply(inventories=[{"a": 1}], total=1, extra={"more": True})
    assert ApiReply.from_dict(ok.to_dict()) == ok


def test_query_result_is_a_page() -> None:
    assert QueryResult([{"a": 1}]).total is None


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_huge_integers_are_refused_naming_the_parameter_and_the_limit() -> None:
    for value in ("9" * 5000, "-" + "9" * 5000, "9" * 20, 2**63, 10**4000):
        err = error_of({"name": "a", "cpuNum": value}, Child)
        assert err.description.startswith("parameter cpuNum of Child"), err.description
        assert "range" in err.description or "40 digits" in err.description
    err = error_of({"name": "a", "extra": "9" * 5000}, Child)
    assert err.description == (
        "parameter extra of Child must be an integer in the range"
        " [-9223372036854775808, 9223372036854775807]"
    )
    assert Child.from_params({"name": "a", "extra": str(2**63 - 1)}).extra == 2**63 - 1
    # a 5,000-digit integer where a string is expected is refused too (str() of it fails)
    err = error_of({"name": 10**5000})
    assert err.description == "parameter name of CreateThing is an integer of more than 40 digits"


def test_deeply_nested_parameters_are_refused_naming_the_parameter() -> None:
    deep = nested(100_000)
    for raw in (
        {"name": "a", "options": {"x": deep}},
        {"name": "a", "options": "[" * 100_000 + "]" * 100_000},
        {"name": "a", "options": '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"},
        {"name": "a", "labels": deep},
        {"name": deep},
    ):
        err = error_of(raw)
        assert "nests deeper than 32 levels" in err.description, err.description
        assert "of CreateThing" in err.description
    err = error_of({"name": "a", "options": {"x": deep}})
    assert err.description == (
        "field 'x' of parameter options of CreateThing nests deeper than 32 levels"
    )
    err = error_of({"name": "a", "options": '{"limit": ' + "9" * 5000 + "}"})
    assert err.description.startswith(
        "field 'limit' of parameter options of CreateThing is a number of 5000 characters"
    )
    # 32 levels are fine
    assert CreateThing.from_params({"name": "a", "options": {"x": nested(31)}}).options
