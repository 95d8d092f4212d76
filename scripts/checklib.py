"""What the Python check scripts share (check-chart.py, check-rules.py): PASS/FAIL reporting and
installing a PyPI package on first use."""

import importlib
import subprocess
import sys

failures: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> None:
    """Print one PASS/FAIL line (with the detail on failure) and remember the failures."""
    print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f"\n      {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def pip_ensure(module: str, package: str, *pip_args: str):
    """Import `module`, installing `package` with pip first when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        print(f"installing {package} (pip install {' '.join(pip_args)} {package})".replace("  ", " "))
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pip_args, package], check=True)
        importlib.invalidate_caches()
        return importlib.import_module(module)
