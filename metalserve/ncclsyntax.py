"""Typed values for the two NCCL variables that pick network devices: NCCL_IB_HCA and NCCL_SOCKET_IFNAME.

Both follow NCCL's list syntax, documented on the NCCL user guide's "Environment Variables" page,
https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html : a comma-separated list of
names, each a *prefix* unless the list starts with ``=`` (exact names); a leading ``^`` turns the
list into an exclude list, and ``^=`` is both. NCCL_IB_HCA entries may carry ``:port``.

Parsing refuses anything NCCL would read differently from what a person meant (a stray comma, a
space, ``=^`` instead of ``^=``, a name NCCL would silently cut short) with a one-line ValueError
that names the bad element and the fix.

Example::

    HcaSelection.parse("=mlx5_0:1,mlx5_1:1").selects("mlx5_0", 1)  # True
    HcaSelection.parse(["mlx5_0", "mlx5_1"]).nccl_value()           # "=mlx5_0,mlx5_1"
    IfnameSelection.parse("ib0").as_exact().nccl_value()            # "=ib0"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

NCCL_ENV_DOC_URL = "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html"

MAX_HCA_DEVICES = 32
"""The NCCL_IB_HCA section of the env page: "There is a fixed upper limit of 32 Host Channel
Adapter (HCA) devices supported in NCCL"."""

MAX_HCA_NAME_CHARS = 63
"""NCCL copies each list token into a 64-byte C string (``struct netIf { char prefix[64]; ... }``
in NCCL's src/include/utils.h), so a longer name would be cut short without a word."""

MAX_HCA_PORT = 255
"""Verbs port numbers are 8-bit (``uint8_t port_num``); real HCAs number their ports from 1."""

MAX_IFNAMES = 16
"""NCCL reads at most MAX_IFS (16) NCCL_SOCKET_IFNAME entries (src/include/socket.h) and drops
the rest without a word."""

MAX_IFNAME_CHARS = 15
"""Linux IFNAMSIZ is 16 bytes including the terminating NUL."""

MAX_VALUE_CHARS = 4096
"""Longer than any valid selection (32 x 63-character names with ports); refusing longer text up
front keeps the work and the error message bounded."""

_SHOWN_CHARS = 40
_HCA_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-]")
_IFNAME_CHARS = re.compile(r"[A-Za-z0-9_.@\-]")
# ASCII digits only (``\d`` would also take other scripts' digits), no leading zero, so that the
# rendered value is the one written.
_PORT_DIGITS = re.compile(r"[1-9][0-9]{0,2}")


class NcclSyntaxError(ValueError):
    """A NCCL_IB_HCA or NCCL_SOCKET_IFNAME value refused: one line, what was found and the fix."""


@dataclass(frozen=True)
class _ListRules:
    """What differs between the two variables when reading their shared list syntax."""

    variable: str
    example: str
    max_items: int
    item: str
    list_example: str
    exclusion_example: str


_HCA_RULES = _ListRules(
    variable="NCCL_IB_HCA",
    example="'=mlx5_0:1,mlx5_1:1'",
    max_items=MAX_HCA_DEVICES,
    item="device",
    list_example="['mlx5_0', 'mlx5_1:1']",
    exclusion_example="'^=mlx5_1'",
)
_IFNAME_RULES = _ListRules(
    variable="NCCL_SOCKET_IFNAME",
    example="'=ib0,eth0'",
    max_items=MAX_IFNAMES,
    item="interface name",
    list_example="['ib0', 'eth0']",
    exclusion_example="'^=docker0'",
)


@dataclass(frozen=True)
class _Written:
    """A value split into its leading marks and its list elements, nothing checked per element."""

    exclude: bool
    exact: bool
    elements: tuple[str, ...]


