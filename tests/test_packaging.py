"""What a user installs: the sdist's contents, the metadata, the torch-version check, `--version`,
`info` and build_info(), the warning when CUDA tensor LRs cannot use the CUDA module, and the one-line
message when a command needs matplotlib."""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

import schedx
from schedx import _build, _version, finder
from schedx.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
# Besides every tracked file under these folders, the sdist holds the files that build the package.
SOURCE_FOLDERS = ("csrc", "schedx", "tests")
BUILD_FILES = {"pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "CHANGELOG.md"}


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)


def tracked_files() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(["git", "ls-files", *SOURCE_FOLDERS], capture_output=True, text=True, cwd=ROOT,
                            check=True).stdout.split()
    return set(listed) | BUILD_FILES


def sdist_members(tmp_path: Path) -> set[str]:
    """The files of an sdist built from this checkout (setuptools' PEP 517 hook, a few seconds), less
    the metadata the build writes."""
    built = run_python("-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))")
    assert built.returncode == 0, built.stderr
    with tarfile.open(tmp_path / built.stdout.split()[-1]) as sdist:
        names = [m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()]
    return {n for n in names if n not in ("PKG-INFO", "setup.cfg") and ".egg-info/" not in n}


@pytest.mark.sdist
def test_the_sdist_holds_every_tracked_source_test_and_build_file_and_nothing_else(tmp_path):
    assert sdist_members(tmp_path) == tracked_files()


# The release before the supported range, and the first after it.
@pytest.mark.parametrize("old_or_new", [
    f"{_version.TORCH_MIN[0]}.{_version.TORCH_MIN[1] - 1}.1", f"{_version.TORCH_BELOW[0]}.{_version.TORCH_BELOW[1]}.0"
])
def test_importing_beside_an_unsupported_torch_names_its_version_and_the_supported_range(old_or_new):
    result = run_python("-c", f"import torch; torch.__version__ = {old_or_new!r}; import schedx")
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (f"ImportError: schedx {_version.__version__} supports torch{_version.TORCH_RANGE}, "
                         f"but torch {old_or_new} is installed: install a supported torch "
                         f"(pip install 'torch{_version.TORCH_RANGE}') or a schedx release for torch {old_or_new}")


def test_the_torch_being_tested_is_in_the_supported_range():
    assert _version.torch_supported(str(torch.__version__))


def test_the_torch_requirement_in_the_metadata_is_the_supported_range():
    requirements = importlib.metadata.requires("schedx")
    torch_requirement = next(r for r in requirements if r.startswith("torch"))
    assert sorted(torch_requirement.removeprefix("torch").split(",")) == sorted(_version.TORCH_RANGE.split(","))


def test_the_metadata_declares_the_license_and_the_plot_extra():
    metadata = importlib.metadata.metadata("schedx")
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert any(r.startswith("matplotlib") and 'extra == "plot"' in r for r in metadata.get_all("Requires-Dist"))


def test_version_is_declared_once_and_reported_by_the_package_the_metadata_and_the_cli():
    result = run_python("-m", "schedx", "--version")
    assert result.stdout == f"schedx {_version.__version__}\n"
    assert schedx.__version__ == importlib.metadata.version("schedx") == _version.__version__


def test_build_info_reports_versions_the_cuda_module_and_the_gpus():
    info = schedx.build_info()
    assert info["schedx"] == _version.__version__
    assert info["torch"] == str(torch.__version__) and info["torch_supported"] is True
    assert info["torch_range"] == _version.TORCH_RANGE
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["cuda_module"] is (_build._cuda is not None)
    assert isinstance(info["cuda_build_note"], str)
    assert len(info["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


@pytest.mark.skipif(_build._cuda is None, reason="built without the CUDA module")
def test_build_info_of_a_cuda_build_names_its_cuda_version_and_architectures():
    info = schedx.build_info()
    assert info["cuda_version"] and info["cuda_archs"]


def test_info_prints_build_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    info = schedx.build_info()
    assert f"schedx       {info['schedx']}" in out
    assert f"torch        {info['torch']} (supported" in out
    assert ("CUDA module  present" if info["cuda_module"] else "CUDA module  absent") in out


@pytest.mark.parametrize(("archs", "capability", "expected"), [
    (["sm_80"], (8, 0), True),
    (["sm_80"], (8, 6), True),      # machine code runs on later minors of its major
    (["sm_86"], (8, 0), False),
    (["sm_80"], (9, 0), False),     # but not on another major
    (["sm_90", "compute_90"], (12, 0), True),  # PTX on every later GPU
    (["compute_120"], (9, 0), False),
    ([], (9, 0), False),
])
def test_which_gpus_the_cuda_modules_architectures_cover(archs, capability, expected):
    assert _build.covers(archs, capability) is expected


def test_cuda_tensor_lrs_without_the_cuda_module_warn_once_why_and_how_to_get_it(monkeypatch):
    monkeypatch.setattr(_build, "_cuda", None)
    monkeypatch.setattr(_build, "_warned", set())
    with pytest.warns(UserWarning, match="has no CUDA module .*nvcc"):
        assert _build.cuda_step_available(torch.device("cuda", 0)) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _build.cuda_step_available(torch.device("cuda", 0)) is False


def no_work(*args, **kwargs):
    raise AssertionError("the command did work before checking for matplotlib")


@pytest.mark.parametrize("argv", [
    ["plot", "StepLR(step_size=10)", "--steps", "20"],
    ["find-lr", "--demo", "-o", "lr.png"],
])
def test_a_command_that_draws_without_matplotlib_says_what_to_install_in_one_line_before_any_work(
        argv, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(finder, "demo_problem", no_work)
    monkeypatch.setattr("schedx.plot.curve", no_work)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code)
    assert "\n" not in message and "needs matplotlib: pip install matplotlib" in message
    assert list(tmp_path.iterdir()) == []


def test_csv_needs_no_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", "StepLR(step_size=10)", "--steps", "3", "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 4


def test_the_package_says_it_is_typed():
    assert (Path(schedx.__file__).parent / "py.typed").is_file()
