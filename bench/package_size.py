"""Size of the Lambda deployment package, and what the Powertools layer would save.

    .venv/bin/python bench/package_size.py [--stage dev] [--json]

Runs ``chalice package`` (as ``make package`` does, without cfn-lint) into a temporary
directory and breaks ``deployment.zip`` down by top-level package. "Without Powertools" is the
zip minus ``aws_lambda_powertools`` and its dist-info: what each function would upload with the
public Powertools layer instead (docs/deploy.md, "Package size").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.package import package  # noqa: E402

POWERTOOLS = ("aws_lambda_powertools", "aws_lambda_powertools-")


def _group(name: str) -> str:
    top = name.split("/", 1)[0]
    if top.endswith((".dist-info", ".data")):
        return top.split("-", 1)[0].lower() + " (metadata)"
    return top or name


def measure(stage: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        packaged = package(stage, Path(tmp) / stage, lint=False)
        zip_bytes = packaged.zip.stat().st_size
        groups: dict[str, int] = defaultdict(int)
        unpacked = 0
        powertools = 0
        with zipfile.ZipFile(packaged.zip) as archive:
            entries = archive.infolist()
            for info in entries:
                groups[_group(info.filename)] += info.compress_size
                unpacked += info.file_size
                if info.filename.startswith(POWERTOOLS):
                    powertools += info.compress_size
    top = sorted(groups.items(), key=lambda kv: -kv[1])[:8]
    return {
        "stage": stage,
        "zip_bytes": zip_bytes,
        "unpacked_bytes": unpacked,
        "files": len(entries),
        "zip_bytes_without_powertools": zip_bytes - powertools,
        "largest": [{"name": n, "compressed_bytes": b} for n, b in top],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.stage)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def mb(n: object) -> str:
        assert isinstance(n, int)
        return f"{n / 1024 / 1024:.2f} MiB"

    print(f"deployment.zip ({result['stage']}): {mb(result['zip_bytes'])} compressed, "
          f"{mb(result['unpacked_bytes'])} unpacked, {result['files']} files")
    print(f"  without Powertools (layer option): {mb(result['zip_bytes_without_powertools'])}")
    largest = result["largest"]
    assert isinstance(largest, list)
    for row in largest:
        print(f"  {mb(row['compressed_bytes']):>10}  {row['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
