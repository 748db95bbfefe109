"""Checkpoint bundles: everything a run needs to resume, committed by one rename and verified before use.

A bundle is the folder ``checkpoints/step_<N>/`` of a run (``N`` the environment steps, zero-padded)::

    model.zip            the model (safe to load: see :mod:`sbx_lecture.loading`)
    replay_buffer.npz    off-policy algorithms: the replay buffer, as plain arrays
    vecnormalize.npz     normalised environments: the normalisation statistics, as plain arrays
    rng.npz              the random states of Python, NumPy and torch
    manifest.json        written last: steps, algorithm, environment, buffer size, Monitor episode counts, and the
                         size and SHA-256 of every other file

It is written into a temporary folder, flushed, and renamed into place: a crash at any moment leaves either the
complete bundle or none. Resuming takes the newest bundle whose manifest verifies (and says so when it had to fall
back to an older one); temporary folders of interrupted writes are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from sbx_lecture import loading
from sbx_lecture.infra.finite import assert_finite_parameters
from sbx_lecture.runs import CHECKPOINT_DIR, TEMPORARY_MARK, fsync_folder, read_monitor_file

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

MANIFEST_FILE = "manifest.json"
MODEL_MEMBER = "model.zip"
REPLAY_BUFFER_MEMBER = "replay_buffer.npz"
NORMALIZATION_MEMBER = "vecnormalize.npz"
RNG_MEMBER = "rng.npz"
BUNDLE_FORMAT = 1
_PREFIX = "step_"
_TRASH_MARK = ".trash"


class CheckpointError(Exception):
    """No usable checkpoint bundle, or one that does not match the run."""


@dataclass
class Bundle:
    """A committed checkpoint bundle and its verified manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def steps(self) -> int:
        """Environment steps of the model it holds."""
        return int(self.manifest["steps"])

    def member(self, name: str) -> Path | None:
        """The path of a file of the bundle, or ``None`` when the bundle does not have it."""
        return self.path / name if name in self.manifest["files"] else None


@dataclass
class MonitorLog:
    """Which Monitor episodes belong to the run's learning curve.

    :param history: earlier segments, ``{"start": steps, "episodes": {file: count}}``, as the resumed bundle
        recorded them (episodes a crashed segment logged past that bundle are left out)
    :param start: environment steps at which the current segment started
    :param folder: the current segment's Monitor folder, relative to the run folder
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    start: int = 0
    folder: str = "monitor/segment_0"

    @property
    def segment(self) -> int:
        """The number ``k`` of the current segment's folder ``monitor/segment_<k>``."""
        return int(self.folder.rsplit("_", 1)[1])

    def snapshot(self, run_dir: Path) -> list[dict[str, Any]]:
        """The history with the current segment's episode counts appended (what a bundle records)."""
        files = sorted((run_dir / self.folder).glob("*monitor.csv"))
        episodes = {str(path.relative_to(run_dir)): len(read_monitor_file(path)) for path in files}
        return [*self.history, {"start": self.start, "episodes": episodes}]


def bundle_name(steps: int) -> str:
    """``step_000000012800`` for 12 800 steps: names sort by steps."""
    return f"{_PREFIX}{steps:012d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _save_rng_states(path: Path) -> None:
    """Write the random states of Python, NumPy, torch and each CUDA device as plain arrays (``rng.npz``)."""
    version, python_state, python_gauss = random.getstate()
    _, numpy_keys, position, has_gauss, numpy_gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    arrays: dict[str, Any] = {
        "python_version": version,
        "python_state": np.array(python_state, dtype=np.int64),
        "python_gauss": np.nan if python_gauss is None else python_gauss,
        "numpy_keys": numpy_keys,
        "numpy_position": [position, has_gauss],
        "numpy_gauss": numpy_gauss,
        "torch": th.get_rng_state().numpy(),
    }
    for index, state in enumerate(th.cuda.get_rng_state_all()):
        arrays[f"cuda_{index}"] = state.numpy()
    np.savez(path, **arrays)


