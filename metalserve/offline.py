"""What an offline bundle must hold for an inventory, and what a bundle's manifest says it holds.

Decided from the plans alone, without touching anything: per OS release and architecture, the
Debian packages (the plans' package sections and the NVIDIA stack at its pins); per Python and
platform, the engine, hub and converter wheel sets; the llama.cpp and nccl-tests sources; the model
snapshots. ``metalserve.bundle`` (the edge) fetches them and writes the manifest; ``shortfall``
compares a manifest with what an inventory needs, for ``bundle verify`` and before a deploy.

Example::

    needs = bundle_needs([(plan, plan_os)])
    shortfall(BundleManifest.model_validate_json(text), needs)   # [] when the bundle is enough
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import Field

from metalserve.catalog import pins
from metalserve.catalog.nvidia_stack import AptPin, kernel_headers_packages
from metalserve.catalog.packages import PUSH
from metalserve.hardware import Frozen
from metalserve.plan import HostPlan
from metalserve.target import HostOs, Target, targets_of

BUNDLE_FORMAT = 1
"""Bumped when the layout or the manifest changes shape: a bundle of another format is refused."""

InputKind = Literal["apt", "wheels", "source", "weights"]


class BundleInput(Frozen):
    """One thing a bundle holds, named so a later build or check finds it again.

    ``items`` is what it was made from (package names, requirements, a version); a bundle made
    from more items still serves a plan needing fewer.
    """

    id: str
    kind: InputKind
    items: tuple[str, ...]
    target: str | None = Field(default=None, description="apt: the release-arch it is for")
    python: str | None = Field(default=None, description="wheels: the Python minor")
    platforms: tuple[str, ...] = Field(
        default=(), description="wheels: the platform tags the host's pip accepts"
    )
    preferences: tuple[AptPin, ...] = Field(
        default=(), description="apt: the pins that choose the versions, as the hosts pin them"
    )
    nvidia: bool = Field(default=False, description="apt: from NVIDIA's CUDA repository")
    dest: str = Field(description="where it lies in the bundle, relative to its root")


class HostTargets(Frozen):
    host: str
    targets: tuple[str, ...]


class BundleNeeds(Frozen):
    hosts: tuple[HostTargets, ...]
    targets: tuple[Target, ...]
    inputs: tuple[BundleInput, ...]
    pins: dict[str, str]
    notes: tuple[str, ...] = ()


class FileRecord(Frozen):
    size: int
    sha256: str


class InputRecord(Frozen):
    """A bundled input: what it was made from, where it came from, and its files."""

    id: str
    kind: InputKind
    items: tuple[str, ...]
    origin: str
    files: tuple[str, ...]


class BundleManifest(Frozen):
    """``bundle.json``: every file's size and sha256, the inputs, and what it was built for."""

    format: int
    hosts: tuple[HostTargets, ...]
    pins: dict[str, str]
    key_fingerprint: str | None
    inputs: tuple[InputRecord, ...]
    files: dict[str, FileRecord]

    def input(self, input_id: str) -> InputRecord | None:
        return next((i for i in self.inputs if i.id == input_id), None)


def _apt_inputs(plan: HostPlan, target: Target, host_os: HostOs | None) -> list[BundleInput]:
    # rsync carries the bundle onto the hosts: the plan asks for it only once its sources are the
    # bundle, and the inventory a bundle is built from may not name the bundle yet
    names = list(dict.fromkeys((*plan.packages.names, *PUSH)))
    if plan.fabric is not None:
        names += plan.fabric.packages
    nvidia = plan.nvidia
    if nvidia is not None and host_os is not None and host_os.kernel:
        names += kernel_headers_packages(target.release, host_os.kernel)
    dest = f"apt/{target.name}"
    made = [
        BundleInput(
            id=f"apt/{target.name}/distro",
            kind="apt",
            items=tuple(names),
            target=target.name,
            dest=dest,
        )  # fmt: skip
    ]
    if nvidia is not None:
        stack = [nvidia.driver_lock_pin, nvidia.driver_pin(target.release), nvidia.cuda_pin]
        stack += [nvidia.nccl_pin] + ([nvidia.fabricmanager_pin] if nvidia.fabric_manager else [])
        made.append(
            BundleInput(
                id=f"apt/{target.name}/nvidia",
                kind="apt",
                items=tuple(name for pin in stack for name in pin.packages),
                target=target.name,
                preferences=tuple(stack),
                nvidia=True,
                dest=dest,
            )
        )
    return made


def _wheel_sets(plan: HostPlan) -> list[tuple[str, tuple[str, ...]]]:
    sets: list[tuple[str, tuple[str, ...]]] = []
    if plan.engine.venv is not None and plan.engine.requirements:
        sets.append((plan.engine.name, plan.engine.requirements))
    if plan.weights is not None:
        sets.append(("hub", plan.weights.hub_requirements))
    if plan.gguf is not None:
        sets.append(("converter", plan.gguf.converter_requirements))
    return sets


def _wheel_inputs(plan: HostPlan, target: Target) -> list[BundleInput]:
    return [
        BundleInput(
            id=f"wheels/{target.wheel_tag}/{name}",
            kind="wheels",
            items=requirements,
            python=target.python,
            platforms=target.wheel_platforms,
            dest="wheels",
        )
        for name, requirements in _wheel_sets(plan)
    ]


