"""Where metalserve puts things on a host. One place, so roles, units and docs agree."""

from __future__ import annotations

from metalserve.hardware import Frozen

ROOT = "/opt/metalserve"
DATA = "/var/lib/metalserve"
ETC = "/etc/metalserve"
UNIT_DIR = "/etc/systemd/system"
CCACHE_DIR = "/var/cache/ccache"
"""ccache's directory for builds on the host (the sandbox bind-mounts a shared one here)."""


class Layout(Frozen):
    """Paths for one host's deployment.

    Example::

        Layout.for_service("metalserve-llamacpp").env_file == "/etc/metalserve/metalserve-llamacpp.env"
    """

    service: str
    root: str = ROOT
    data: str = DATA
    etc: str = ETC

    @classmethod
    def for_service(cls, service: str) -> Layout:
        return cls(service=service)

    @property
    def venvs(self) -> str:
        return f"{self.root}/venvs"

    def venv(self, name: str) -> str:
        return f"{self.venvs}/{name}"

    @property
    def llamacpp_root(self) -> str:
        return f"{self.root}/llama.cpp"

    @property
    def sources(self) -> str:
        return f"{self.root}/src"

    @property
    def models(self) -> str:
        return f"{self.data}/models"

    @property
    def gguf(self) -> str:
        return f"{self.data}/gguf"

    @property
    def hf_home(self) -> str:
        return f"{self.data}/hf"

    @property
    def bin(self) -> str:
        """metalserve's own host-side scripts."""
        return f"{self.root}/bin"

    @property
    def credentials(self) -> str:
        return f"{self.etc}/credentials"

    @property
    def env_file(self) -> str:
        return f"{self.etc}/{self.service}.env"

    @property
    def unit_file(self) -> str:
        return f"{UNIT_DIR}/{self.service}.service"

    @property
    def keepwarm_service(self) -> str:
        return f"{self.service}-keepwarm"

    @property
    def state(self) -> str:
        """Stamps recording what a step built from, so a re-run can skip it."""
        return f"{self.data}/state"
