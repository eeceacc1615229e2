"""metalserve: the pure, typed core that plans a GPU serving host.

The core modules compute; they open no socket, run no command and read no file.
The edges (``cli``, ``sandbox``, ``bundle``, ``templating``) do the I/O.
"""

__version__ = "0.1.0"
