"""The Colab check on pip's dry-run report flags a replaced or added package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pip_report_check import problems

INSTALLED = {"pandas": "2.2.3", "torch": "2.11.0", "numpy": "2.1.3"}


def _item(name: str, version: str) -> dict:
    return {"metadata": {"name": name, "version": version}}


def test_only_our_package_is_fine():
    assert problems({"install": [_item("lmlogits-course", "0.2.0")]}, INSTALLED) == []


def test_a_replaced_package_is_named_with_both_versions():
    report = {"install": [_item("lmlogits-course", "0.2.0"), _item("Pandas", "3.1.1")]}
    assert problems(report, INSTALLED) == ["pandas: 2.2.3 would be replaced by 3.1.1"]


def test_an_added_package_is_named():
    report = {"install": [_item("lmlogits_course", "0.2.0"), _item("nvidia-cublas", "13")]}
    assert problems(report, INSTALLED) == ["nvidia-cublas: 13 would be added (not preinstalled)"]


def test_a_report_without_our_package_is_suspicious():
    assert problems({"install": []}, INSTALLED) == [
        "lmlogits-course is not in the report: was the right thing installed?"
    ]


def test_pips_real_report_of_this_environment(tmp_path):
    # the development environment has every dependency: only the package itself moves
    report = tmp_path / "report.json"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                    "--no-build-isolation", "--report", str(report), str(repo)],
                   check=True, timeout=300, capture_output=True)
    found = subprocess.run([sys.executable, str(Path(__file__).parent / "pip_report_check.py"),
                            str(report)], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stdout
    assert "changes no preinstalled package" in found.stdout
    assert json.loads(report.read_text())["install"][0]["metadata"]["name"] == "lmlogits-course"
