"""Package every stage once per test session (chalice package + merge fragment + cfn-lint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.package import Packaged, PackageError, package
from infra.stack import PROFILES

# Signs that PyPI (where Chalice fetches the Lambda wheels) could not be reached: the only
# reason to skip. Any other packaging or lint failure fails the tests.
_OFFLINE_SIGNS = ("NoSuchPackageError", "Could not satisfy the requirement",
                  "Failed to establish a new connection", "Temporary failure in name resolution")


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Packaged]:
    out = tmp_path_factory.mktemp("package")
    result = {}
    for stage in PROFILES:
        try:
            result[stage] = package(stage, Path(out) / stage)
        except PackageError as error:
            if any(sign in str(error) for sign in _OFFLINE_SIGNS):
                pytest.skip(f"chalice package needs PyPI for the Lambda wheels: {error}")
            raise
    return result


@pytest.fixture(scope="session")
def templates(packaged: dict[str, Packaged]) -> dict[str, dict]:
    return {stage: p.load() for stage, p in packaged.items()}
