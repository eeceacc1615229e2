"""NCCL_IB_HCA and NCCL_SOCKET_IFNAME values, checked against the syntax NCCL documents.

Expected values are written from the NCCL user guide's "Environment Variables" page
(https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html), not from program output.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from metalserve.ncclsyntax import (
    MAX_HCA_DEVICES,
    MAX_IFNAMES,
    HcaDevice,
    HcaField,
    HcaSelection,
    IfnameField,
    IfnameSelection,
    NcclSyntaxError,
)


def hca(
    *devices: tuple[str, int | None], exclude: bool = False, exact: bool = False
) -> HcaSelection:
    return HcaSelection(
        exclude=exclude,
        exact=exact,
        devices=tuple(HcaDevice(name=name, port=port) for name, port in devices),
    )


def ifnames(*names: str, exclude: bool = False, exact: bool = False) -> IfnameSelection:
    return IfnameSelection(exclude=exclude, exact=exact, names=names)


def refusal(parse: Any, value: Any) -> str:
    with pytest.raises(ValueError) as caught:
        parse(value)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


# --- the documented examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "mlx5 : Use all ports of all cards starting with mlx5"
        ("mlx5", hca(("mlx5", None))),
        # "=mlx5_0:1,mlx5_1:1 : Use ports 1 of cards mlx5_0 and mlx5_1."
        ("=mlx5_0:1,mlx5_1:1", hca(("mlx5_0", 1), ("mlx5_1", 1), exact=True)),
        # "^=mlx5_1,mlx5_4 : Do not use cards mlx5_1 and mlx5_4."
        ("^=mlx5_1,mlx5_4", hca(("mlx5_1", None), ("mlx5_4", None), exclude=True, exact=True)),
        ("^mlx5_2", hca(("mlx5_2", None), exclude=True)),
        ("=mlx5_0,mlx5_1", hca(("mlx5_0", None), ("mlx5_1", None), exact=True)),
        ("^=mlx5_0:1", hca(("mlx5_0", 1), exclude=True, exact=True)),
    ],
)
def test_documented_hca_values_parse_and_render_back(text: str, expected: HcaSelection) -> None:
    parsed = HcaSelection.parse(text)
    assert parsed == expected
    assert parsed.nccl_value() == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "eth : Use all interfaces starting with eth, e.g. eth0, eth1, ..."
        ("eth", ifnames("eth")),
        # "=eth0 : Use only interface eth0"
        ("=eth0", ifnames("eth0", exact=True)),
        # "=eth0,eth1 : Use only interfaces eth0 and eth1"
        ("=eth0,eth1", ifnames("eth0", "eth1", exact=True)),
        # "^docker : Do not use any interface starting with docker"
        ("^docker", ifnames("docker", exclude=True)),
        # "^=docker0 : Do not use interface docker0."
        ("^=docker0", ifnames("docker0", exclude=True, exact=True)),
        # the page's nccl.conf example line "NCCL_SOCKET_IFNAME==ens1f0"
        ("=ens1f0", ifnames("ens1f0", exact=True)),
        ("ib0", ifnames("ib0")),
    ],
)
def test_documented_ifname_values_parse_and_render_back(
    text: str, expected: IfnameSelection
) -> None:
    parsed = IfnameSelection.parse(text)
    assert parsed == expected
    assert parsed.nccl_value() == text


def test_a_list_of_hcas_means_exactly_those_and_renders_with_equals() -> None:
    parsed = HcaSelection.parse(["mlx5_0", "mlx5_1:1"])
    assert parsed == hca(("mlx5_0", None), ("mlx5_1", 1), exact=True)
    assert parsed.nccl_value() == "=mlx5_0,mlx5_1:1"
    assert HcaSelection.parse(("mlx5_3",)).nccl_value() == "=mlx5_3"


def test_a_list_of_interfaces_means_exactly_those_and_renders_with_equals() -> None:
    parsed = IfnameSelection.parse(["ib0", "eth0"])
    assert parsed == ifnames("ib0", "eth0", exact=True)
    assert parsed.nccl_value() == "=ib0,eth0"


# --- what NCCL would use --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "device", "port", "used"),
    [
        ("mlx5", "mlx5_0", 1, True),
        ("mlx5", "mlx5_3", 2, True),
        ("mlx5", "rocep1s0f0", 1, False),
        # "Use ports 1 of cards mlx5_0 and mlx5_1"
        ("=mlx5_0:1,mlx5_1:1", "mlx5_0", 1, True),
        ("=mlx5_0:1,mlx5_1:1", "mlx5_0", 2, False),
        ("=mlx5_0:1,mlx5_1:1", "mlx5_1", 1, True),
        ("=mlx5_0:1,mlx5_1:1", "mlx5_10", 1, False),
        # "Do not use cards mlx5_1 and mlx5_4"
        ("^=mlx5_1,mlx5_4", "mlx5_1", 1, False),
        ("^=mlx5_1,mlx5_4", "mlx5_4", 2, False),
        ("^=mlx5_1,mlx5_4", "mlx5_0", 1, True),
        ("^=mlx5_1,mlx5_4", "mlx5_10", 1, True),
        # "using mlx5_1 without a preceding = will select mlx5_1 as well as mlx5_10 to mlx5_19"
        ("mlx5_1", "mlx5_1", 1, True),
        ("mlx5_1", "mlx5_10", 1, True),
        ("mlx5_1", "mlx5_19", 1, True),
        ("mlx5_1", "mlx5_2", 1, False),
        ("=mlx5_1", "mlx5_1", 1, True),
        ("=mlx5_1", "mlx5_10", 1, False),
        # '^' without '=' excludes the prefix: mlx5_2 and mlx5_2x, nothing else
        ("^mlx5_2", "mlx5_2", 1, False),
        ("^mlx5_2", "mlx5_20", 1, False),
        ("^mlx5_2", "mlx5_1", 1, True),
        ("^mlx5_2", "mlx5_12", 1, True),
        # an excluded port leaves the card's other ports in use
        ("^=mlx5_0:1", "mlx5_0", 1, False),
        ("^=mlx5_0:1", "mlx5_0", 2, True),
        # a port written with a prefix restricts every card the prefix matches
        ("mlx5:1", "mlx5_7", 1, True),
        ("mlx5:1", "mlx5_7", 2, False),
    ],
)
def test_hca_selects_follows_prefix_exact_exclude_and_port(
    text: str, device: str, port: int, used: bool
) -> None:
    assert HcaSelection.parse(text).selects(device, port) is used


@pytest.mark.parametrize(
    ("text", "interface", "used"),
    [
        ("eth", "eth0", True),
        ("eth", "eth1", True),
        ("eth", "ib0", False),
        ("=eth0", "eth0", True),
        ("=eth0", "eth01", False),
        ("=eth0", "eth1", False),
        ("=eth0,eth1", "eth1", True),
        ("^docker", "docker0", False),
        ("^docker", "docker_gwbridge", False),
        ("^docker", "eth0", True),
        ("^=docker0", "docker0", False),
        ("^=docker0", "docker1", True),
        ("ib0", "ib0", True),
        ("ib0", "ib01", True),
    ],
)
def test_ifname_selects_follows_prefix_exact_and_exclude(
    text: str, interface: str, used: bool
) -> None:
    assert IfnameSelection.parse(text).selects(interface) is used


def test_named_devices_lists_each_card_once_in_written_order() -> None:
    selection = HcaSelection.parse("=mlx5_2:1,mlx5_0:1,mlx5_2:2")
    assert selection.named_devices() == ("mlx5_2", "mlx5_0")


def test_as_exact_pins_an_inclusive_prefix() -> None:
    pinned = IfnameSelection.parse("ib0").as_exact()
    assert pinned == ifnames("ib0", exact=True)
    assert pinned.nccl_value() == "=ib0"
    assert not pinned.selects("ib01")


@pytest.mark.parametrize("text", ["^docker", "^=docker0", "=eth0"])
def test_as_exact_leaves_exclusions_and_exact_values_as_written(text: str) -> None:
    selection = IfnameSelection.parse(text)
    assert selection.as_exact() == selection


# --- refusals: one line naming what is wrong ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mentions"),
    [
        ("", "empty selection"),
        ("^", "empty selection '^'"),
        ("^=", "empty selection '^='"),
        ("mlx5_0,,mlx5_1", "position 2"),
        ("mlx5_0,", "position 2"),
        (",mlx5_0", "position 1"),
        ("=^mlx5_0", "'^mlx5_0'"),
        ("mlx5_0,=mlx5_1", "'=mlx5_1'"),
        ("mlx5_0,^mlx5_1", "'^mlx5_1'"),
        ("mlx5^", "'mlx5^'"),
        ("mlx5 0", "' '"),
        (" mlx5_0", "' '"),
        ("mlx5_0\n", "'\\n'"),
        ("mlx5_0\tmlx5_1", "'\\t'"),
        ("mlx5_0\x00", "'\\x00'"),
        ("mlx5/0", "'mlx5/0'"),
        ("mlx5_é", "'mlx5_é'"),
        ("m" * 64, "64 characters"),
        ("mlx5_0:0", "'mlx5_0:0'"),
        ("mlx5_0:-1", "'mlx5_0:-1'"),
        ("mlx5_0:x", "'mlx5_0:x'"),
        ("mlx5_0:01", "'mlx5_0:01'"),
        ("mlx5_0:256", "'mlx5_0:256'"),
        ("mlx5_0:", "'mlx5_0:'"),
        (":1", "':1'"),
        ("mlx5_0:1:0:0", "'mlx5_0:1:0:0'"),
        ("mlx5_0,mlx5_0", "'mlx5_0' listed twice"),
        ("=mlx5_0:1,mlx5_0:1", "'mlx5_0:1' listed twice"),
        (",".join(f"mlx5_{i}" for i in range(MAX_HCA_DEVICES + 1)), "33 entries"),
        ("m" * 100_000, "100000 characters"),
        ([], "empty list"),
        ([""], "element 1 is empty"),
        (["^mlx5_0"], "'^mlx5_0'"),
        (["=mlx5_0"], "'=mlx5_0'"),
        (["mlx5_0,mlx5_1"], "'mlx5_0,mlx5_1'"),
        (["mlx5_0", "mlx5_0"], "'mlx5_0' listed twice"),
        (["mlx5_0", 1], "element 2 is int"),
        (["mlx5 0"], "' '"),
        (None, "NoneType"),
        (7, "int"),
    ],
)
def test_hca_refusals_are_one_line_and_name_the_bad_element(value: Any, mentions: str) -> None:
    message = refusal(HcaSelection.parse, value)
    assert message.startswith("NCCL_IB_HCA: ")
    assert mentions in message


@pytest.mark.parametrize(
    ("value", "mentions"),
    [
        ("", "empty selection"),
        ("^=", "empty selection"),
        ("eth0,,eth1", "position 2"),
        ("=^eth0", "'^eth0'"),
        ("eth0,^eth1", "'^eth1'"),
        ("eth0:1", "'eth0:1'"),
        ("eth/0", "'eth/0'"),
        ("eth 0", "' '"),
        ("eth0\r\n", "'\\r'"),
        (".", "'.'"),
        ("=..", "'..'"),
        ("abcdefghijklmnop", "16 characters"),
        ("eth0,eth0", "'eth0' listed twice"),
        (",".join(f"eth{i}" for i in range(MAX_IFNAMES + 1)), "17 entries"),
        (["^eth0"], "'^eth0'"),
        (["eth0", ""], "element 2 is empty"),
        ([], "empty list"),
    ],
)
def test_ifname_refusals_are_one_line_and_name_the_bad_element(value: Any, mentions: str) -> None:
    message = refusal(IfnameSelection.parse, value)
    assert message.startswith("NCCL_SOCKET_IFNAME: ")
    assert mentions in message


def test_refusals_are_value_errors_of_their_own_kind() -> None:
    with pytest.raises(NcclSyntaxError):
        HcaSelection.parse("=^mlx5")
    assert issubclass(NcclSyntaxError, ValueError)


def test_building_an_invalid_selection_directly_is_refused_too() -> None:
    with pytest.raises(ValidationError):
        HcaSelection(exclude=False, exact=True, devices=())
    with pytest.raises(ValidationError):
        HcaDevice(name="mlx5 0")
    with pytest.raises(ValidationError):
        HcaDevice(name="mlx5_0", port=0)
    with pytest.raises(ValidationError):
        IfnameSelection(exclude=False, exact=False, names=("eth0", "eth0"))
    with pytest.raises(ValidationError):
        HcaSelection.model_validate({"exclude": False, "exact": True, "devices": [], "extra": 1})


# --- as a field of an inventory model --------------------------------------------------------


class Fabric(BaseModel):
    ib_hca: HcaField | None = None
    socket_ifname: IfnameField | None = None


def test_fields_take_text_or_lists_and_dump_nccl_text() -> None:
    fabric = Fabric.model_validate({"ib_hca": ["mlx5_0", "mlx5_1:1"], "socket_ifname": "ib0"})
    assert fabric.ib_hca == hca(("mlx5_0", None), ("mlx5_1", 1), exact=True)
    assert fabric.socket_ifname == ifnames("ib0")
    dumped = fabric.model_dump()
    assert dumped == {"ib_hca": "=mlx5_0,mlx5_1:1", "socket_ifname": "ib0"}
    assert Fabric.model_validate(dumped) == fabric
    assert Fabric.model_validate_json(fabric.model_dump_json()) == fabric


def test_fields_are_optional_and_take_built_selections() -> None:
    assert Fabric().ib_hca is None
    built = HcaSelection.parse("^=mlx5_1")
    assert Fabric(ib_hca=built).ib_hca == built


@pytest.mark.parametrize(
    ("field", "value", "parse"),
    [
        ("ib_hca", "=^mlx5_0", HcaSelection.parse),
        ("ib_hca", ["mlx5_0", "mlx5_0"], HcaSelection.parse),
        ("ib_hca", 5, HcaSelection.parse),
        ("socket_ifname", "eth0:1", IfnameSelection.parse),
    ],
)
def test_field_errors_carry_the_one_line(field: str, value: Any, parse: Any) -> None:
    expected = refusal(parse, value)
    with pytest.raises(ValidationError) as caught:
        Fabric.model_validate({field: value})
    (error,) = caught.value.errors()
    assert error["msg"] == expected
    assert error["loc"] == (field,)


def test_field_json_schema_offers_text_or_a_list() -> None:
    schema = Fabric.model_json_schema()["properties"]["ib_hca"]
    assert {"type": "string"} in schema["anyOf"][0]["anyOf"]


# --- properties ----------------------------------------------------------------------------

hca_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,63}", fullmatch=True)
hca_devices = st.builds(
    HcaDevice, name=hca_names, port=st.one_of(st.none(), st.integers(min_value=1, max_value=255))
)
hca_selections = st.builds(
    HcaSelection,
    exclude=st.booleans(),
    exact=st.booleans(),
    devices=st.lists(
        hca_devices, min_size=1, max_size=MAX_HCA_DEVICES, unique_by=lambda d: d.nccl_token()
    ).map(tuple),
)
interface_names = st.from_regex(r"[A-Za-z0-9_.@\-]{1,15}", fullmatch=True).filter(
    lambda name: name not in (".", "..")
)
ifname_selections = st.builds(
    IfnameSelection,
    exclude=st.booleans(),
    exact=st.booleans(),
    names=st.lists(interface_names, min_size=1, max_size=MAX_IFNAMES, unique=True).map(tuple),
)
# Text made mostly of the syntax's own characters reaches the interesting refusals far more often
# than uniform unicode does; both are drawn.
syntax_heavy_text = st.text(alphabet="^=,:mlx5_0129.-@ \t\n\x00é/", max_size=80)
any_text = st.one_of(syntax_heavy_text, st.text(max_size=200))


@given(hca_selections)
def test_any_valid_hca_selection_round_trips(selection: HcaSelection) -> None:
    text = selection.nccl_value()
    assert HcaSelection.parse(text) == selection
    assert HcaSelection.parse(text).nccl_value() == text


@given(ifname_selections)
def test_any_valid_ifname_selection_round_trips(selection: IfnameSelection) -> None:
    text = selection.nccl_value()
    assert IfnameSelection.parse(text) == selection
    assert IfnameSelection.parse(text).nccl_value() == text


@given(st.lists(hca_devices, min_size=1, max_size=8, unique_by=lambda d: d.nccl_token()))
def test_a_list_reads_as_the_equals_form(devices: list[HcaDevice]) -> None:
    tokens = [device.nccl_token() for device in devices]
    assert HcaSelection.parse(tokens) == HcaSelection.parse("=" + ",".join(tokens))


@given(hca_selections, hca_names, st.integers(min_value=1, max_value=255))
def test_exclusion_uses_exactly_what_the_inclusion_does_not(
    selection: HcaSelection, device: str, port: int
) -> None:
    flipped = selection.model_copy(update={"exclude": not selection.exclude})
    assert selection.selects(device, port) is not flipped.selects(device, port)


@given(ifname_selections, st.text(alphabet="0123456789abc", min_size=1, max_size=3))
def test_prefix_selects_longer_names_and_exact_does_not(
    selection: IfnameSelection, suffix: str
) -> None:
    inclusive = selection.model_copy(update={"exclude": False})
    for name in inclusive.names:
        assert inclusive.selects(name)
        longer = name + suffix
        if inclusive.exact and longer not in inclusive.names:
            assert not inclusive.selects(longer)
        if not inclusive.exact:
            assert inclusive.selects(longer)


@settings(max_examples=500, deadline=200)
@given(any_text)
def test_arbitrary_text_either_parses_and_round_trips_or_is_a_one_line_value_error(
    text: str,
) -> None:
    for parse in (HcaSelection.parse, IfnameSelection.parse):
        try:
            selection = parse(text)
        except ValueError as error:
            assert len(str(error).splitlines()) == 1
            continue
        assert parse(selection.nccl_value()) == selection


@settings(deadline=200)
@given(st.one_of(st.lists(st.one_of(any_text, st.integers(), st.none()), max_size=40), st.none()))
def test_arbitrary_lists_and_objects_give_only_one_line_value_errors(value: Any) -> None:
    for parse in (HcaSelection.parse, IfnameSelection.parse):
        try:
            parse(value)
        except ValueError as error:
            assert len(str(error).splitlines()) == 1
