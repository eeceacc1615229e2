"""The setup a run ran on, recognised from nccl-tests' own device lines (real outputs first)."""

from __future__ import annotations

import pytest

from metalserve.catalog.gpus import GPUS, gpu_named
from metalserve.diag.parse import parse_output
from metalserve.diag.recognise import RecognisedSetup, recognise
from tests.diag import synthetic
from tests.diag.synthetic import fixture


def _setup(text: str) -> RecognisedSetup | None:
    return recognise(parse_output(text).run)


def _shape(text: str) -> tuple[str, int, int, str | None] | None:
    """GPU id, GPUs per node, nodes and preset of the setup recognised in ``text``."""
    setup = _setup(text)
    if setup is None:
        return None
    return (setup.gpu_id, setup.gpus_per_node, setup.nodes, setup.profile_id)


def test_a_real_8xh200_run_is_the_h200_preset() -> None:
    setup = _setup(fixture("h200-8_single-16g_azurehpc-nhc142.log"))
    assert setup == RecognisedSetup(
        gpu_id="h200-sxm", gpu_name="NVIDIA H200", gpus_per_node=8, nodes=1, profile_id="h200-sxm-8"
    )
    assert setup.text == "8 × NVIDIA H200 on 1 node, profile h200-sxm-8"
    assert setup.why_no_profile is None


def test_a_real_8xh100_json_report_is_the_h100_preset() -> None:
    assert _shape(fixture("h100-8_json-v3_azure-chm.json")) == ("h100-sxm", 8, 1, "h100-sxm-8")


def test_four_h100_on_one_node_are_the_nvlink_preset() -> None:
    text = synthetic.run_text(synthetic.sizes_at(300.0), hosts=("node",), gpus_per_host=4)
    assert _shape(text) == ("h100-sxm", 4, 1, "h100-sxm-4")


def test_the_real_two_spark_run_counts_hosts_as_nodes_and_names_no_fabric() -> None:
    log = fixture("gb10-2_v2.20_dgx-spark-pr103.log")
    assert _shape(log) == ("gb10", 1, 2, None)
    setup = _setup(log)
    assert setup is not None and setup.text == "2 × NVIDIA GB10 on 2 nodes, 1 per node"
    assert "no fabric between the nodes" in (setup.why_no_profile or "")


def test_two_nodes_of_eight_h100_are_recognised_without_a_preset() -> None:
    """The 2×8 H100 preset is RoCE 8×400G; the device lines cannot tell RoCE from IB or 4 NICs."""
    assert _shape(synthetic.healthy_ib()) == ("h100-sxm", 8, 2, None)


def test_a_count_the_catalogue_has_no_preset_for_is_recognised_without_one() -> None:
    log = fixture("rtx4090-2_p2p-disabled-roce_tinygrad45.log")
    assert _shape(log) == ("rtx-4090", 2, 1, None)
    setup = _setup(log)
    assert setup is not None
    assert setup.why_no_profile == "no catalogue setup of 2 × rtx-4090 on one node"


@pytest.mark.parametrize(
    "log",
    [
        "a100-pcie-4_socket-fallback_nccl1812.log",  # NVIDIA A100-PCIE-40GB: not in the catalogue
        "a100-sxm4-8_pre213_superbench.log",  # A100-SXM4-40GB: the catalogue holds the 80 GB
        "2x200g_headerless-footer_nccl-tests119.log",  # no device lines at all
        "h100-3x8_ib-gdrdma-nvls_nccl1453.log",  # NCCL INFO lines, no nccl-tests device lines
    ],
)
def test_real_runs_without_a_catalogue_gpu_or_device_lines_are_not_recognised(log: str) -> None:
    assert _setup(fixture(log)) is None


def test_nodes_with_different_gpu_counts_are_not_recognised() -> None:
    assert _setup(synthetic.one_rank_short()) is None  # gpu01 ran 8 ranks, gpu02 7


def test_a_run_on_two_gpu_models_is_not_recognised() -> None:
    text = synthetic.run_text(synthetic.sizes_at(300.0), hosts=("node",)).replace(
        "device  7 [0000:1f:00] NVIDIA H100 80GB HBM3", "device  7 [0000:1f:00] NVIDIA H100 PCIe"
    )
    assert "NVIDIA H100 PCIe" in text
    assert _setup(text) is None


def test_every_catalogue_gpu_is_found_by_the_name_the_driver_gives_it() -> None:
    for gpu in GPUS.values():
        assert gpu_named(gpu.name) == gpu


def test_names_are_matched_exactly_but_for_the_vendor_prefix_older_drivers_left_out() -> None:
    assert gpu_named("NVIDIA H200 NVL") is None  # a PCIe card, not the SXM H200
    assert gpu_named("NVIDIA H100") is None
    a100 = gpu_named("A100-SXM4-80GB")
    assert a100 is not None and a100.id == "a100-sxm"
