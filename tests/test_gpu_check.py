"""`make gpu-check` on a machine without CUDA: one line, exit 0, nothing installed or run (issue 23)."""

import shutil
import subprocess

import pytest
from conftest import REPO


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None,
                    reason="this machine has nvidia-smi: `make gpu-check` runs the real check here")
def test_gpu_check_without_cuda_says_so_in_one_line(tmp_path):
    res = subprocess.run(["make", "--no-print-directory", "gpu-check", f"VENV={tmp_path / 'venv'}"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines == ["gpu-check: no CUDA device on this machine (nvidia-smi finds none); nothing run"]
    assert not (tmp_path / "venv").exists()  # nothing installed
    assert res.stderr == ""