def _show(text: str) -> str:
    """A quoted, escaped, bounded excerpt: repr() escapes newlines, so a message stays one line."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def _refuse(rules: _ListRules, found: str, fix: str) -> NcclSyntaxError:
    return NcclSyntaxError(f"{rules.variable}: {found}; {fix}")


def _refuse_oversize(text: str, rules: _ListRules) -> None:
    if len(text) > MAX_VALUE_CHARS:
        raise _refuse(
            rules,
            f"value of {len(text)} characters starting {_show(text)}",
            f"a selection is at most {MAX_VALUE_CHARS} characters, e.g. {rules.example}",
        )


def _refuse_blank_characters(text: str, rules: _ListRules) -> None:
    """NCCL keeps spaces and control characters as part of a name, which then matches nothing."""
    for position, char in enumerate(text, start=1):
        if char.isspace() or not char.isprintable():
            raise _refuse(
                rules,
                f"{char!r} at position {position} of {_show(text)}",
                f"remove whitespace and control characters, e.g. {rules.example}",
            )


def _refuse_misplaced_marks(element: str, rules: _ListRules) -> None:
    """NCCL strips '^' then '=' once from the front of the whole list; anywhere else they become
    part of a name (so '=^mlx5' is an exact match on the name '^mlx5', not an exclusion)."""
    for mark in ("^", "="):
        if mark in element:
            raise _refuse(
                rules,
                f"{mark!r} inside element {_show(element)}",
                "'^' (exclude) and '=' (exact) may only open the whole list, in the order '^='",
            )


def _refuse_empty_selection(found: str, rules: _ListRules) -> NoReturn:
    raise _refuse(rules, found, f"name at least one {rules.item}, e.g. {rules.example}")


def _refuse_too_many(count: int, rules: _ListRules) -> None:
    if count > rules.max_items:
        raise _refuse(
            rules,
            f"{count} entries listed",
            f"NCCL takes at most {rules.max_items}; list fewer or use a shared prefix",
        )


def _read_string_form(text: str, rules: _ListRules) -> _Written:
    _refuse_oversize(text, rules)
    _refuse_blank_characters(text, rules)
    body = text
    exclude = body.startswith("^")
    body = body[1:] if exclude else body
    exact = body.startswith("=")
    body = body[1:] if exact else body
    if not body:
        _refuse_empty_selection(f"empty selection {_show(text)}", rules)
    elements = tuple(body.split(","))
    _refuse_too_many(len(elements), rules)
    for position, element in enumerate(elements, start=1):
        if not element:
            raise _refuse(
                rules,
                f"empty element at position {position} of {_show(text)} (stray or doubled ',')",
                f"separate names with single commas, e.g. {rules.example}",
            )
        _refuse_misplaced_marks(element, rules)
    return _Written(exclude=exclude, exact=exact, elements=elements)


def _read_list_element(position: int, element: object, rules: _ListRules) -> str:
    if not isinstance(element, str):
        raise _refuse(
            rules,
            f"list element {position} is {type(element).__name__}, not text",
            f"list {rules.item}s as strings, e.g. {rules.list_example}",
        )
    _refuse_oversize(element, rules)
    _refuse_blank_characters(element, rules)
    if not element:
        raise _refuse(rules, f"list element {position} is empty", f"drop it or name a {rules.item}")
    if "^" in element or "=" in element:
        raise _refuse(
            rules,
            f"list element {_show(element)} carries '^' or '='",
            "a list names what to use, matched exactly; write an exclusion as a string such as "
            f"{rules.exclusion_example}",
        )
    if "," in element:
        raise _refuse(
            rules, f"list element {_show(element)} holds ','", f"give one {rules.item} per element"
        )
    return element


def _read_list_form(items: list[Any] | tuple[Any, ...], rules: _ListRules) -> _Written:
    """A list from an inventory means exactly these names: NCCL's '=' form."""
    if not items:
        _refuse_empty_selection("an empty list", rules)
    _refuse_too_many(len(items), rules)
    elements = tuple(
        _read_list_element(position, element, rules)
        for position, element in enumerate(items, start=1)
    )
    return _Written(exclude=False, exact=True, elements=elements)


