"""The deploy ``bench/push.py`` runs: one folder onto the host, as its host data ``bench_push``
says: with ``roles.push`` (``how: push``, ``streams`` rsyncs at most for the big files) or with
pyinfra's ``files.sync`` as the roles did before (``how: files.sync``)."""

from pyinfra import host
from pyinfra.operations import files

import roles.push

job = host.data.get("bench_push")
if job["how"] == "push":
    roles.push.STREAMS = job["streams"]
    roles.push.push(name="bench: push", src=job["src"], dest=job["dest"])
else:
    files.sync(name="bench: files.sync", src=job["src"], dest=job["dest"])
