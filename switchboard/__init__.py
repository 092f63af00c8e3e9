"""Switchboard: durable, addressable pub/sub channels.

The installable, not-deployed half of the project: the Python SDK (``switchboard.client``),
the ``switchboard`` command line, and the local dev server (``switchboard.dev``).
"""

__version__ = "0.1.0"
