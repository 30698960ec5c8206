"""The two ways to install (pip with pyproject.toml, conda with environment.yml) list the same
packages, and the set-up commands the README promises exist."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Distribution names that differ between PyPI and conda-forge.
CONDA_NAME = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return {CONDA_NAME.get(n, n) for n in names}


def environment_packages() -> set[str]:
    names, in_dependencies = set(), False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line and not line.startswith((" ", "-", "#")):
            in_dependencies = line.startswith("dependencies:")
        stripped = line.strip()
        if not in_dependencies or not stripped.startswith("- "):
            continue
        item = stripped[2:].strip()
        if item.startswith("pip:") or item == "pip":
            continue
        names.add(_name(item.split("::")[-1]))
    names.discard("python")
    return names


def test_environment_yml_and_pyproject_list_the_same_packages():
    pip, conda = pyproject_packages(), environment_packages()
    assert pip == conda, f"only in pyproject.toml: {sorted(pip - conda)}; only in environment.yml: {sorted(conda - pip)}"


def test_makefile_pins_torch_and_installs_it_first():
    makefile = (ROOT / "Makefile").read_text()
    torch_line = makefile.index("pip install torch==$(TORCH_VERSION)")
    package_line = makefile.index('pip install -e ".[test,book,export,triton]"')
    assert torch_line < package_line
    assert re.search(r"^TORCH_VERSION \?= 2\.13\.0$", makefile, re.M)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call exactly `make test`"


def test_the_core_packages_import_without_plotting_or_notebook_packages():
    # a fresh interpreter: this test process has imported matplotlib long ago
    code = ("import sys, ddetr_edu, ddetr_edu.ops, ddetr_edu.models, ddetr_edu.config; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported by the core packages: {result.stdout.strip()}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The package's wheel, built (``pip wheel --no-deps``) from a clean copy of the package: a stale
    build/ folder in the checkout would put old files into the wheel. About 2 s."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "source"
    shutil.copytree(ROOT / "ddetr_edu", source / "ddetr_edu", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return next((tmp_path / "dist").glob("*.whl"))


def test_the_wheel_ships_the_kernel_sources(wheel):
    """A GPU user's first call builds the kernel from ``ddetr_edu/ops/csrc`` of the installed package
    (``cuda_backend.KERNEL_SOURCES``): the wheel must carry every file there (package-data in
    pyproject.toml)."""
    from ddetr_edu.ops import cuda_backend

    csrc = ROOT / "ddetr_edu" / "ops" / "csrc"
    assert cuda_backend.KERNEL_SOURCES == csrc  # looked up beside the module, not in the repository
    assert all((csrc / name).exists() for name in cuda_backend._CUDA_SOURCES)
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"ddetr_edu/ops/csrc/{path.name}" for path in csrc.iterdir()}
    assert len(wanted) >= 5 and wanted <= names, f"missing from the wheel: {sorted(wanted - names)}"


def test_the_wheel_ships_the_reference_model(wheel):
    """``ddetr-edu visualize`` and chapter 10 load the reference model from the installed package:
    the wheel must carry its weights and card (package-data in pyproject.toml)."""
    from ddetr_edu.checkpoints import reference

    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"ddetr_edu/checkpoints/reference/{path.name}" for path in (reference.WEIGHTS_FILE, reference.CARD_FILE)}
    assert wanted <= names, f"missing from the wheel: {sorted(wanted - names)}"


def test_the_installed_wheel_runs_and_finds_its_kernel_sources(wheel, tmp_path):
    """``pip install --no-deps --target`` the wheel, then from another folder (not the checkout)
    with only that folder on PYTHONPATH: the CLI answers --help, and the kernel glue finds its
    sources inside the installed package. About 6 s on 2 CPU cores."""
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                             str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    cli = subprocess.run([sys.executable, "-m", "ddetr_edu", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=elsewhere, env=env)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "visualize" in cli.stdout and "make-shapes" in cli.stdout
    code = ("import json, ddetr_edu; from ddetr_edu.ops import cuda_backend as c; "
            "print(json.dumps([ddetr_edu.__file__, str(c.KERNEL_SOURCES), sorted(p.name for p in c.KERNEL_SOURCES.iterdir())]))")
    glue = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=elsewhere, env=env)
    assert glue.returncode == 0, glue.stderr[-2000:]
    package_file, sources, names = json.loads(glue.stdout.strip().splitlines()[-1])
    assert Path(package_file).is_relative_to(target) and Path(sources).is_relative_to(target)
    wanted = sorted(path.name for path in (ROOT / "ddetr_edu" / "ops" / "csrc").iterdir())
    assert names == wanted