def restore_rng_states(path: Path) -> None:
    """Set Python's, NumPy's and torch's random states to those saved in ``path`` (``rng.npz``).

    :raises CheckpointError: when the file is not the plain arrays :func:`_save_rng_states` writes (an object array
        or a pickle is never loaded)
    """
    try:
        _restore_rng_states(path)
    except Exception as exc:  # a wrong key, shape or type anywhere, or not an npz at all
        raise CheckpointError(
            f"checkpoint {path.parent}: {path.name} is not the plain arrays sbx-lecture writes ({exc}); "
            "remove that checkpoint folder to resume from an older one, or start a new run"
        ) from None


def _restore_rng_states(path: Path) -> None:
    with np.load(path, allow_pickle=False) as saved:
        python_gauss = float(saved["python_gauss"])
        python_state = tuple(int(x) for x in saved["python_state"])
        random.setstate((int(saved["python_version"]), python_state, None if np.isnan(python_gauss) else python_gauss))
        position, has_gauss = (int(x) for x in saved["numpy_position"])
        np.random.set_state(("MT19937", saved["numpy_keys"], position, has_gauss, float(saved["numpy_gauss"])))
        th.set_rng_state(th.from_numpy(saved["torch"].copy()))
        cuda = sorted((name for name in saved.files if name.startswith("cuda_")), key=lambda name: int(name[5:]))
        if cuda and len(cuda) == th.cuda.device_count():
            th.cuda.set_rng_state_all([th.from_numpy(saved[name].copy()) for name in cuda])


def replay_buffer_rows(model: BaseAlgorithm) -> int | None:
    """Rows stored in an off-policy model's replay buffer (``None`` for models without one)."""
    buffer = getattr(model, "replay_buffer", None)
    return None if buffer is None else int(buffer.size())


def write_bundle(
    model: BaseAlgorithm, run_dir: Path, metadata: dict[str, Any], monitor: MonitorLog, keep: int = 3
) -> Bundle:
    """Write the checkpoint bundle of ``model`` at its current step count into ``run_dir/checkpoints``.

    :param metadata: stored in the model zip and the manifest (algorithm, environment, plugin)
    :param monitor: the run's Monitor log, whose episode counts the manifest records
    :param keep: committed bundles to keep; older ones are removed after the new one is in place
    :raises NonFiniteError: when the model's weights hold NaN or infinity (nothing is written)
    """
    from stable_baselines3.common.vec_env import VecNormalize

    assert_finite_parameters(model, hint="no checkpoint was written, so the last one holds finite weights")
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    final = folder / bundle_name(steps)
    existing = verify_bundle(final) if final.exists() else None
    if isinstance(existing, Bundle):
        return existing  # this very step is committed already (a Ctrl-C right after a periodic checkpoint)
    staging = folder / f".{final.name}{TEMPORARY_MARK}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        loading.save(model, staging / MODEL_MEMBER, metadata)
        rows = replay_buffer_rows(model)
        if rows is not None:
            loading.save_replay_buffer(model.replay_buffer, staging / REPLAY_BUFFER_MEMBER)  # type: ignore[attr-defined]
        normalizer = model.get_vec_normalize_env()
        if isinstance(normalizer, VecNormalize):
            loading.save_normalization(normalizer, staging / NORMALIZATION_MEMBER)
        _save_rng_states(staging / RNG_MEMBER)
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "steps": steps,
            **{key: metadata[key] for key in ("algo", "env") if key in metadata},
            "replay_buffer_rows": rows,
            "monitor": monitor.snapshot(run_dir),
            "created": time.time(),
            "files": files,
        }
        manifest_path = staging / MANIFEST_FILE
        manifest_path.write_text(json.dumps(manifest, indent=2))
        _fsync_file(manifest_path)
        fsync_folder(staging)
        if final.exists():  # a damaged bundle of the same step: move it out of the way first
            final.rename(folder / f".{final.name}{_TRASH_MARK}-{uuid.uuid4().hex[:8]}")
        staging.rename(final)
        fsync_folder(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune_bundles(run_dir, keep)
    return Bundle(final, manifest)


def load_bundle(bundle: Bundle, env: VecEnv, device: str, algo: str) -> BaseAlgorithm:
    """The model of ``bundle`` on ``env`` with its replay buffer, after the random states it saved are restored.

    :raises CheckpointError: when the model or its replay buffer is not at the step the manifest records
    """
    model = loading.load(bundle.path / MODEL_MEMBER, env=env, device=device, algo=algo)
    buffer_path = bundle.member(REPLAY_BUFFER_MEMBER)
    if buffer_path is not None:
        loading.load_replay_buffer(model, buffer_path)
    if (model.num_timesteps, replay_buffer_rows(model)) != (bundle.steps, bundle.manifest.get("replay_buffer_rows")):
        raise CheckpointError(f"checkpoint {bundle.path}: the model or its replay buffer does not match the manifest")
    restore_rng_states(bundle.path / RNG_MEMBER)
    return model


def verify_bundle(path: Path) -> Bundle | str:
    """The bundle at ``path`` if its manifest and every file check out, else the reason it does not."""
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, UnicodeDecodeError, ValueError):
        return "unreadable manifest"
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        return "manifest of an unknown format"
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_MEMBER not in files or not isinstance(manifest.get("steps"), int):
        return "incomplete manifest"
    if path.name != bundle_name(manifest["steps"]):
        return "manifest of another step"
    for name, expected in files.items():
        member = path / name
        if Path(name).name != name or not member.is_file():
            return f"missing {name}"
        if not isinstance(expected, dict) or _sha256(member) != expected.get("sha256"):
            return f"{name} fails its checksum"
    return Bundle(path, manifest)


