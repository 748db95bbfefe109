"""The plain RL Zoo after ``pip install sbx-lecture[zoo]``: ``python -m rl_zoo3.train|enjoy``, no wrapper.

The tests install this checkout into a fresh virtual environment once per session (``pip install --no-deps
--no-build-isolation -e``, which writes the wheel's start-up hook ``sbx_lecture_zoo_hook.pth``); the environment sees
the running interpreter's packages (torch, SB3, rl_zoo3) through a plain path line, which does not run their
``.pth`` files, so only the fresh install's hook is active.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
ZOO_CONFIGS = REPOSITORY / "zoo_configs"
HOOK_PTH = "sbx_lecture_zoo_hook.pth"

#: A tiny run per algorithm: environment and the overrides that make a zoo run take a second or two.
TINY: dict[str, tuple[str, list[str]]] = {
    "tnpg": ("CartPole-v1", ["n_envs:1", "n_steps:64", "batch_size:64", "n_critic_updates:1", "cg_max_steps:5"]),
    "sql": ("CartPole-v1", ["n_envs:1", "learning_starts:32", "batch_size:32", "buffer_size:1000"]),
    "dpg": ("Pendulum-v1", ["n_envs:1", "learning_starts:32", "batch_size:32", "buffer_size:1000"]),
}


class FreshEnvironment:
    """A virtual environment with this checkout installed; runs its Python in a clean environment.

    :param root: the environment's folder
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        scripts = "Scripts" if sys.platform == "win32" else "bin"
        self.python = root / scripts / ("python.exe" if sys.platform == "win32" else "python")

    def site_packages(self) -> Path:
        output = self.run(["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True).stdout
        return Path(output.strip())

    def run(
        self, arguments: list[str], cwd: Path | None = None, check: bool = False, **environment: str
    ) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", **environment)
        result = subprocess.run(
            [str(self.python), *arguments], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        if check:
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result


def _parent_site_directories() -> list[str]:
    """The running interpreter's package folders (its virtual environment's, the user's, the system's)."""
    folders = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    folders.update(path for path in sys.path if path.endswith(("site-packages", "dist-packages")))
    return [folder for folder in sorted(folders) if Path(folder).is_dir()]


@pytest.fixture(scope="session")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshEnvironment:
    root = tmp_path_factory.mktemp("fresh-venv")
    venv.EnvBuilder(with_pip=False).create(root)
    environment = FreshEnvironment(root)
    site = environment.site_packages()
    # Plain path lines: the parent's packages become importable, its .pth files (its own sbx-lecture) do not run.
    (site / "_parent_packages.pth").write_text("\n".join(_parent_site_directories()) + "\n")
    install = ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-e", str(REPOSITORY)]
    environment.run(install, check=True)
    assert (site / HOOK_PTH).is_file(), f"pip install -e did not write {HOOK_PTH}"
    return environment


def _train(algo: str, logs: Path, module: str = "rl_zoo3.train") -> list[str]:
    env_id, overrides = TINY[algo]
    script = ["-m", module] if module != "rl_zoo3.cli" else ["-m", "rl_zoo3.cli", "train"]
    return [*script, "--algo", algo, "--env", env_id, "-n", "200", "-f", str(logs), "--seed", "0",
            "--eval-freq", "-1", "--num-threads", "1", "-params", *overrides]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The hook costs nothing until rl_zoo3 is imported
# ---------------------------------------------------------------------------------------------------------------


def test_start_up_imports_nothing_and_adds_one_finder(fresh: FreshEnvironment) -> None:
    pth = fresh.site_packages() / HOOK_PTH
    # The .pth line, run by hand in an interpreter started without site: it imports no module.
    probe = f"import sys, os; before = set(sys.modules); exec(open({str(pth)!r}).read()); "
    probe += "print(sorted(set(sys.modules) - before), type(sys.meta_path[0]).__name__)"
    assert fresh.run(["-S", "-c", probe], check=True).stdout.split() == ["[]", "SbxLectureZooFinder"]
    # At a normal start-up: the finder is first on sys.meta_path, and neither sbx-lecture nor rl_zoo3 is imported.
    probe = "import sys; print(type(sys.meta_path[0]).__name__); print(sorted(sys.modules))"
    finder, modules = fresh.run(["-c", probe], check=True).stdout.splitlines()
    assert finder == "SbxLectureZooFinder"
    loaded = ast.literal_eval(modules)
    assert "_sbx_lecture_zoo_hook" not in loaded and "sbx_lecture" not in loaded and "rl_zoo3" not in loaded


def test_importing_rl_zoo3_registers_and_removes_the_finder(fresh: FreshEnvironment) -> None:
    probe = textwrap.dedent(
        """
        import importlib.util, sys
        importlib.util.find_spec("rl_zoo3")  # locating the package (as zoo_config does) leaves the finder in place
        import rl_zoo3.utils
        print(type(rl_zoo3.utils.ALGOS).__name__, sorted(rl_zoo3.utils.ALGOS))
        print([type(finder).__name__ for finder in sys.meta_path])
        """
    )
    table, finders = fresh.run(["-c", probe], check=True).stdout.splitlines()
    assert table.startswith("LazyAlgorithms")
    assert all(f"'{name}'" in table for name in ("tnpg", "npg", "ppo_kl", "dpg", "sql", "ppo", "trpo"))
    assert "SbxLectureZooFinder" not in finders


# ---------------------------------------------------------------------------------------------------------------
# train, enjoy (and record_video) with no wrapper
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", sorted(TINY))
def test_plain_zoo_trains_with_the_registered_file_and_enjoy_loads(
    algo: str, fresh: FreshEnvironment, tmp_path: Path
) -> None:
    env_id, _ = TINY[algo]
    logs = tmp_path / "logs"
    # sql through the zoo's console-script entry (rl_zoo3 train ...), the others through python -m rl_zoo3.train
    trained = fresh.run(_train(algo, logs, "rl_zoo3.cli" if algo == "sql" else "rl_zoo3.train"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"Loading hyperparameters from: {ZOO_CONFIGS / f'{algo}.yml'}" in trained.stdout
    run = logs / algo / f"{env_id}_1"
    assert (run / f"{env_id}.zip").is_file()
    saved = yaml.load((run / env_id / "config.yml").read_text(), Loader=yaml.UnsafeLoader)
    registered = yaml.safe_load((ZOO_CONFIGS / f"{algo}.yml").read_text())
    section = registered.get(env_id, registered.get("default"))
    assert set(section) <= set(dict(saved))

    enjoyed = fresh.run(
        ["-m", "rl_zoo3.enjoy", "--algo", algo, "--env", env_id, "-f", str(logs), "--no-render", "-n", "20"],
        cwd=tmp_path,
    )
    assert enjoyed.returncode == 0, enjoyed.stderr[-3000:]
    assert f"Loading {run / env_id}.zip" in enjoyed.stdout
    if algo == "tnpg":  # record_video too (it needs pygame for CartPole's frames and moviepy's ffmpeg)
        videos = tmp_path / "videos"
        record = ["-m", "rl_zoo3.record_video", "--algo", algo, "--env", env_id, "-f", str(logs), "-n", "20"]
        recorded = fresh.run([*record, "-o", str(videos)], cwd=tmp_path)
        assert recorded.returncode == 0, recorded.stderr[-3000:]
        assert list(videos.glob("*.mp4"))


# ---------------------------------------------------------------------------------------------------------------
# Switching it off, and the Python route of docs/zoo.md
# ---------------------------------------------------------------------------------------------------------------


def test_opting_out_restores_the_zoo_s_own_behaviour(fresh: FreshEnvironment, tmp_path: Path) -> None:
    refused = fresh.run(_train("tnpg", tmp_path / "logs"), cwd=tmp_path, SBX_LECTURE_ZOO_AUTOREGISTER="0")
    assert refused.returncode == 2
    assert "argument --algo: invalid choice: 'tnpg'" in refused.stderr
    probe = "import rl_zoo3.utils, rl_zoo3.exp_manager as m; print(type(rl_zoo3.utils.ALGOS).__name__, " \
            "hasattr(m.ExperimentManager, '_sbx_lecture_patched'))"  # fmt: skip
    assert fresh.run(["-c", probe], check=True, SBX_LECTURE_ZOO_AUTOREGISTER="0").stdout.split() == ["dict", "False"]


def test_python_route_of_the_docs_works_as_written(fresh: FreshEnvironment, tmp_path: Path) -> None:
    env_id, overrides = TINY["tnpg"]
    script = textwrap.dedent(
        f"""
        import sys
        from sbx_lecture.zoo import register_with_zoo

        register_with_zoo()
        from rl_zoo3.train import train

        sys.argv = ["train", "--algo", "tnpg", "--env", "{env_id}", "-n", "200", "-f", "logs", "--seed", "0",
                    "--eval-freq", "-1", "-params", *{overrides!r}]
        train()
        """
    )
    # With the start-up hook off, so that register_with_zoo() alone does the work.
    result = fresh.run(["-c", script], cwd=tmp_path, SBX_LECTURE_ZOO_AUTOREGISTER="0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "logs" / "tnpg" / f"{env_id}_1" / f"{env_id}.zip").is_file()


# ---------------------------------------------------------------------------------------------------------------
# One-line errors in the plain zoo too
# ---------------------------------------------------------------------------------------------------------------


def test_plain_zoo_refuses_an_action_space_in_one_line(fresh: FreshEnvironment, tmp_path: Path) -> None:
    result = fresh.run(
        ["-m", "rl_zoo3.train", "--algo", "dpg", "--env", "CartPole-v1", "-n", "200", "-f", "logs"], cwd=tmp_path
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("train.py: error: algorithm 'dpg' does not support the action space Discrete(2)")


def test_plain_zoo_says_the_missing_package_of_track_in_one_line(fresh: FreshEnvironment, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import runpy, sys
        sys.modules["wandb"] = None  # as if wandb were not installed
        sys.argv = ["train.py", "--algo", "tnpg", "--env", "CartPole-v1", "-n", "200", "--track"]
        runpy.run_module("rl_zoo3.train", run_name="__main__", alter_sys=True)
        """
    )
    result = fresh.run(["-c", script], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("train.py: error: ") and "pip install wandb" in line
