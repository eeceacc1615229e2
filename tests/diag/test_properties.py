"""Properties: the parser survives any text and never reports a number it did not read."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalserve.diag.parse import iter_busbw, parse_output
from metalserve.errors import ParseError
from tests.diag.synthetic import FIXTURES

REAL_LINES = [
    line
    for path in sorted(FIXTURES.glob("*.log"))
    for line in path.read_text(encoding="utf-8").splitlines()
]
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")

row_like = st.builds(
    lambda nums, words: "  ".join(nums[:2] + words + nums[2:]),
    st.lists(
        st.one_of(
            st.integers(-5, 10**12).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(str),
            st.sampled_from(["N/A", "nan", "1e+06", "0e+00", "-1", "*", "[0]"]),
        ),
        min_size=2,
        max_size=16,
    ),
    st.lists(st.sampled_from(["float", "sum", "none", "half", "#wrong", "busbw"]), max_size=3),
)
stream = st.lists(
    st.one_of(st.sampled_from(REAL_LINES), row_like, st.text(max_size=80)), max_size=40
).map("\n".join)


def _numbers_in(text: str) -> set[float]:
    return {float(n) for n in NUMBER.findall(text)}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(stream)
def test_never_crashes_and_never_invents_a_bandwidth(text: str) -> None:
    try:
        out = parse_output(text)
    except ParseError:
        assert text.lstrip().startswith("{")  # only JSON input can be refused
        return
    seen = _numbers_in(text)
    for value in iter_busbw(out.run):
        assert value in seen
    if out.run.avg_busbw is not None:
        assert out.run.avg_busbw in seen


@settings(max_examples=200)
@given(st.text())
def test_arbitrary_unicode_is_not_a_crash(text: str) -> None:
    try:
        parse_output(text)
    except ParseError:
        assert text.lstrip().startswith("{")
