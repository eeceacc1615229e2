"""Offline inputs built on the control host and cached by what they are built from.

This is an edge package: it downloads, unpacks and writes files. The core never imports it.
"""

from metalserve.artefacts.cache import ArtefactError, CacheEntry, cache_root
from metalserve.artefacts.llamacpp import LlamaCppSource, llamacpp_source

__all__ = ["ArtefactError", "CacheEntry", "LlamaCppSource", "cache_root", "llamacpp_source"]
