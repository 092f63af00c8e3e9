"""Cold-start cost of the Lambda code: import time of app.py in fresh interpreters.

    .venv/bin/python bench/cold_start.py [--runs 21] [--json]

Three figures, each the median of ``--runs`` fresh processes (a new interpreter is what a cold
Lambda container is; an in-process re-import would hit the module cache):

- ``import app``: what Lambda's init phase runs for every function (they share app.py);
- ``import app + services ready``: plus what the first invocation builds lazily (settings,
  the boto3 DynamoDB client, the services); no request is sent, credentials are fake;
- the modules that dominate ``import app`` (``python -X importtime``, one run).

Measured on this machine's CPU; Lambda's arm64 at 256 MB gets a fraction of a vCPU, so expect
the absolute numbers there to be several times higher, in the same proportions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_IMPORT = """
import time
t = time.perf_counter()
import app
print(time.perf_counter() - t)
"""

_READY = """
import time
t = time.perf_counter()
import app
from chalicelib import bootstrap
bootstrap.services()
print(time.perf_counter() - t)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SWITCHBOARD_"))}
    env.update({
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "cold-start-bench", "AWS_SECRET_ACCESS_KEY": "cold-start-bench",
        "PYTHONDONTWRITEBYTECODE": "0",
    })
    return env


def _time(snippet: str, runs: int) -> list[float]:
    # One warm-up run so .pyc files exist (Lambda ships them in the zip: Chalice compiles).
    subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=_env(), check=True,
                   capture_output=True)
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=_env(), check=True,
                             capture_output=True, text=True).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return samples


def heaviest_imports(limit: int = 10) -> list[tuple[str, float]]:
    """(module, cumulative seconds) of the costliest imports under ``import app``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], cwd=ROOT,
                         env=_env(), check=True, capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:"):
            continue
        _self, cumulative, raw_name = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        depth = (len(raw_name) - len(raw_name.lstrip()) - 1) // 2  # two spaces per level
        rows.append((depth, raw_name.strip(), int(cumulative) / 1e6))
    # Direct imports of app.py (depth 1) and of its handler modules (depth 2) are actionable.
    picked = [(n, s) for d, n, s in rows if d in (1, 2) and n != "app"]
    return sorted(picked, key=lambda r: -r[1])[:limit]


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_s": round(statistics.median(ordered), 4),
        "min_s": round(ordered[0], 4),
        "p90_s": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 4),
        "runs": len(ordered),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = {
        "python": sys.version.split()[0],
        "import_app": summary(_time(_IMPORT, args.runs)),
        "import_app_and_services_ready": summary(_time(_READY, args.runs)),
        "heaviest_imports": [{"module": m, "cumulative_s": round(s, 4)}
                             for m, s in heaviest_imports()],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Python {result['python']}, {args.runs} fresh processes each")
    for key, label in (("import_app", "import app"),
                       ("import_app_and_services_ready", "import app + services ready")):
        s = result[key]
        assert isinstance(s, dict)
        print(f"  {label:<30} median {s['median_s'] * 1000:6.1f} ms   "
              f"min {s['min_s'] * 1000:6.1f} ms   p90 {s['p90_s'] * 1000:6.1f} ms")
    print("  heaviest imports under `import app` (cumulative):")
    for row in result["heaviest_imports"]:
        assert isinstance(row, dict)
        print(f"    {row['cumulative_s'] * 1000:6.1f} ms  {row['module']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
