"""The NCCL diagnostic: parse nccl-tests output and NCCL logs, judge them per profile, report.

Every module here is pure; the edges that read and write reports are ``metalserve.io.reports``
and ``metalserve.cli.diag``.
"""
