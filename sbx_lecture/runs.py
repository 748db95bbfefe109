"""Run folders: atomic files with the user's permissions, one writer at a time, the run file, Monitor logs kept
per segment and the learning curve on cumulative steps (model files: :mod:`sbx_lecture.loading`).

A run folder holds::

    run.json                 algorithm, environment, seed, budget, typed hyperparameters, segments of the run
    model.zip                the final model (written atomically)
    checkpoints/step_<N>/    checkpoint bundles (see :mod:`sbx_lecture.checkpoints`)
    monitor/segment_<k>/     Monitor CSV files of the k-th segment (one per environment); never overwritten
    progress.csv             the SB3 logger's table of the first segment (progress_<k>.csv for the k-th)
    events.out.tfevents.*    TensorBoard events
    learning_curve.png       episode return against cumulative environment steps
    .lock                    held by the one process writing the run
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import matplotlib.axes

RUN_FILE = "run.json"
MODEL_FILE = "model.zip"
CHECKPOINT_DIR = "checkpoints"
MONITOR_DIR = "monitor"
LOCK_FILE = ".lock"
CURVE_FILE = "learning_curve.png"
#: Prefix of the temporary files :func:`atomic_write` makes; a crash can leave them, :func:`remove_stale` cleans up.
TEMPORARY_MARK = ".tmp"


class RunFolderError(Exception):
    """A run folder that cannot be used: unwritable, not a folder, a damaged run file, or busy with another writer."""


def _user_mode() -> int:
    """Permission bits a new file gets from the user's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(temporary_path)``, flush it to disk, then rename it over ``path``: readers never see half a file.

    The file gets the permissions the user's umask gives a new file (not the 0600 of a temporary file).

    :param path: final location
    :param write: writes the whole file at the path it is given
    :param suffix: ending the temporary name needs (SB3 appends ``.zip`` to a name without it)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TEMPORARY_MARK}{suffix}", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, _user_mode())
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        with suppress(FileNotFoundError):
            os.remove(temporary)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""

    def write(temporary: str) -> None:
        Path(temporary).write_text(text)

    atomic_write(path, write)


def write_json(path: str | os.PathLike[str], content: Any) -> None:
    """Write ``content`` as indented JSON, atomically."""
    write_text(path, json.dumps(content, indent=2))


def read_json_object(path: Path, what: str, fix: str) -> dict[str, Any]:
    """Read a JSON file that must hold an object; anything else is a :class:`RunFolderError` naming ``fix``."""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise RunFolderError(f"{what} {path} is not readable JSON ({reason}); {fix}") from None
    if not isinstance(content, dict):
        raise RunFolderError(f"{what} {path} holds a JSON {type(content).__name__}, not an object; {fix}")
    return content


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    with suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_stale(folder: Path) -> None:
    """Remove what a crashed atomic write left behind in ``folder`` (not recursive)."""
    for path in folder.glob(f".*{TEMPORARY_MARK}*"):
        with suppress(OSError):
            path.unlink()


