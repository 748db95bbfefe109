"""Run folders: atomic saves, checkpoints that resume training (replay buffer included), model loading with clear
errors, and the learning-curve plot.

A run folder holds::

    run.json                 algorithm, environment, seed, hyperparameters of the run
    model.zip                the final model (written atomically)
    checkpoints/             model_<steps>_steps.zip (+ replay_buffer.pkl, vecnormalize.pkl when used)
    monitor/                 Monitor CSV files, one per environment
    progress.csv             the SB3 logger's table (earlier segments of a resumed run: progress-<steps>.csv)
    events.out.tfevents.*    TensorBoard events
    learning_curve.png       episode return against environment steps
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

METADATA_NAME = "sbx_lecture.json"
RUN_FILE = "run.json"
MODEL_FILE = "model.zip"
CHECKPOINT_DIR = "checkpoints"
REPLAY_BUFFER_FILE = "replay_buffer.pkl"
VECNORMALIZE_FILE = "vecnormalize.pkl"
_CHECKPOINT_PATTERN = re.compile(r"^model_(\d+)_steps\.zip$")


class ModelFileError(Exception):
    """A model file that is missing, truncated, corrupted or of an unknown algorithm."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(temporary_path)``, flush it to disk, then rename it over ``path``: readers never see half a file.

    :param path: final location
    :param write: writes the whole file at the path it is given
    :param suffix: ending the temporary name needs (SB3 appends ``.zip`` to a name without it)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        with suppress(FileNotFoundError):
            os.remove(temporary)


