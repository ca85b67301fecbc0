"""xdrl.config.loading.config_dir: the presets of the code that runs (a job's working directory, a wheel)."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO
from xdrl.config import ConfigError, config_dir

#: A preset that exists only in the copy; its invalid frame budget can only come from this file.
ONLY_HERE = (
    (REPO / "configs" / "experiment" / "cartpole_ppo.yaml")
    .read_text()
    .replace("name: cartpole_ppo", "name: only_here")
    .replace("total_frames: 100_000", "total_frames: -7")
)


def _environment(pythonpath: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDRL_CONFIG_DIR", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(pythonpath)}


def _source_tree(root: pathlib.Path) -> pathlib.Path:
    """A copy of the repository's code as a checkout has it: ``xdrl/configs`` a link to ``../configs``."""
    shutil.copytree(REPO / "xdrl", root / "xdrl", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", root / "configs")
    (root / "configs" / "experiment" / "only_here.yaml").write_text(ONLY_HERE)
    return root


def test_the_repository_link_points_at_the_top_level_configs():
    link = REPO / "xdrl" / "configs"
    assert link.is_symlink() and os.readlink(link) == "../configs"
    assert config_dir() == (REPO / "configs").resolve()


@pytest.mark.parametrize("layout", ["checkout", "ray working dir", "no link"])
def test_a_preset_only_in_the_job_working_directory_is_found(tmp_path, layout):
    source = _source_tree(tmp_path / "source")
    if layout == "checkout":
        working_dir = source
    elif layout == "ray working dir":
        # Ray zips the working directory following links: xdrl/configs arrives as a real copy.
        working_dir = tmp_path / "job"
        shutil.copytree(source, working_dir, symlinks=False)
        assert not (working_dir / "xdrl" / "configs").is_symlink()
    else:
        (source / "xdrl" / "configs").unlink()
        working_dir = source
    env = _environment(working_dir)
    where = subprocess.run(
        [sys.executable, "-c", "import xdrl.config.loading as m; print(m.__file__); print(m.config_dir())"],
        cwd=working_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(working_dir)) and where[1].startswith(str(working_dir))
    # The real command line: the preset composes (its own bad value is what validation names), exit 2.
    result = subprocess.run(
        [sys.executable, "-m", "xdrl.cli", "train", "experiment=only_here"],
        cwd=working_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "collector.total_frames=-7 is not accepted" in result.stderr


def test_the_installed_packages_presets_do_not_have_it():
    with pytest.raises(ConfigError, match="experiment='only_here'.*cartpole_ppo"):
        from xdrl.config import compose_config

        compose_config(["experiment=only_here"])


def test_a_wheel_carries_every_preset_and_finds_them(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    shutil.copytree(REPO / "xdrl", source / "xdrl", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", source / "configs")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("xdrl-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("xdrl/configs/")}
    expected = {f"xdrl/configs/{p.relative_to(REPO / 'configs')}" for p in (REPO / "configs").rglob("*.yaml")}
    assert shipped == expected
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = "from xdrl.config import compose_config, config_dir; print(config_dir()); print(compose_config(['experiment=cartpole_ppo'])['name'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_environment(site),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out == [str(site / "xdrl" / "configs"), "cartpole_ppo"]


def test_an_explicit_config_dir_wins_and_a_wrong_one_is_named(tmp_path, monkeypatch):
    shutil.copytree(REPO / "configs", tmp_path / "mine")
    monkeypatch.setenv("XDRL_CONFIG_DIR", str(tmp_path / "mine"))
    assert config_dir() == tmp_path / "mine"
    monkeypatch.setenv("XDRL_CONFIG_DIR", str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match=r"^XDRL_CONFIG_DIR=.*nothing.*config\.yaml"):
        config_dir()