def _read_written(value: object, rules: _ListRules) -> _Written:
    if isinstance(value, str):
        return _read_string_form(value, rules)
    if isinstance(value, list | tuple):
        return _read_list_form(value, rules)
    raise _refuse(
        rules,
        f"a value of type {type(value).__name__}",
        f"give a string such as {rules.example} or a list of names",
    )


def _refuse_duplicates(tokens: tuple[str, ...], rules: _ListRules) -> None:
    seen: set[str] = set()
    for token in tokens:
        if token in seen:
            raise _refuse(rules, f"{_show(token)} listed twice", "list each entry once")
        seen.add(token)


def _first_char_outside(name: str, allowed: re.Pattern[str]) -> str | None:
    return next((char for char in name if not allowed.fullmatch(char)), None)


def _name_matches(candidate: str, written: str, exact: bool) -> bool:
    """NCCL compares the whole name with '=', otherwise only the written prefix."""
    return candidate == written if exact else candidate.startswith(written)


def _render(exclude: bool, exact: bool, tokens: tuple[str, ...]) -> str:
    return ("^" if exclude else "") + ("=" if exact else "") + ",".join(tokens)


# ---------------------------------------------------------------------------------------------
# NCCL_IB_HCA


def _check_hca_name(name: str, token: str) -> None:
    if not name:
        raise _refuse(
            _HCA_RULES, f"no device name in {_show(token)}", "write it before ':', e.g. 'mlx5_0:1'"
        )
    if len(name) > MAX_HCA_NAME_CHARS:
        raise _refuse(
            _HCA_RULES,
            f"device name {_show(name)} of {len(name)} characters",
            f"NCCL keeps at most {MAX_HCA_NAME_CHARS}, so write the name as ibv_devices shows it",
        )
    bad = _first_char_outside(name, _HCA_NAME_CHARS)
    if bad is not None:
        raise _refuse(
            _HCA_RULES,
            f"{bad!r} in device name {_show(name)}",
            "HCA names use only letters, digits, '_', '.' and '-', e.g. 'mlx5_0'",
        )


def _read_port(text: str, token: str) -> int:
    if ":" in text:
        raise _refuse(
            _HCA_RULES,
            f"fields after the port in {_show(token)}",
            "this model takes '<hca>' or '<hca>:<port>' only, e.g. 'mlx5_0:1'",
        )
    if not _PORT_DIGITS.fullmatch(text) or int(text) > MAX_HCA_PORT:
        raise _refuse(
            _HCA_RULES,
            f"port {_show(text)} in {_show(token)}",
            f"a port is a number from 1 to {MAX_HCA_PORT} without leading zeros, e.g. 'mlx5_0:1', "
            "or drop ':' to use all ports",
        )
    return int(text)


class HcaDevice(BaseModel):
    """One NCCL_IB_HCA entry: an HCA name (a prefix unless the selection is exact) and, optionally,
    the one port to use; without a port NCCL uses all ports of the card."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    port: int | None = Field(default=None, ge=1, le=MAX_HCA_PORT)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        _check_hca_name(name, name)
        return name

    @classmethod
    def read(cls, token: str) -> HcaDevice:
        """``mlx5_0`` or ``mlx5_0:1``, already free of marks and commas."""
        name, colon, port_text = token.partition(":")
        _check_hca_name(name, token)
        return cls(name=name, port=_read_port(port_text, token) if colon else None)

    def nccl_token(self) -> str:
        return self.name if self.port is None else f"{self.name}:{self.port}"

    def matches(self, name: str, port: int, exact: bool) -> bool:
        """NCCL's rule: the name matches (prefix or exact) and, where a port is written, the port."""
        return _name_matches(name, self.name, exact) and self.port in (None, port)