def save_model(model: BaseAlgorithm, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
    """Save ``model`` atomically, with ``metadata`` (algorithm name, env id) stored inside the zip."""

    def write(temporary: str) -> None:
        model.save(temporary)
        if metadata is not None:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(METADATA_NAME, json.dumps(metadata, indent=2))

    atomic_write(path, write, suffix=".zip")


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata :func:`save_model` stored in the zip (empty for models saved by plain SB3)."""
    with zipfile.ZipFile(path) as archive:
        if METADATA_NAME not in archive.namelist():
            return {}
        return json.loads(archive.read(METADATA_NAME))  # type: ignore[no-any-return]


def check_model_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ModelFileError` with a readable reason if ``path`` is not an intact SB3 model zip."""
    path = Path(path)
    hint = "re-save the model, or use a checkpoint from the run folder's checkpoints/"
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file {path} is not a file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file {path} is truncated or corrupted (not a readable zip archive); {hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"model file {path} is truncated or corrupted ({exc}); {hint}") from None
    if broken is not None:
        raise ModelFileError(f"model file {path} is corrupted (member {broken!r} fails its checksum); {hint}")
    if "data" not in names:
        # A truncated model can still look like a zip: the torch archives nested inside it carry their own index.
        raise ModelFileError(
            f"model file {path} is truncated or corrupted, or is not a Stable-Baselines3 model (no 'data' member); "
            f"{hint}"
        )


def load_model(
    path: str | os.PathLike[str],
    algorithm: type[BaseAlgorithm],
    env: VecEnv | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """``algorithm.load(path, env)`` after :func:`check_model_file`; any failure becomes a :class:`ModelFileError`."""
    check_model_file(path)
    try:
        return algorithm.load(str(path), env=env, **kwargs)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelFileError(f"cannot load {path} as {algorithm.__name__}: {message}") from exc


def checkpoint_path(run_dir: str | os.PathLike[str], steps: int) -> Path:
    """Where the checkpoint at ``steps`` environment steps lives."""
    return Path(run_dir) / CHECKPOINT_DIR / f"model_{steps}_steps.zip"


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[Path, int] | None:
    """The checkpoint with the most steps in ``run_dir`` (``None`` if there is none)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [
        (int(match.group(1)), path)
        for path in folder.glob("model_*_steps.zip")
        if (match := _CHECKPOINT_PATTERN.match(path.name))
    ]
    if not found:
        return None
    steps, path = max(found)
    return path, steps


class AtomicCheckpointCallback(BaseCallback):
    """Every ``save_freq`` environment steps (and at the end), save a checkpoint that resumes training exactly.

    Checkpoints are written at the end of a rollout, once ``save_freq`` steps have passed since the last one.

    Each checkpoint is ``checkpoints/model_<steps>_steps.zip``, written atomically; off-policy algorithms also get
    ``checkpoints/replay_buffer.pkl`` (the latest only, it can be large) and normalised environments
    ``checkpoints/vecnormalize.pkl``. Older model checkpoints beyond ``keep`` are removed.

    :param run_dir: the run folder
    :param save_freq: environment steps between checkpoints (counted over all parallel environments)
    :param metadata: stored inside each model zip (see :func:`save_model`)
    :param keep: how many model checkpoints to keep
    """

    def __init__(self, run_dir: str | os.PathLike[str], save_freq: int, metadata: dict[str, Any], keep: int = 5):
        super().__init__()
        if save_freq < 1:
            raise ValueError(f"checkpoint frequency must be at least 1 step, got {save_freq}")
        self.run_dir = Path(run_dir)
        self.save_freq = save_freq
        self.metadata = metadata
        self.keep = keep
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.model.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        # At a rollout's end every transition is stored (SB3 calls on_step before storing the last one).
        if self.model.num_timesteps - self._last_saved >= self.save_freq:
            self.save_checkpoint()

    def _on_training_end(self) -> None:
        if self.model.num_timesteps != self._last_saved:
            self.save_checkpoint()

    def save_checkpoint(self) -> Path:
        """Write the checkpoint for the current step count now."""
        steps = self.model.num_timesteps
        path = checkpoint_path(self.run_dir, steps)
        save_model(self.model, path, self.metadata)
        save_training_state(self.model, self.run_dir / CHECKPOINT_DIR)
        self._last_saved = steps
        self._prune()
        return path

    def _prune(self) -> None:
        checkpoints = sorted(
            (int(match.group(1)), path)
            for path in (self.run_dir / CHECKPOINT_DIR).glob("model_*_steps.zip")
            if (match := _CHECKPOINT_PATTERN.match(path.name))
        )
        for _, path in checkpoints[: -self.keep]:
            with suppress(FileNotFoundError):
                path.unlink()


def save_training_state(model: BaseAlgorithm, folder: Path) -> None:
    """Atomically save what a model zip lacks for resuming: the replay buffer and VecNormalize statistics."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecNormalize

    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        atomic_write(folder / REPLAY_BUFFER_FILE, model.save_replay_buffer, suffix=".pkl")
    normalizer = model.get_vec_normalize_env()
    if isinstance(normalizer, VecNormalize):
        atomic_write(folder / VECNORMALIZE_FILE, normalizer.save)


def restore_training_state(model: BaseAlgorithm, folder: Path) -> None:
    """Load the replay buffer saved by :func:`save_training_state`, if there is one."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    buffer_path = folder / REPLAY_BUFFER_FILE
    if isinstance(model, OffPolicyAlgorithm) and buffer_path.exists():
        model.load_replay_buffer(buffer_path)


def write_run_file(run_dir: Path, content: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    text = json.dumps(content, indent=2)
    atomic_write(run_dir / RUN_FILE, lambda temporary: _write_text(temporary, text))


def _write_text(path: str, text: str) -> None:
    Path(path).write_text(text)


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json`` (empty if missing)."""
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def read_monitor_episodes(folder: str | os.PathLike[str]) -> list[tuple[float, float, int]]:
    """(wall time, return, length) of every finished episode in the Monitor CSVs of ``folder``, by time."""
    episodes: list[tuple[float, float, int]] = []
    for path in sorted(Path(folder).glob("*monitor.csv")):
        with open(path, newline="") as handle:
            lines = [line for line in handle if not line.startswith("#")]
        for row in csv.DictReader(lines):
            with suppress(KeyError, ValueError, TypeError):
                episodes.append((float(row["t"]), float(row["r"]), int(float(row["l"]))))
    return sorted(episodes)


def plot_learning_curve(run_dir: str | os.PathLike[str], title: str = "") -> Path | None:
    """Plot episode returns (and their moving average) from the Monitor CSVs into ``learning_curve.png``.

    :return: the PNG's path, or ``None`` when matplotlib is missing or no episode has finished yet
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    run_dir = Path(run_dir)
    episodes = read_monitor_episodes(run_dir / "monitor")
    if not episodes:
        return None
    steps = np.cumsum([length for _, _, length in episodes])
    returns = np.array([episode_return for _, episode_return, _ in episodes])
    window = max(1, min(50, len(returns) // 10))
    smoothed = np.array([returns[max(0, i + 1 - window) : i + 1].mean() for i in range(len(returns))])
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(steps, returns, alpha=0.3, linewidth=0.8, label="episode return")
    axis.plot(steps, smoothed, linewidth=2, label=f"moving average ({window} episodes)")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("return")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    output = run_dir / "learning_curve.png"
    atomic_write(output, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return output
