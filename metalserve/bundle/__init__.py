"""Offline bundles for sovereign sites: built on a connected machine, carried in, verified, and
deployed from (``sources.bundle``). An edge package: it downloads, runs apt, pip and gpg, and
writes files; what a bundle must hold is decided by the core (``metalserve.offline``)."""