def _other_inputs(plan: HostPlan) -> list[BundleInput]:
    made = []
    if plan.llamacpp is not None:
        made.append(
            BundleInput(
                id="source/llama.cpp",
                kind="source",
                items=(plan.llamacpp.version,),
                dest=f"sources/llama.cpp-{plan.llamacpp.version}.tar.gz",
            )
        )
    if plan.diag is not None:
        ref = plan.diag.source.ref
        made.append(
            BundleInput(
                id="source/nccl-tests",
                kind="source",
                items=(ref,),
                dest=f"sources/nccl-tests-{ref}.tar.gz",
            )
        )
    weights = plan.weights
    if weights is not None:
        made.append(
            BundleInput(
                id=f"weights/{weights.repo_id}",
                kind="weights",
                items=(weights.revision,),
                dest=f"models/{weights.repo_id.replace('/', '--')}",
            )
        )
    return made


def _pins(plans: Iterable[HostPlan]) -> dict[str, str]:
    found: dict[str, str] = {}
    for plan in plans:
        if plan.nvidia is not None:
            stack = plan.nvidia.pins
            found |= {
                "nvidia-driver": stack.driver_version,
                "cuda": stack.cuda_version,
                "nccl": stack.nccl_version,
            }
        if plan.engine.venv is not None:
            found[plan.engine.name] = plan.engine.version
        if plan.llamacpp is not None:
            found["llama.cpp"] = plan.llamacpp.version
        if plan.diag is not None:
            found["nccl-tests"] = plan.diag.source.ref
        if plan.weights is not None:
            found[pins.HUGGINGFACE_HUB.name] = pins.HUGGINGFACE_HUB.version
            found[f"model {plan.weights.repo_id}"] = plan.weights.revision
        if plan.gguf is not None:
            found |= {pin.name: pin.version for pin in pins.CONVERTER_REQUIREMENTS}
    return dict(sorted(found.items()))


def _notes(plan: HostPlan, host_os: HostOs | None, targets: Sequence[Target]) -> list[str]:
    notes = []
    if host_os is None:
        names = ", ".join(t.name for t in targets)
        notes.append(
            f"{plan.host}: metalserve.os not given — bundling every supported release ({names}); "
            'set it (e.g. "os": {"release": "ubuntu2204", "arch": "amd64"}) to bundle one'
        )
    if plan.nvidia is not None and (host_os is None or not host_os.kernel):
        notes.append(
            f"{plan.host}: metalserve.os.kernel not given — no kernel headers in the bundle, and "
            "DKMS needs them for the running kernel; set it to the host's `uname -r`"
        )
    return notes


def bundle_needs(hosts: Sequence[tuple[HostPlan, HostOs | None]]) -> BundleNeeds:
    """Everything these hosts' deploys take from a bundle, each input once."""
    inputs: dict[str, BundleInput] = {}
    host_targets, targets, notes = [], [], []
    for plan, host_os in hosts:
        mine = targets_of(host_os, plan.profile)
        host_targets.append(HostTargets(host=plan.host, targets=tuple(t.name for t in mine)))
        targets += [t for t in mine if t not in targets]
        notes += [n for n in _notes(plan, host_os, mine) if n not in notes]
        made = [i for t in mine for i in (*_apt_inputs(plan, t, host_os), *_wheel_inputs(plan, t))]
        for need in [*made, *_other_inputs(plan)]:
            inputs[need.id] = _merged(inputs.get(need.id), need)
    return BundleNeeds(
        hosts=tuple(host_targets),
        targets=tuple(targets),
        inputs=tuple(inputs.values()),
        pins=_pins(plan for plan, _ in hosts),
        notes=tuple(notes),
    )


def _merged(known: BundleInput | None, new: BundleInput) -> BundleInput:
    """Two hosts needing the same input: the union of their items (the same pins on a cluster)."""
    if known is None:
        return new
    items = (*known.items, *(i for i in new.items if i not in known.items))
    return known.model_copy(update={"items": items})


def shortfall(manifest: BundleManifest, needs: BundleNeeds, hosts: bool = False) -> list[str]:
    """What ``needs`` asks for that the bundle lacks, one line each: a missing input, an input
    made from fewer items, a pin of another version, a manifest file of a listed input not in the
    files table; with ``hosts``, a bundle built for another set of hosts."""
    problems = []
    if manifest.format != BUNDLE_FORMAT:
        return [f"bundle format {manifest.format}, expected {BUNDLE_FORMAT} — fix: build it again"]
    for need in needs.inputs:
        record = manifest.input(need.id)
        if record is None:
            problems.append(f"{need.id}: not in the bundle")
            continue
        lacking = [item for item in need.items if item not in record.items]
        if lacking:
            problems.append(f"{need.id}: lacks {', '.join(lacking)}")
    for name, version in needs.pins.items():
        has = manifest.pins.get(name)
        if has != version:
            found = f"built for {has}" if has else "built without it"
            problems.append(f"pin {name}: the inventory needs {version}, the bundle was {found}")
    if hosts:
        problems += _host_problems(manifest, needs)
    return problems


def _host_problems(manifest: BundleManifest, needs: BundleNeeds) -> list[str]:
    built = {h.host: h.targets for h in manifest.hosts}
    wanted = {h.host: h.targets for h in needs.hosts}
    problems = []
    if set(built) != set(wanted):
        problems.append(
            f"hosts: the bundle was built for {', '.join(sorted(built)) or 'none'}, the inventory "
            f"has {', '.join(sorted(wanted))}"
        )
    for host in sorted(set(built) & set(wanted)):
        if set(wanted[host]) - set(built[host]):
            problems.append(
                f"host {host}: the bundle was built for {', '.join(built[host])}, the inventory "
                f"needs {', '.join(wanted[host])}"
            )
    return problems
