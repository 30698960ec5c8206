"""The two ways to install (pip with pyproject.toml, conda with environment.yml) list the same
packages, and the set-up commands the README promises exist."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
    package_line = makefile.index('pip install -e ".[test,book]"')
    assert torch_line < package_line
    assert re.search(r"^TORCH_VERSION \?= 2\.13\.0$", makefile, re.M)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call exactly `make test`"