def committed_bundles(run_dir: Path) -> list[Path]:
    """Committed bundle folders of the run, newest first (not yet verified; zero-padded names sort by steps)."""
    found = (run_dir / CHECKPOINT_DIR).glob(f"{_PREFIX}*")
    return sorted((path for path in found if path.is_dir() and path.name[len(_PREFIX) :].isdigit()), reverse=True)


def newest_valid_bundle(run_dir: Path) -> tuple[Bundle, list[str]]:
    """The newest bundle that verifies, and one line for each newer bundle that was passed over.

    :raises CheckpointError: when no bundle verifies
    """
    passed_over: list[str] = []
    for path in committed_bundles(run_dir):
        checked = verify_bundle(path)
        if isinstance(checked, Bundle):
            return checked, passed_over
        passed_over.append(f"checkpoint {path.name} is damaged ({checked})")
    detail = f" ({'; '.join(passed_over)})" if passed_over else ""
    raise CheckpointError(f"run folder {run_dir} has no usable checkpoint in {CHECKPOINT_DIR}/{detail}")


def prune_bundles(run_dir: Path, keep: int) -> None:
    """Remove committed bundles beyond the newest ``keep`` (renamed away first, so none is ever half there)."""
    folder = run_dir / CHECKPOINT_DIR
    for path in committed_bundles(run_dir)[keep:]:
        trash = folder / f".{path.name}{_TRASH_MARK}-{uuid.uuid4().hex[:8]}"
        with suppress(OSError):
            path.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)


#: The signals that ask a command to save what it has and stop: Ctrl-C, and ``kill`` or a batch system's end of job
#: (SIGTERM, which Slurm and Kubernetes send before they kill).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


#: Set by :func:`interrupt_once`: the checkpoint callback raises the interrupt again at the next step when the
#: signal's own ``KeyboardInterrupt`` was swallowed (Python prints and drops one raised inside a finaliser).
_stop_signalled = threading.Event()


