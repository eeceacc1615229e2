"""The judge's verdicts and reasons, on real outputs and synthetic degraded runs."""

from __future__ import annotations

import pytest

from metalserve.catalog.busbw import EXPECTED_ALLREDUCE_BUSBW, THRESHOLDS, expectation_for
from metalserve.catalog.profiles import PROFILES
from metalserve.diag.judge import Topology, Verdict, judge, topology_of
from metalserve.diag.parse import parse_output
from metalserve.errors import SpecError
from tests.diag import synthetic
from tests.diag.synthetic import fixture
from tests.diag.test_parse import NO_GDR_INIT

H100_8 = Topology(gpus_per_node=8, nodes=1, interconnect="nvswitch")
H100_2x8_ROCE = Topology(gpus_per_node=8, nodes=2, interconnect="nvswitch", fabric="roce_v2")
H200_2x8_IB = Topology(gpus_per_node=8, nodes=2, interconnect="nvswitch", fabric="infiniband")
PCIE_8 = Topology(gpus_per_node=8, nodes=1, interconnect="pcie")

PROFILE_IDS = {
    "h200-sxm-8",
    "h100-sxm-8",
    "h100-sxm-4",
    "rtxpro6000-8",
    "rtxpro6000-4",
    "rtx4090-4",
    "dgx-spark-3",
    "h200-sxm-8x2-ib",
    "h100-sxm-8x2-roce",
}


def codes(judgement) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.code for r in judgement.reasons]


def test_every_profile_has_a_sourced_entry() -> None:
    assert set(EXPECTED_ALLREDUCE_BUSBW) == PROFILE_IDS
    for e in EXPECTED_ALLREDUCE_BUSBW.values():
        assert e.source and e.basis


def test_real_8xh100_json_passes_against_its_profile() -> None:
    j = judge(
        parse_output(fixture("h100-8_json-v3_azure-chm.json")),
        H100_8,
        expectation_for("h100-sxm-8"),
    )
    assert j.verdict is Verdict.PASS
    assert (j.measured_busbw, j.measured_at_bytes, j.expected_busbw) == (480.902491, 1 << 34, 473.6)
    assert "is 102 % of the expected 473.6 GB/s" in j.reasons[0].message


def test_a100_numbers_fail_against_the_h100_profile_and_say_how_far() -> None:
    j = judge(
        parse_output(fixture("a100-sxm4-8_pre213_superbench.log")),
        H100_8,
        expectation_for("h100-sxm-8"),
    )
    assert j.verdict is Verdict.FAIL and codes(j) == ["bandwidth-fail"]
    assert "235.26 GB/s at 8 GiB is 50 %" in j.reasons[0].message


def test_inventory_override_changes_the_bar() -> None:
    parsed = parse_output(fixture("a100-sxm4-8_pre213_superbench.log"))
    j = judge(parsed, H100_8, expectation_for("h100-sxm-8", override_gbps=235.0))
    assert j.verdict is Verdict.PASS and j.expected_source is not None
    assert "inventory override" in j.expected_source


@pytest.mark.parametrize(
    ("busbw", "verdict"),
    [(473.6 * 0.96, Verdict.PASS), (473.6 * 0.92, Verdict.WARN), (473.6 * 0.85, Verdict.FAIL)],
)
def test_thresholds_split_pass_warn_fail(busbw: float, verdict: Verdict) -> None:
    text = synthetic.run_text(synthetic.sizes_at(round(busbw, 2)), hosts=("node",))
    j = judge(parse_output(text), H100_8, expectation_for("h100-sxm-8"))
    assert j.verdict is verdict
    assert THRESHOLDS.fail_ratio < THRESHOLDS.pass_ratio


def test_socket_fallback_on_a_roce_pair_fails_with_the_cause() -> None:
    j = judge(
        parse_output(synthetic.socket_fallback()),
        H100_2x8_ROCE,
        expectation_for("h100-sxm-8x2-roce"),
    )
    assert j.verdict is Verdict.FAIL
    messages = [r.message for r in j.reasons]
    assert any(
        m.startswith("fell back to NET/Socket — IB disabled or GID index wrong") for m in messages
    )
    assert "bandwidth-fail" in codes(j)


def test_healthy_ib_pair_passes_and_missing_gdrdma_warns() -> None:
    ok = judge(
        parse_output(synthetic.healthy_ib()), H200_2x8_IB, expectation_for("h200-sxm-8x2-ib")
    )
    assert ok.verdict is Verdict.PASS, ok.reasons
    slow = judge(
        parse_output(synthetic.without_gdrdma()), H200_2x8_IB, expectation_for("h200-sxm-8x2-ib")
    )
    assert "no-gdrdma" in codes(slow) and slow.verdict is Verdict.FAIL


def test_missing_gpu_is_named_as_such() -> None:
    j = judge(parse_output(synthetic.missing_gpu()), H100_8, expectation_for("h100-sxm-8"))
    assert j.verdict is Verdict.FAIL
    assert j.reasons[0].message.startswith("1 of 8 GPUs missing")


def test_one_rank_short_of_the_inventory() -> None:
    j = judge(
        parse_output(synthetic.one_rank_short()), H200_2x8_IB, expectation_for("h200-sxm-8x2-ib")
    )
    assert "1 of 16 GPUs missing (15 ranks ran)" in j.reasons[0].message


