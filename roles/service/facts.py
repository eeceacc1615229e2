"""Facts about the running engine service."""

from __future__ import annotations

from pyinfra.api import FactBase


class HttpStatus(FactBase[int]):
    """The HTTP status a GET of ``url`` answers on the host, 0 when nothing answers.

    Example::

        host.get_fact(HttpStatus, url="http://127.0.0.1:8080/health")  # 200, 503, 0
    """

    def command(self, url: str) -> str:
        return (
            "curl --silent --output /dev/null --max-time 5 --write-out '%{http_code}' "
            f"{url} || true"
        )

    def process(self, output: list[str]) -> int:
        text = "".join(output).strip()
        return int(text) if text.isdigit() else 0
