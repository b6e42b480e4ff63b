"""The programs of scripts/ and tools/ in a plain clone: the requirements installed, the project not (no
`pip install -e .`). Each runs, or stops with one line that says what to do; none ends in a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO_ROOT

SCRIPTS = sorted(path.name for path in (REPO_ROOT / "scripts").glob("*.py"))
TOOLS = [path.stem for path in sorted((REPO_ROOT / "tools").glob("*.py"))
         if "\nif __name__ == \"__main__\":" in path.read_text(encoding="utf-8")]


def plain_python(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run this Python on args from the repository root as in a clone with only the requirements installed.

    -S leaves out site and with it the .pth files, among them the editable install's finder; the site-packages
    folders then come back through PYTHONPATH, which reads no .pth file. So torch and the other requirements
    import, the project's packages only from where Python itself looks: the script's folder, or the working
    directory for `python -m`.
    """
    site = os.pathsep.join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env |= {"PYTHONPATH": site, "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-S", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def clone_without_project(tmp_path_factory) -> None:
    """Check that the simulation hides the project: from outside the checkout, `import models` must fail."""
    proc = plain_python(["-c", "import os, sys; os.chdir(sys.argv[1]); sys.path.remove(''); import models",
                         str(tmp_path_factory.mktemp("elsewhere"))], tmp_path_factory.mktemp("home"))
    if proc.returncode == 0:
        pytest.skip("the project is installed into site-packages itself (not editable): a plain clone cannot be "
                    "simulated here")
    assert "No module named 'models'" in proc.stderr


def one_line_or_success(proc: subprocess.CompletedProcess, says: str) -> None:
    """Assert that the program ran (exit 0), or stopped with exactly one line on stderr that contains says."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_runs_or_says_to_install_the_project(script, clone_without_project, tmp_path):
    # make_demo_data.py imports the project only once it builds (its --help needs nothing more).
    args = [str(tmp_path / "demo")] if script == "make_demo_data.py" else ["--help"]
    proc = plain_python([f"scripts/{script}", *args], tmp_path)
    one_line_or_success(proc, "pip install -e .")
    if script in ("export_onnx.py", "get_weights.py", "make_demo_data.py", "make_synthetic_set.py"):
        assert proc.returncode != 0 and "No module named" in proc.stderr  # they import the project
        assert not (tmp_path / "demo").exists() and not (tmp_path / "demo.partial").exists()


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_runs_as_a_module_from_a_plain_clone(tool, clone_without_project, tmp_path):
    proc = plain_python(["-m", f"tools.{tool}", "--help"], tmp_path)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-3000:]
    # Run as a file it has no repository root on its path: it runs, or says how to run it.
    one_line_or_success(plain_python([f"tools/{tool}.py", "--help"], tmp_path), f"python -m tools.{tool}")