def test_wrong_results_fail_even_at_full_speed() -> None:
    j = judge(
        parse_output(synthetic.wrong_results()), H200_2x8_IB, expectation_for("h200-sxm-8x2-ib")
    )
    assert j.verdict is Verdict.FAIL
    assert j.reasons[0].message.startswith(
        "data corruption: #wrong > 0 at 4 size(s), first at 1 GiB"
    )


def test_abort_reports_the_failure_and_the_nccl_warn() -> None:
    j = judge(parse_output(synthetic.aborted()), H200_2x8_IB, expectation_for("h200-sxm-8x2-ib"))
    assert j.verdict is Verdict.FAIL
    assert codes(j)[:2] == ["aborted-nccl", "aborted-nccl-warn"]
    assert j.reasons[1].message.startswith("aborted: NCCL WARN NET/IB : Got completion from peer")


def test_real_abort_chain_is_one_reason_naming_the_hosts() -> None:
    j = judge(
        parse_output(fixture("h100-2node_rows-then-abort_nccl-tests322.log")),
        H100_2x8_ROCE,
        expectation_for("h100-sxm-8x2-roce"),
    )
    aborts = [r for r in j.reasons if r.code == "aborted-nccl"]
    assert len(aborts) == 1 and "(on 3 hosts)" in aborts[0].message


def test_p2p_disabled_costs_are_spelled_out() -> None:
    j = judge(parse_output(synthetic.p2p_disabled(22.0)), PCIE_8, expectation_for("rtxpro6000-8"))
    reason = next(r for r in j.reasons if r.code == "p2p-disabled")
    assert reason.message.startswith("P2P disabled: NCCL_P2P_DISABLE=1 costs 40-60 %")
    assert reason.verdict is Verdict.WARN  # PCIe: a warning; on NVLink it fails
    nvlink = judge(
        parse_output(synthetic.p2p_disabled(22.0)), H100_8, expectation_for("h100-sxm-8")
    )
    assert next(r for r in nvlink.reasons if r.code == "p2p-disabled").verdict is Verdict.FAIL


def test_shm_is_expected_where_the_cards_have_no_p2p() -> None:
    no_p2p = Topology(gpus_per_node=4, nodes=1, interconnect="pcie", p2p_available=False)
    j = judge(parse_output(synthetic.p2p_disabled(15.5)), no_p2p, expectation_for("rtx4090-4"))
    assert "p2p-disabled" not in codes(j) and j.verdict is Verdict.PASS


def test_without_nvls_the_ring_figure_is_the_bar() -> None:
    j = judge(parse_output(synthetic.nvls_off(368.0)), H100_8, expectation_for("h100-sxm-8"))
    assert j.expected_busbw == 370.0
    assert j.verdict is Verdict.WARN and codes(j) == ["nvls-off", "bandwidth-ok"]


def test_unknown_is_not_fail() -> None:
    small = judge(
        parse_output(fixture("gb10-2_v2.20_dgx-spark-pr103.log")),
        Topology(gpus_per_node=1, nodes=2, interconnect="unified", fabric="roce_v2"),
        expectation_for("dgx-spark-3"),
    )
    assert small.verdict is Verdict.UNKNOWN and not small.fails_host
    assert small.reasons[0].message.startswith("largest message was 64 KiB")
    no_figure = judge(
        parse_output(synthetic.run_text(synthetic.sizes_at(300.0), hosts=("node",))),
        Topology(gpus_per_node=4, nodes=1, interconnect="nvlink"),
        expectation_for("h100-sxm-4"),
    )
    assert no_figure.verdict is Verdict.UNKNOWN
    assert "metalserve.diag.expected_busbw" in no_figure.reasons[0].message
    empty = judge(parse_output("nothing to see\n"), H100_8, expectation_for("h100-sxm-8"))
    assert empty.verdict is Verdict.UNKNOWN and codes(empty) == ["no-results"]


def test_unknown_profile_and_bad_override_are_operator_errors() -> None:
    with pytest.raises(SpecError, match="found 'h300-sxm-8'"):
        expectation_for("h300-sxm-8")
    with pytest.raises(SpecError, match="expected a bandwidth in GB/s > 0"):
        expectation_for("h100-sxm-8", override_gbps=0)


def test_no_peermem_advice_for_a_gpu_that_cannot_use_it() -> None:
    """GB10 (DGX Spark) has no GPUDirect RDMA through nvidia-peermem: telling its operator to load
    the module would send them after a fix that fails with EINVAL."""
    spark = topology_of(PROFILES["dgx-spark-3"])
    assert spark.gpudirect_rdma is False
    j = judge(parse_output(synthetic.without_gdrdma()), spark, None)
    assert "no-gdrdma" not in codes(j)
    assert "no-gdrdma" in codes(judge(parse_output(synthetic.without_gdrdma()), H200_2x8_IB, None))


def test_no_gdrdma_names_the_hcas_nccl_refused_and_the_two_ways_back() -> None:
    log = synthetic.IB_LOG.replace("/GDRDMA", "") + "\n".join(NO_GDR_INIT) + "\n"
    j = judge(
        parse_output(synthetic.run_text(synthetic.sizes_at(380.0), log=log)), H200_2x8_IB, None
    )
    (reason,) = [r for r in j.reasons if r.code == "no-gdrdma"]
    assert "mlx5_0, mlx5_1" in reason.message
    assert "open kernel modules" in reason.message and "MLNX_OFED/DOCA-OFED" in reason.message