class HcaSelection(BaseModel):
    """A NCCL_IB_HCA value: which RDMA devices (and ports) NCCL may use.

    From the NCCL_IB_HCA section of https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html :
    "The list is comma-separated; port numbers can be specified using the ``:`` symbol. An optional
    prefix ``^`` indicates the list is an exclude list. A second optional prefix ``=`` indicates
    that the tokens are exact names, otherwise by default NCCL would treat each token as a
    prefix." and "using ``mlx5_1`` without a preceding ``=`` will select ``mlx5_1`` as well as
    ``mlx5_10`` to ``mlx5_19``, if they exist."
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exclude: bool
    exact: bool
    devices: tuple[HcaDevice, ...]

    @model_validator(mode="after")
    def _valid_list(self) -> HcaSelection:
        if not self.devices:
            _refuse_empty_selection("no devices", _HCA_RULES)
        _refuse_too_many(len(self.devices), _HCA_RULES)
        _refuse_duplicates(self._tokens(), _HCA_RULES)
        return self

    @classmethod
    def parse(cls, value: str | list[str] | tuple[str, ...]) -> HcaSelection:
        """NCCL's own text (``"^=mlx5_1,mlx5_4"``) or a list of devices to use, matched exactly
        (``["mlx5_0", "mlx5_1:1"]``). Raises NcclSyntaxError (a ValueError), one line."""
        return _parse_hca(value)

    def nccl_value(self) -> str:
        """The value to export, in NCCL's syntax, e.g. ``=mlx5_0:1,mlx5_1``."""
        return _render(self.exclude, self.exact, self._tokens())

    def selects(self, name: str, port: int) -> bool:
        """Whether NCCL would use port ``port`` of HCA ``name`` under this value."""
        listed = any(device.matches(name, port, self.exact) for device in self.devices)
        # '^' makes the list an exclude list: NCCL uses exactly what it does not list.
        return listed != self.exclude

    def named_devices(self) -> tuple[str, ...]:
        """The HCA names as written, each once, in order: what to look for on the host when the
        selection is inclusive (an exclusion need not name anything that exists)."""
        return tuple(dict.fromkeys(device.name for device in self.devices))

    def _tokens(self) -> tuple[str, ...]:
        return tuple(device.nccl_token() for device in self.devices)


def _parse_hca(value: object) -> HcaSelection:
    written = _read_written(value, _HCA_RULES)
    devices = tuple(HcaDevice.read(element) for element in written.elements)
    _refuse_duplicates(tuple(device.nccl_token() for device in devices), _HCA_RULES)
    return HcaSelection(exclude=written.exclude, exact=written.exact, devices=devices)


# ---------------------------------------------------------------------------------------------
# NCCL_SOCKET_IFNAME


def _check_ifname(name: str) -> None:
    if ":" in name:
        raise _refuse(
            _IFNAME_RULES,
            f"':' in interface name {_show(name)}",
            "NCCL reads ':' as a port separator; name the interface itself, e.g. 'eth0'",
        )
    if len(name) > MAX_IFNAME_CHARS:
        raise _refuse(
            _IFNAME_RULES,
            f"interface name {_show(name)} of {len(name)} characters",
            f"Linux names are at most {MAX_IFNAME_CHARS} characters; write it as 'ip link' shows it",
        )
    bad = _first_char_outside(name, _IFNAME_CHARS)
    if bad is not None:
        raise _refuse(
            _IFNAME_RULES,
            f"{bad!r} in interface name {_show(name)}",
            "interface names here use only letters, digits, '_', '.', '@' and '-', e.g. 'ib0'",
        )
    if name in (".", ".."):
        raise _refuse(
            _IFNAME_RULES, f"interface name {name!r}", "Linux forbids it; name a real interface"
        )


