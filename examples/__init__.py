"""Runnable examples built on the public Switchboard SDK (not part of the installed package)."""
