"""The NCCL diagnostic: parse nccl-tests output and NCCL logs, judge them per profile, report.

The modules ``parse``, ``judge``, ``report`` and ``commands`` are pure; ``files`` and ``cli`` are the
edges that read and write reports.
"""
