"""Facts about a host's NVIDIA GPUs, driver and kernel, read before any GPU role decides anything.

The facts live in :mod:`roles.gpu_facts.facts`; the pure checks that compare them with the plan live
in :mod:`roles.gpu_facts.verify`. This concern has no operations of its own.
"""
