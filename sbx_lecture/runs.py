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
    .lock                    held by the one process writing the run (removed when it is done)
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.infra.files import TEMPORARY_MARK, atomic_write, json_record, user_file_mode

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
MONITOR_DIR = "monitor"
LOCK_FILE = ".lock"
CURVE_FILE = "learning_curve.png"


class RunFolderError(Exception):
    """A run folder that cannot be used: unwritable, not a folder, a damaged run file, or busy with another writer."""


def remove_stale(run_dir: Path) -> None:
    """Remove what crashed writes left behind: temporary files in the run folder, and the hidden staging and trash
    folders of checkpoint bundles in ``checkpoints/``."""
    for path in [*run_dir.glob(f".*{TEMPORARY_MARK}*"), *(run_dir / CHECKPOINT_DIR).glob(".*")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# -- the run folder: where it is, one writer at a time ---------------------------------------------------------------


@contextmanager
def run_lock(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold the run folder's lock for the block; a second writer gets a :class:`RunFolderError` at once, or with
    ``wait`` waits for the first to finish (the bench's report folder, which every bench on one ``--out`` rewrites).

    The lock is an advisory file lock (``filelock``): it is released when the process ends, however it ends. It is
    reentrant in the thread that holds it (the bench runner holds it around ``train``, which takes it too); another
    thread of the same process is refused like another process.

    The last release removes the lock file first, while it still holds it: no second writer can hold the old file
    while a third creates a new one, and filelock gives up a lock that it took on a file removed meanwhile (it checks
    ``st_nlink`` after ``flock``), so a writer that opened the old file tries again on the new one.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(
        Path(run_dir).resolve() / LOCK_FILE, timeout=-1 if wait else 0, mode=user_file_mode(), is_singleton=True
    )
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
        if lock.lock_counter == 1:
            Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def prepare_folder(path: Path) -> Path | None:
    """Create ``path`` (and its parents) for writing a run; return the outermost folder created now (``None``: it
    existed).

    :raises RunFolderError: when it cannot be a writable folder
    """
    existed = path.exists()
    outermost = next((folder for folder in reversed([path, *path.parents]) if not folder.exists()), None)
    if existed and not path.is_dir():
        raise RunFolderError(f"run folder {path} is a file, not a folder: choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path, prefix=f".probe{TEMPORARY_MARK}").close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunFolderError(f"cannot write the run folder {path} ({reason}): choose another --out") from None
    return outermost


def choose_run_dir(out: Path | None, algo: str, env_id: str, resume: bool = False) -> tuple[Path, Path | None]:
    """The run folder of ``train``, and the outermost folder this call created for it (``None``: none): ``out``
    (made ready for writing), else the
    default ``runs/<algo>_<env>_<k>``: with ``resume`` the most recent, otherwise one with the next free ``k``,
    created now (two commands never get the same one).

    :raises RunFolderError: when there is no folder to resume, or none can be written
    """
    from stable_baselines3.common.utils import get_latest_run_id

    root, stem = Path("runs"), f"{algo}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', env_id)}"
    if resume:
        latest = get_latest_run_id(str(root), stem)
        run_dir = out or (root / f"{stem}_{latest}" if latest else None)
        if run_dir is None or not run_dir.is_dir():
            raise RunFolderError(
                f"no run folder to resume for {algo} on {env_id} (looked for {run_dir or root / (stem + '_*')}); "
                "pass --out RUN_DIR or drop --resume"
            )
        return run_dir, None
    if out is not None:
        return out, prepare_folder(out)
    made_root = prepare_folder(root)
    while True:
        candidate = root / f"{stem}_{get_latest_run_id(str(root), stem) + 1}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunFolderError(f"cannot create a run folder in {root} ({exc.strerror}): pass --out DIR") from None
        return candidate, made_root or candidate


def require_empty(path: Path) -> None:
    """Refuse a run folder that holds anything but (perhaps) its lock file: a new run never mixes with old files."""
    if path.is_dir() and any(entry.name != LOCK_FILE for entry in path.iterdir()):
        raise RunFolderError(f"run folder {path} is not empty: pass --resume to continue it, or another --out")


def clear_folder(path: Path) -> None:
    """Remove everything inside ``path`` except its lock file."""
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name != LOCK_FILE:
            entry.unlink(missing_ok=True)


def discard_folder(path: Path, created: Path | None) -> None:
    """Leave nothing of a run that saved nothing: clear ``path`` and, when the run ``created`` folders for it (the
    outermost one), remove them, still empty, up to that one (the lock file first, while it is still held, as
    :func:`run_lock` does; nobody else holds a folder made now)."""
    clear_folder(path)
    if created is not None:
        with suppress(OSError):
            (path / LOCK_FILE).unlink()
            for folder in [path, *path.parents[: len(path.parents) - len(created.parents)]]:
                folder.rmdir()  # an OSError (not empty: another run's folder meanwhile) keeps it and the rest


# -- the run file ----------------------------------------------------------------------------------------------------


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json`` (empty if missing); a damaged one is a :class:`RunFolderError`."""
    path = run_dir / RUN_FILE
    if not path.exists():
        return {}
    fix = "restore it, or start a new run with another --out"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunFolderError(f"run file {path} is not readable ({exc.strerror}); {fix}") from None
    return json_record(raw, f"run file {path}", fix, RunFolderError, text_keys=("algo", "env"))


# -- Monitor logs and the learning curve -----------------------------------------------------------------------------


def read_monitor_file(path: Path) -> list[tuple[float, float, int]]:
    """(time since the Monitor started, return, length) of each finished episode in one Monitor CSV, in order."""
    episodes: list[tuple[float, float, int]] = []
    with suppress(FileNotFoundError), open(path, newline="") as handle:
        for row in csv.DictReader(line for line in handle if not line.startswith("#")):
            with suppress(KeyError, ValueError, TypeError):
                episodes.append((float(row["t"]), float(row["r"]), int(float(row["l"]))))
    return episodes


def curve_points(run_dir: Path, segments: list[dict[str, Any]]) -> np.ndarray:
    """Episodes of the run as rows (cumulative steps, return), segment after segment.

    :param segments: ``{"start": steps, "episodes": {file: count}}`` for each segment of the run; only the first
        ``count`` episodes of each Monitor file count (later ones were trained past the checkpoint the run resumed
        from)
    """
    rows: list[tuple[float, float]] = []
    for segment in segments:
        # each file's first ``count`` episodes, all in the order they ended (by the Monitor's time ``t``)
        files = segment["episodes"].items()
        episodes = sorted(episode for name, count in files for episode in read_monitor_file(run_dir / name)[:count])
        steps = int(segment["start"]) + np.cumsum([length for _, _, length in episodes])
        rows.extend((float(step), episode_return) for step, (_, episode_return, _) in zip(steps, episodes, strict=True))
    return np.array(rows, dtype=float).reshape(-1, 2)


def plot_learning_curve(
    run_dir: Path, points: np.ndarray, title: str, evaluations: list[tuple[int, float, float]]
) -> Path | None:
    """Plot episode returns against cumulative steps into ``learning_curve.png`` with SB3's results plotter (which
    adds the mean of the last 100 episodes once there are that many), and the evaluations on top.

    :param points: rows of (cumulative steps, episode return), from :func:`curve_points`
    :param evaluations: (steps, mean evaluation return, standard deviation) of the periodic evaluations
    :return: the PNG's path, or ``None`` when matplotlib is missing or no episode has finished yet
    """
    if len(points) == 0:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from stable_baselines3.common.results_plotter import X_TIMESTEPS, plot_curves
    except ImportError:
        return None
    plot_curves([(points[:, 0], points[:, 1])], X_TIMESTEPS, title, figsize=(8, 4))
    if evaluations:
        evaluated = np.array(evaluations, dtype=float)
        plt.plot(evaluated[:, 0], evaluated[:, 1], "o-", label="evaluation (deterministic)")
        plt.xlim(right=max(plt.xlim()[1], evaluated[-1, 0]))  # the final evaluation may come after the last episode
        plt.legend(loc="lower right")
    figure, output = plt.gcf(), run_dir / CURVE_FILE
    atomic_write(output, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return output