# -- one writer per run folder ---------------------------------------------------------------------------------------


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock for the block; a second writer gets a :class:`RunFolderError` at once.

    The lock is an advisory file lock (``filelock``): it is released when the process ends, however it ends. It is
    reentrant in the thread that holds it (the bench runner holds it around ``train``, which takes it too); another
    thread of the same process is refused like another process.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(Path(run_dir).resolve() / LOCK_FILE, timeout=0, mode=_user_mode(), is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderError(
            f"run folder {run_dir} is being written by another process (it holds {run_dir / LOCK_FILE}); "
            "wait for it to finish, or use another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def prepare_folder(path: Path) -> bool:
    """Create ``path`` (and its parents) for writing a run; return whether it was created now.

    :raises RunFolderError: when it cannot be a writable folder
    """
    existed = path.exists()
    if existed and not path.is_dir():
        raise RunFolderError(f"run folder {path} is a file, not a folder: choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=f".probe{TEMPORARY_MARK}")  # noqa: SIM115
        probe.close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunFolderError(f"cannot write the run folder {path} ({reason}): choose another --out") from None
    return not existed


def is_empty_run_folder(path: Path) -> bool:
    """Whether ``path`` holds nothing but (perhaps) its lock file."""
    return all(entry.name == LOCK_FILE for entry in path.iterdir())


def clear_folder(path: Path, keep: tuple[str, ...] = (LOCK_FILE,)) -> None:
    """Remove everything inside ``path`` except the names in ``keep``."""
    import shutil

    for entry in path.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with suppress(FileNotFoundError):
                entry.unlink()


# -- the run file ----------------------------------------------------------------------------------------------------


def write_run_file(run_dir: Path, content: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    write_json(run_dir / RUN_FILE, content)


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json`` (empty if missing); a damaged one is a :class:`RunFolderError`."""
    path = run_dir / RUN_FILE
    if not path.exists():
        return {}
    content = read_json_object(path, "run file", "restore it, or start a new run with another --out")
    for key in ("algo", "env"):
        if key in content and not isinstance(content[key], str):
            raise RunFolderError(f"run file {path} has a {key!r} that is not text: {content[key]!r}; restore it")
    return content


# -- Monitor logs and the learning curve -----------------------------------------------------------------------------


def segment_folder(run_dir: Path) -> Path:
    """A new, never used Monitor folder for the next segment of the run: ``monitor/segment_<k>``."""
    root = run_dir / MONITOR_DIR
    taken = [int(p.name.split("_", 1)[1]) for p in root.glob("segment_*") if p.name.split("_", 1)[1].isdigit()]
    return root / f"segment_{max(taken, default=-1) + 1}"


def read_monitor_file(path: Path) -> list[tuple[float, float, int]]:
    """(time since the Monitor started, return, length) of each finished episode in one Monitor CSV, in order."""
    episodes: list[tuple[float, float, int]] = []
    with suppress(FileNotFoundError), open(path, newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
        for row in csv.DictReader(lines):
            with suppress(KeyError, ValueError, TypeError):
                episodes.append((float(row["t"]), float(row["r"]), int(float(row["l"]))))
    return episodes


def count_monitor_episodes(folder: Path, run_dir: Path) -> dict[str, int]:
    """Finished episodes per Monitor file of ``folder``, keyed by the path relative to ``run_dir``."""
    return {
        str(path.relative_to(run_dir)): len(read_monitor_file(path)) for path in sorted(folder.glob("*monitor.csv"))
    }


def curve_points(run_dir: Path, history: list[dict[str, Any]], current: dict[str, Any] | None) -> np.ndarray:
    """Episodes of the run as rows (cumulative steps, return), segment after segment.

    :param history: earlier segments as ``{"start": steps, "episodes": {file: count}}``; only the first ``count``
        episodes of each file count (later ones were trained past the checkpoint the run resumed from)
    :param current: the segment being trained, ``{"start": steps, "folder": relative folder}``; all its episodes
    """
    segments = [(entry["start"], entry["episodes"]) for entry in history]
    if current is not None:
        folder = run_dir / current["folder"]
        segments.append((current["start"], {str(p.relative_to(run_dir)): None for p in folder.glob("*monitor.csv")}))
    rows: list[tuple[float, float]] = []
    for start, files in segments:
        episodes: list[tuple[float, float, int]] = []
        for name, count in files.items():
            episodes.extend(read_monitor_file(run_dir / name)[:count])
        episodes.sort()
        steps = int(start) + np.cumsum([length for _, _, length in episodes])
        rows.extend((float(step), episode_return) for step, (_, episode_return, _) in zip(steps, episodes, strict=True))
    return np.array(rows, dtype=float).reshape(-1, 2)


def plot_learning_curve(
    run_dir: Path,
    points: np.ndarray,
    title: str = "",
    evaluations: np.ndarray | None = None,
) -> Path | None:
    """Plot episode returns against cumulative steps (with a moving average) into ``learning_curve.png``.

    :param points: rows of (cumulative steps, episode return), from :func:`curve_points`
    :param evaluations: optional rows of (steps, mean evaluation return)
    :return: the PNG's path, or ``None`` when matplotlib is missing or no episode has finished yet
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if len(points) == 0:
        return None
    steps, returns = points[:, 0], points[:, 1]
    window = max(1, min(50, len(returns) // 10))
    smoothed = np.array([returns[max(0, i + 1 - window) : i + 1].mean() for i in range(len(returns))])
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(steps, returns, alpha=0.3, linewidth=0.8, label="episode return")
    if window > 1:
        axis.plot(steps, smoothed, linewidth=2, label=f"mean of the last {window} episodes")
    if evaluations is not None and len(evaluations):
        axis.plot(evaluations[:, 0], evaluations[:, 1], "o-", linewidth=1.5, label="evaluation (deterministic)")
    _decorate(axis, title)
    figure.tight_layout()
    output = run_dir / CURVE_FILE
    atomic_write(output, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return output


def _decorate(axis: matplotlib.axes.Axes, title: str) -> None:
    axis.set_xlabel("environment steps")
    axis.set_ylabel("return")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