def ignore_stop_signals() -> None:
    """From now on Ctrl-C and SIGTERM change nothing (a checkpoint is being committed, or the command is ending)."""
    for each in STOP_SIGNALS:
        signal.signal(each, signal.SIG_IGN)


def interrupt_once(signum: int, frame: Any) -> None:
    """Stop-signal handler: raise ``KeyboardInterrupt`` once; later stop signals are ignored, so the checkpoint that
    the first one asks for is written in full."""
    ignore_stop_signals()
    _stop_signalled.set()
    raise KeyboardInterrupt


@contextmanager
def stop_signals_handled(handler: Any = interrupt_once) -> Iterator[None]:
    """Within the block, SIGTERM stops the command as Ctrl-C does: both call ``handler``, which raises
    ``KeyboardInterrupt`` (``signal.default_int_handler`` for every signal, :func:`interrupt_once` for the first).

    A stop signal the process ignores stays ignored (a command started with ``nohup``, or in the background of a
    shell, ignores Ctrl-C). Outside the main thread nothing changes. The previous handlers come back afterwards.
    """
    _stop_signalled.clear()
    try:
        with _handlers_swapped(handler):
            yield
    finally:
        _stop_signalled.clear()


@contextmanager
def interrupts_deferred() -> Iterator[list[int]]:
    """Hold back the stop signals (Ctrl-C, SIGTERM) for the block, so that a checkpoint being written is finished
    first.

    Yields the list of signals received meanwhile; the caller decides what to do with them. Outside the main
    thread nothing is held back.
    """
    received: list[int] = []
    with _handlers_swapped(lambda signum, frame: received.append(signum)):
        yield received


@contextmanager
def _handlers_swapped(handler: Any) -> Iterator[None]:
    """``handler`` for each stop signal the process does not ignore, in the main thread, for the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {each: signal.getsignal(each) for each in STOP_SIGNALS}
    for each, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(each, handler)
    try:
        yield
    finally:
        for each, old in previous.items():
            signal.signal(each, old)


class CheckpointCallback(BaseCallback):
    """Every ``save_freq`` environment steps (at the end of a rollout) and at the end, commit a checkpoint bundle.

    A Ctrl-C while a bundle is written is held back until the bundle is committed, then raised.

    :param run_dir: the run folder
    :param save_freq: environment steps between checkpoints (counted over all parallel environments)
    :param metadata: algorithm, environment and plugin, stored in each bundle
    :param monitor: the run's Monitor log
    :param keep: bundles to keep
    """

    def __init__(
        self, run_dir: Path, save_freq: int, metadata: dict[str, Any], monitor: MonitorLog, keep: int = 3
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.save_freq = save_freq
        self.metadata = metadata
        self.monitor = monitor
        self.keep = keep
        self.last_saved: int | None = None

    def _on_training_start(self) -> None:
        if self.last_saved is None:
            self.last_saved = self.model.num_timesteps

    def _on_step(self) -> bool:
        if _stop_signalled.is_set():  # a stop signal whose interrupt got lost on the way: stop here instead
            raise KeyboardInterrupt
        return True

    def _on_rollout_end(self) -> None:
        # At a rollout's end every transition is stored (SB3 calls on_step before storing the last one).
        if self.model.num_timesteps - (self.last_saved or 0) >= self.save_freq:
            self.save_checkpoint()

    def _on_training_end(self) -> None:
        if self.model.num_timesteps != self.last_saved:
            self.save_checkpoint()

    def save_checkpoint(self) -> Bundle:
        """Commit the bundle for the current step count now (a stop signal waits for it, then is delivered)."""
        with interrupts_deferred() as received:
            bundle = write_bundle(self.model, self.run_dir, self.metadata, self.monitor, self.keep)
            self.last_saved = bundle.steps
        if received:  # to the handler it was meant for (interrupt_once ignores the next ones)
            signal.raise_signal(received[0])
        return bundle
