"""Edges of the core that read and write files and run processes on the control host: the
inventory loader, model folders, rendered unit files and their systemd-analyze scores,
nccl-tests reports, pyinfra runs.

Everything they decide comes from the pure core (``metalserve.plan`` and below); nothing in the
core imports them.
"""