class IfnameSelection(BaseModel):
    """A NCCL_SOCKET_IFNAME value: which IP interfaces NCCL may use for sockets and bootstrap.

    From the NCCL_SOCKET_IFNAME section of
    https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html : "Define to a list of
    prefixes to filter interfaces to be used by NCCL. Multiple prefixes can be provided, separated
    by the ``,`` symbol. Using the ``^`` symbol, NCCL will exclude interfaces starting with any
    prefix in that list. To match (or not) an exact interface name, begin the prefix string with
    the ``=`` character." A plain ``ib0`` is therefore the prefix ``ib0`` (it also selects
    ``ib01``); it is kept as written, and :meth:`as_exact` is the caller's way to pin it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exclude: bool
    exact: bool
    names: tuple[str, ...]

    @field_validator("names")
    @classmethod
    def _valid_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            _refuse_empty_selection("no interface names", _IFNAME_RULES)
        _refuse_too_many(len(names), _IFNAME_RULES)
        for name in names:
            _check_ifname(name)
        _refuse_duplicates(names, _IFNAME_RULES)
        return names

    @classmethod
    def parse(cls, value: str | list[str] | tuple[str, ...]) -> IfnameSelection:
        """NCCL's own text (``"^docker"``, ``"=eth0,eth1"``) or a list of interfaces to use,
        matched exactly. Raises NcclSyntaxError (a ValueError), one line."""
        return _parse_ifname(value)

    def nccl_value(self) -> str:
        """The value to export, in NCCL's syntax, e.g. ``=eth0,eth1``."""
        return _render(self.exclude, self.exact, self.names)

    def selects(self, ifname: str) -> bool:
        """Whether NCCL would consider interface ``ifname`` under this value."""
        listed = any(_name_matches(ifname, name, self.exact) for name in self.names)
        # '^' makes the list an exclude list: NCCL uses exactly what it does not list.
        return listed != self.exclude

    def as_exact(self) -> IfnameSelection:
        """This selection with exact matching, so ``ib0`` stops selecting ``ib01``.

        An exclusion is returned unchanged: matching it exactly would exclude fewer interfaces,
        i.e. let NCCL use more, which pinning a selection must never do.
        """
        if self.exclude or self.exact:
            return self
        return self.model_copy(update={"exact": True})


def _parse_ifname(value: object) -> IfnameSelection:
    written = _read_written(value, _IFNAME_RULES)
    for name in written.elements:
        _check_ifname(name)
    _refuse_duplicates(written.elements, _IFNAME_RULES)
    return IfnameSelection(exclude=written.exclude, exact=written.exact, names=written.elements)


# ---------------------------------------------------------------------------------------------
# Field types for inventory models


def _field_error(error: ValueError) -> PydanticCustomError:
    # A custom error keeps the message exactly our one line (a plain ValueError would gain a
    # "Value error, " prefix); the message travels as context so braces in it are not a template.
    return PydanticCustomError("nccl_syntax", "{reason}", {"reason": str(error)})


def _coerce_hca(value: object) -> object:
    """Strings and lists are NCCL syntax; a built selection or its dict form validates as is."""
    if isinstance(value, HcaSelection | dict):
        return value
    try:
        return _parse_hca(value)
    except ValueError as error:
        raise _field_error(error) from None


def _coerce_ifname(value: object) -> object:
    """Strings and lists are NCCL syntax; a built selection or its dict form validates as is."""
    if isinstance(value, IfnameSelection | dict):
        return value
    try:
        return _parse_ifname(value)
    except ValueError as error:
        raise _field_error(error) from None


_NAMES_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
}

HcaField = Annotated[
    HcaSelection,
    BeforeValidator(_coerce_hca),
    PlainSerializer(lambda selection: selection.nccl_value(), return_type=str),
    WithJsonSchema(
        {
            **_NAMES_JSON_SCHEMA,
            "description": "NCCL_IB_HCA: '=mlx5_0:1,mlx5_1' style text, or a list of HCAs "
            f"used exactly ({NCCL_ENV_DOC_URL})",
        }
    ),
]
"""An inventory field taking NCCL_IB_HCA text or a list of HCAs; it dumps as NCCL's text."""

IfnameField = Annotated[
    IfnameSelection,
    BeforeValidator(_coerce_ifname),
    PlainSerializer(lambda selection: selection.nccl_value(), return_type=str),
    WithJsonSchema(
        {
            **_NAMES_JSON_SCHEMA,
            "description": "NCCL_SOCKET_IFNAME: '=ib0' style text, or a list of interfaces "
            f"used exactly ({NCCL_ENV_DOC_URL})",
        }
    ),
]
"""An inventory field taking NCCL_SOCKET_IFNAME text or a list of interfaces; it dumps as text."""
