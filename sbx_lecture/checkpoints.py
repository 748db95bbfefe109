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
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import get_latest_run_id
from stable_baselines3.common.vec_env import VecEnv

from sbx_lecture import loading
from sbx_lecture.infra.files import TEMPORARY_MARK, fsync_folder, json_record, write_json, write_npz
from sbx_lecture.infra.finite import assert_finite_parameters
from sbx_lecture.runs import CHECKPOINT_DIR, MONITOR_DIR, read_monitor_file

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
class Segment:
    """What one ``train`` call adds to a run: where its checkpoints go, and which Monitor episodes they count.

    :param run_dir: the run folder
    :param metadata: algorithm, environment and plugin, stored in each bundle's model and manifest
    :param start: environment steps at which the segment started
    :param history: earlier segments, ``{"start": steps, "episodes": {file: count}}``, as the resumed bundle
        recorded them (episodes a crashed segment logged past that bundle are left out)
    :param keep: committed bundles to keep; older ones are removed after a new one is in place
    """

    run_dir: Path
    metadata: dict[str, Any]
    start: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    keep: int = 3

    def __post_init__(self) -> None:
        # a new, never used Monitor folder ``monitor/segment_<k>`` (relative to the run folder): k counts the segments
        root = self.run_dir / MONITOR_DIR
        self.number = get_latest_run_id(str(root), "segment") + 1 if (root / "segment_0").exists() else 0
        self.folder = f"{MONITOR_DIR}/segment_{self.number}"

    def snapshot(self) -> list[dict[str, Any]]:
        """The history with this segment's episode counts appended (what a bundle records)."""
        files = sorted((self.run_dir / self.folder).glob("*monitor.csv"))
        episodes = {str(path.relative_to(self.run_dir)): len(read_monitor_file(path)) for path in files}
        return [*self.history, {"start": self.start, "episodes": episodes}]


def bundle_name(steps: int) -> str:
    """``step_000000012800`` for 12 800 steps: names sort by steps."""
    return f"{_PREFIX}{steps:012d}"


def _hidden(path: Path, mark: str) -> Path:
    """A hidden, unique sibling of the bundle folder ``path``: its staging folder (``mark`` is ``TEMPORARY_MARK``) or
    where it goes to be removed (``_TRASH_MARK``); :func:`sbx_lecture.runs.remove_stale` removes what a crash leaves."""
    return path.with_name(f".{path.name}{mark}-{uuid.uuid4().hex[:8]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        **{f"cuda_{index}": state.numpy() for index, state in enumerate(th.cuda.get_rng_state_all())},
    }
    write_npz(path, arrays)


def restore_rng_states(path: Path) -> None:
    """Set Python's, NumPy's and torch's random states to those saved in ``path`` (``rng.npz``).

    :raises CheckpointError: when the file is not the plain arrays :func:`_save_rng_states` writes (an object array
        or a pickle is never loaded)
    """
    try:
        with np.load(path, allow_pickle=False) as saved:
            gauss = float(saved["python_gauss"])
            state = tuple(int(x) for x in saved["python_state"])
            random.setstate((int(saved["python_version"]), state, None if np.isnan(gauss) else gauss))
            position, has_gauss = (int(x) for x in saved["numpy_position"])
            np.random.set_state(("MT19937", saved["numpy_keys"], position, has_gauss, float(saved["numpy_gauss"])))
            th.set_rng_state(th.from_numpy(saved["torch"].copy()))
            cuda = sorted((name for name in saved.files if name.startswith("cuda_")), key=lambda name: int(name[5:]))
            if cuda and len(cuda) == th.cuda.device_count():
                th.cuda.set_rng_state_all([th.from_numpy(saved[name].copy()) for name in cuda])
    except Exception as exc:  # a wrong key, shape or type anywhere, or not an npz at all
        raise CheckpointError(
            f"checkpoint {path.parent}: {path.name} is not the plain arrays sbx-lecture writes ({exc}); "
            "remove that checkpoint folder to resume from an older one, or start a new run"
        ) from None


def replay_buffer_rows(model: BaseAlgorithm) -> int | None:
    """Rows stored in an off-policy model's replay buffer (``None`` for models without one)."""
    buffer = getattr(model, "replay_buffer", None)
    return None if buffer is None else int(buffer.size())


def drop_unstored_step(model: BaseAlgorithm) -> None:
    """Undo the count of a step whose transition an interrupt kept out of the replay buffer.

    SB3's off-policy loop counts a step (``num_timesteps``) before it stores the transition and moves the model's
    last observation on; a Ctrl-C that lands in between leaves one step counted and not stored. That step is then
    taken as not taken (the model still holds the observation it started from), so a checkpoint's step count and its
    buffer agree. Nothing changes for models without a replay buffer, or once the buffer has wrapped around.
    """
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None and not buffer.full and model.num_timesteps == (buffer.size() + 1) * model.n_envs:
        model.num_timesteps = buffer.size() * model.n_envs


