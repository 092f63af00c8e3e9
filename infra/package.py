"""Build the deployable CloudFormation stack of a stage, offline, and lint it.

    python -m infra.package --stage prod [--out build/prod]      # what `make package` runs
    python -m infra.package --write-policies                      # after editing infra/iam.py

Steps: write the stage's merge fragment (infra/stack.py), run ``chalice package`` with it
(Chalice pip-downloads the arm64 wheels of requirements.txt from PyPI; no AWS call is made and
no credentials are needed, only a region), then run cfn-lint on the result. The output
directory holds ``sam.json`` and ``deployment.zip``, ready for ``aws cloudformation package``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import iam
from .stack import PROFILES, ROOT, load_config, merge_template

CHALICE_DIR = ROOT / ".chalice"


def _bin(name: str) -> str:
    # The tools of the interpreter running us (the project venv), not whatever is on PATH.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def policy_path(stage: str, function: str) -> Path:
    return CHALICE_DIR / f"policy-{stage}-{function}.json"


def expected_policies(config: dict[str, Any] | None = None) -> dict[Path, str]:
    """The .chalice/policy-<stage>-<function>.json files infra/iam.py implies, as text."""
    config = config if config is not None else load_config()
    app, api_stage = config["app_name"], config.get("api_gateway_stage", "api")
    return {
        policy_path(stage, function): json.dumps(
            iam.chalice_policy(app, stage, api_stage, function), indent=2
        ) + "\n"
        for stage in PROFILES
        for function in iam.FUNCTIONS
    }


def stale_policies() -> list[Path]:
    return [p for p, text in expected_policies().items()
            if not p.exists() or p.read_text() != text]


def write_policies() -> list[Path]:
    written = []
    for path, text in expected_policies().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


class PackageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Packaged:
    stage: str
    out: Path
    seconds: float

    @property
    def template(self) -> Path:
        return self.out / "sam.json"

    @property
    def zip(self) -> Path:
        return self.out / "deployment.zip"

    def load(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.template.read_text())
        return loaded


def package(stage: str, out: Path, lint: bool = True) -> Packaged:
    """``chalice package`` the stage with its merge fragment into ``out`` (replaced)."""
    if stage not in PROFILES:
        raise PackageError(f"Unknown stage {stage!r}; choose one of: {', '.join(PROFILES)}.")
    stale = stale_policies()
    if stale:
        raise PackageError(
            "These Chalice policy files do not match infra/iam.py: "
            + ", ".join(p.name for p in stale)
            + ". Run `python -m infra.package --write-policies` and commit them."
        )
    started = time.monotonic()
    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # Outside `out`: Chalice refuses to package into a directory that already has files.
    fragment = out.parent / f"{out.name}.merge.json"
    fragment.write_text(json.dumps(merge_template(stage), indent=2) + "\n")
    env = {**os.environ}
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
    command = [
        _bin("chalice"), "--project-dir", str(ROOT), "package", "--stage", stage,
        "--merge-template", str(fragment), str(out),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackageError(
            f"chalice package failed (exit {result.returncode}):\n{result.stderr or result.stdout}"
        )
    precompile(out / "deployment.zip", _runtime(out / "sam.json"))
    packaged = Packaged(stage, out, time.monotonic() - started)
    if lint:
        cfn_lint(packaged.template)
    return packaged


def _runtime(template: Path) -> str:
    """The functions' Lambda runtime (Chalice uses the packaging interpreter's version)."""
    resources = json.loads(template.read_text())["Resources"]
    runtimes = {r["Properties"]["Runtime"] for r in resources.values()
                if r.get("Type") == "AWS::Serverless::Function"}
    if len(runtimes) != 1:
        raise PackageError(f"Expected one Lambda runtime in {template}, found {runtimes}.")
    return runtimes.pop()


def precompile(zip_path: Path, runtime: str) -> int:
    """Add bytecode to the deployment zip: ``/var/task`` is read-only, so without it every
    cold start compiles every module it imports (bench/cold_start.py: 30-50 % of a first
    invocation). Compiled by this interpreter, which must be the runtime's version, with
    unchecked-hash invalidation (valid whatever the files' times in the zip). Returns the
    number of .pyc files added."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if version != runtime:
        raise PackageError(
            f"Bytecode compiled by {version} would be ignored by the {runtime} runtime: "
            f"package with {runtime} (make package uses the .venv's Python)."
        )
    import compileall
    import py_compile
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tree)
        compileall.compile_dir(
            tree, quiet=1, optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        rebuilt = Path(scratch) / "deployment.zip"
        added = 0
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(tree.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(tree))
                    added += path.suffix == ".pyc"
        shutil.move(str(rebuilt), zip_path)
    return added


def cfn_lint(template: Path) -> None:
    result = subprocess.run(
        [_bin("cfn-lint"), "--format", "parseable", str(template)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise PackageError(
            f"cfn-lint found problems in {template} (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="append", choices=sorted(PROFILES),
                        help="stage to package (repeatable; default: every stage)")
    parser.add_argument("--out", type=Path, help="output directory (default: build/<stage>)")
    parser.add_argument("--no-lint", action="store_true", help="skip cfn-lint")
    parser.add_argument("--write-policies", action="store_true",
                        help="regenerate .chalice/policy-*.json from infra/iam.py and exit")
    args = parser.parse_args(argv)
    if args.write_policies:
        for path in write_policies():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    stages = args.stage or sorted(PROFILES)
    if args.out is not None and len(stages) > 1:
        parser.error("--out needs exactly one --stage")
    for stage in stages:
        out = args.out or ROOT / "build" / stage
        try:
            packaged = package(stage, out, lint=not args.no_lint)
        except PackageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        size = packaged.zip.stat().st_size
        linted = "" if args.no_lint else ", cfn-lint clean"
        where = packaged.out
        if where.is_relative_to(ROOT):
            where = where.relative_to(ROOT)
        print(f"{stage}: {where}/sam.json + deployment.zip ({size / 1e6:.1f} MB) "
              f"in {packaged.seconds:.1f} s{linted}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
