"""One version: the service's, the client's and the distribution's agree."""

from __future__ import annotations

from importlib.metadata import version

import chalicelib
import switchboard


def test_service_client_and_distribution_share_one_version() -> None:
    assert chalicelib.__version__ == switchboard.__version__ == version("switchboard")