def save_model(model: BaseAlgorithm, folder: Path, metadata: dict[str, Any]) -> Path:
    """Save ``model`` as ``folder/model.zip`` and, when its environment is normalised, the statistics beside it as
    ``vecnormalize.npz`` (each atomically): the final model of a run, and the model of a checkpoint bundle.

    :return: the model's path
    """
    loading.save(model, folder / MODEL_MEMBER, metadata)
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        loading.save_normalization(normalizer, folder / NORMALIZATION_MEMBER)
    return folder / MODEL_MEMBER


def write_bundle(model: BaseAlgorithm, segment: Segment) -> Bundle:
    """Write the checkpoint bundle of ``model`` at its current step count into the run's ``checkpoints/``, then
    remove the bundles beyond the newest ``segment.keep``.

    :raises NonFiniteError: when the model's weights hold NaN or infinity (nothing is written)
    """
    assert_finite_parameters(model, hint="no checkpoint was written, so the last one holds finite weights")
    steps = int(model.num_timesteps)
    final = segment.run_dir / CHECKPOINT_DIR / bundle_name(steps)
    existing = verify_bundle(final) if final.exists() else None
    if isinstance(existing, Bundle):
        return existing  # this very step is committed already (a Ctrl-C right after a periodic checkpoint)
    staging = _hidden(final, TEMPORARY_MARK)
    staging.mkdir(parents=True)
    try:  # each member is written atomically: it is on disk before the manifest that vouches for it
        save_model(model, staging, segment.metadata)
        rows = replay_buffer_rows(model)
        if rows is not None:
            loading.save_replay_buffer(model.replay_buffer, staging / REPLAY_BUFFER_MEMBER)  # type: ignore[attr-defined]
        _save_rng_states(staging / RNG_MEMBER)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "steps": steps,
            **{key: segment.metadata[key] for key in ("algo", "env") if key in segment.metadata},
            "replay_buffer_rows": rows,
            "monitor": segment.snapshot(),
            "created": time.time(),
            "files": {path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)} for path in staging.iterdir()},
        }
        write_json(staging / MANIFEST_FILE, manifest)
        fsync_folder(staging)
        if final.exists():  # a damaged bundle of the same step: move it out of the way first
            final.rename(_hidden(final, _TRASH_MARK))
        staging.rename(final)
        fsync_folder(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune_bundles(segment.run_dir, segment.keep)
    return Bundle(final, manifest)


def load_bundle(bundle: Bundle, env: VecEnv, device: str, algo: str) -> BaseAlgorithm:
    """The model of ``bundle`` on ``env`` (normalised with the bundle's statistics, when it has them) with its replay
    buffer, after the random states it saved are restored.

    :raises CheckpointError: when the model or its replay buffer is not at the step the manifest records
    """
    statistics = bundle.member(NORMALIZATION_MEMBER)
    if statistics is not None:
        env = loading.load_normalization(statistics, env)
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
    try:
        manifest = json_record((path / MANIFEST_FILE).read_bytes(), MANIFEST_FILE, "")
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError):
        return "unreadable manifest"
    if manifest.get("format") != BUNDLE_FORMAT:
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
    raise CheckpointError(
        f"run folder {run_dir} has no usable checkpoint in {CHECKPOINT_DIR}/{detail}; start a new run instead"
    )


def prune_bundles(run_dir: Path, keep: int) -> None:
    """Remove committed bundles beyond the newest ``keep`` (renamed away first, so none is ever half there)."""
    for path in committed_bundles(run_dir)[keep:]:
        trash = _hidden(path, _TRASH_MARK)
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
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {each: signal.getsignal(each) for each in STOP_SIGNALS} if in_main_thread else {}
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

    :param segment: the run's segment being trained: where the bundles go and what they record
    :param save_freq: environment steps between checkpoints (counted over all parallel environments)
    """

    def __init__(self, segment: Segment, save_freq: int) -> None:
        super().__init__()
        self.segment = segment
        self.save_freq = save_freq
        self.last_saved = segment.start

    def _on_step(self) -> bool:
        if _stop_signalled.is_set():  # a stop signal whose interrupt got lost on the way: stop here instead
            raise KeyboardInterrupt
        return True

    def _on_rollout_end(self) -> None:
        # At a rollout's end every transition is stored (SB3 calls on_step before storing the last one).
        if self.model.num_timesteps - self.last_saved >= self.save_freq:
            self.save_checkpoint()

    def _on_training_end(self) -> None:
        if self.model.num_timesteps != self.last_saved:
            self.save_checkpoint()

    def save_checkpoint(self) -> Bundle:
        """Commit the bundle for the current step count now (a stop signal waits for it, then is delivered)."""
        with interrupts_deferred() as received:
            bundle = write_bundle(self.model, self.segment)
            self.last_saved = bundle.steps
        if received:  # to the handler it was meant for (interrupt_once ignores the next ones)
            signal.raise_signal(received[0])
        return bundle
