"""Switchboard's deployed service: everything the Lambda functions run (see app.py)."""

# The service's version (health, OpenAPI). The client's is switchboard.__version__; a unit
# test keeps the two, and pyproject.toml's (read from the client's), equal.
__version__ = "0.1.0"
