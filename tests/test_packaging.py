"""Every config folder ships in the wheel, and nothing the repo needs is git-ignored."""

import subprocess
import tomllib

from conftest import REPO


def test_every_config_folder_is_a_declared_package():
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "bnlab.configs" + "".join(f".{p}" for p in d.relative_to(REPO / "configs").parts)
        for d in [REPO / "configs", *(REPO / "configs").rglob("*")]
        if d.is_dir() and d.name != "__pycache__"
    }
    assert folders <= declared, f"add to pyproject packages: {sorted(folders - declared)}"


def test_no_source_or_config_file_is_git_ignored():
    files = [str(p.relative_to(REPO)) for d in ("bnlab", "configs", "tests", "scripts")
             for p in (REPO / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    res = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=REPO,
                         capture_output=True, text=True)
    assert res.stdout == "", f"git ignores: {res.stdout}"
