"""Normalisation statistics and replay buffers in ``.npz`` files (no pickle), and safe reading of SB3's pickles.

- **Normalisation statistics**: the ``.npz`` of :func:`save_normalization`, or a ``VecNormalize.save`` pickle (the
  RL Zoo's ``vecnormalize.pkl``) through the symbolic unpickler, of which only the statistics and settings are kept:
  both then take the same path into a new ``VecNormalize``.
- **Replay buffers**: the ``.npz`` of :func:`save_replay_buffer`. A pickled buffer needs ``trusted=True``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbx_lecture.infra.files import json_record, write_npz
from sbx_lecture.loading.model import ModelFileError, ModelFileNotFoundError, UntrustedContentError
from sbx_lecture.loading.pickles import RefusedContent, class_path, decode, materialize

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

_SETTINGS = "settings.json"
_NORMALIZATION_SETTINGS = (
    "training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys",
)  # fmt: skip
_VECNORMALIZE_TARGET = "stable_baselines3.common.vec_env.vec_normalize:VecNormalize"


def _write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> None:
    """Write ``arrays`` and, as the JSON text array ``settings.json``, ``settings`` to an ``.npz``, atomically."""
    write_npz(path, {**arrays, _SETTINGS: np.array(json.dumps(settings))})


def _read_npz(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and settings of one of our ``.npz`` files; object arrays (which need pickle) are refused."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                try:
                    arrays[name] = archive[name]
                except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
                    raise UntrustedContentError(path, f"array {name!r}", "an array of Python objects") from exc
        settings = str(arrays.pop(_SETTINGS)[()])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path} is not a readable sbx-lecture .npz file ({type(exc).__name__})") from None
    return arrays, json_record(settings, f"{path}: its settings", "save it again", ModelFileError)


def _is_pickle(path: str | os.PathLike[str]) -> bool:
    if not Path(path).is_file():
        raise ModelFileNotFoundError(f"{path} does not exist")
    return not zipfile.is_zipfile(path)


# ------------------------------------------------------------------------------------------------ normalisation


def _statistics_arrays(path: Any, obs_rms: Any, ret_rms: Any) -> dict[str, np.ndarray]:
    """The arrays statistics are stored in: ``<name>/mean``, ``<name>/var`` and ``<name>/count`` for ``obs_rms`` (or
    ``obs_rms/<key>`` for dict observations) and ``ret_rms``."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    arrays: dict[str, np.ndarray] = {}
    for name, rms in _named_statistics(obs_rms, ret_rms).items():
        if not isinstance(rms, RunningMeanStd):
            raise ModelFileError(f"{path}: {name} is not a RunningMeanStd")
        arrays[f"{name}/mean"], arrays[f"{name}/var"] = np.asarray(rms.mean), np.asarray(rms.var)
        arrays[f"{name}/count"] = np.asarray(rms.count, dtype=np.float64)
    return arrays


def _named_statistics(obs_rms: Any, ret_rms: Any) -> dict[str, Any]:
    """Statistics by their stored names: ``obs_rms`` (or ``obs_rms/<key>`` for dict observations), ``ret_rms``."""
    if isinstance(obs_rms, dict):
        return {**{f"obs_rms/{key}": rms for key, rms in obs_rms.items()}, "ret_rms": ret_rms}
    return {"obs_rms": obs_rms, "ret_rms": ret_rms}


def save_normalization(normalizer: VecNormalize, path: str | os.PathLike[str]) -> None:
    """Write the statistics and settings of ``normalizer`` to an ``.npz`` file (atomically, no pickle)."""
    settings = {name: getattr(normalizer, name) for name in _NORMALIZATION_SETTINGS}
    settings["obs_keys"] = sorted(normalizer.obs_rms) if isinstance(normalizer.obs_rms, dict) else None
    _write_npz(path, _statistics_arrays(path, normalizer.obs_rms, normalizer.ret_rms), settings)


def _read_vecnormalize_pickle(path: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Statistics and settings of a ``VecNormalize.save`` pickle, read by the symbolic unpickler, as
    :func:`_read_npz` gives those of our ``.npz``."""
    try:
        tree = decode(Path(path).read_bytes())
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable pickle ({type(exc).__name__})") from None
    if getattr(tree, "target", None) != _VECNORMALIZE_TARGET or not isinstance(getattr(tree, "state", None), dict):
        raise UntrustedContentError(
            path, "its content", f"a {getattr(tree, 'target', type(tree).__name__)}, not a VecNormalize"
        )
    kept = {name: tree.state[name] for name in (*_NORMALIZATION_SETTINGS, "obs_rms", "ret_rms") if name in tree.state}
    try:
        state = materialize(kept, "VecNormalize")
        return _statistics_arrays(path, state.pop("obs_rms"), state.pop("ret_rms")), state
    except RefusedContent as exc:
        raise UntrustedContentError(path, "a VecNormalize field", str(exc)) from None
    except KeyError as exc:
        raise ModelFileError(f"{path}: the VecNormalize state lacks {exc}") from None


def load_normalization(path: str | os.PathLike[str], venv: VecEnv, *, trusted: bool = False) -> VecNormalize:
    """A ``VecNormalize`` around ``venv`` with the statistics of ``path``.

    :param path: an ``.npz`` of :func:`save_normalization`, or a ``VecNormalize.save`` pickle (``vecnormalize.pkl``),
        read by the symbolic unpickler, keeping only the statistics and settings
    :param venv: the environment to normalise
    :param trusted: read a pickle with SB3's ``VecNormalize.load`` (unpickles)
    :raises UntrustedContentError: the pickle holds something other than plain statistics
    """
    from stable_baselines3.common.vec_env import VecNormalize

    pickled = _is_pickle(path)
    if pickled and trusted:
        return VecNormalize.load(str(path), venv)
    arrays, settings = _read_vecnormalize_pickle(path) if pickled else _read_npz(path)
    kwargs = {name: settings[name] for name in _NORMALIZATION_SETTINGS if name in settings}
    try:
        normalizer = VecNormalize(venv, **kwargs)
    except (AssertionError, ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: its settings do not fit the environment ({exc})") from None
    targets = _named_statistics(normalizer.obs_rms, normalizer.ret_rms)
    for name in sorted({array.rpartition("/")[0] for array in arrays}):
        if name not in targets:
            raise ModelFileError(f"{path}: statistics {name!r}, which the environment has no place for")
        try:
            mean, var, count = (np.asarray(arrays[f"{name}/{part}"], np.float64) for part in ("mean", "var", "count"))
        except KeyError as exc:
            raise ModelFileError(f"{path}: statistics {name!r} lack {exc}") from None
        rms = targets[name]
        if mean.shape != rms.mean.shape or var.shape != rms.var.shape:
            raise ModelFileError(
                f"{path}: statistics {name!r} have shape {mean.shape}, the environment needs {rms.mean.shape}"
            )
        rms.mean, rms.var, rms.count = mean, var, float(count)
    return normalizer


# ------------------------------------------------------------------------------------------------ replay buffer


def save_replay_buffer(buffer: ReplayBuffer, path: str | os.PathLike[str]) -> None:
    """Write every array and scalar attribute of a ``ReplayBuffer`` / ``DictReplayBuffer`` to ``.npz`` (no pickle).

    :raises ValueError: for a ``HerReplayBuffer`` (it holds an environment; save it with SB3 instead)
    """
    from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

    if isinstance(buffer, HerReplayBuffer):
        raise ValueError("HerReplayBuffer cannot be saved as .npz; use model.save_replay_buffer (a pickle) instead")
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            arrays[f"array/{name}"] = value
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            arrays.update({f"dict/{name}/{key}": array for key, array in value.items()})
        elif isinstance(value, (bool, int, float, str)) or value is None:
            scalars[name] = value
    _write_npz(path, arrays, {"class": class_path(type(buffer)), "attributes": scalars})


def load_replay_buffer(
    model: BaseAlgorithm, path: str | os.PathLike[str], *, trusted: bool = False, truncate_last_traj: bool = True
) -> None:
    """Put the replay buffer of ``path`` into the off-policy ``model``, on the model's device.

    The ``.npz`` of :func:`save_replay_buffer` fills the model's own buffer (same class required). A pickle is
    loaded only with ``trusted=True``, by SB3's ``model.load_replay_buffer`` (``truncate_last_traj`` applies to
    ``HerReplayBuffer`` there).

    :raises UntrustedContentError: a pickle without ``trusted=True``, or an ``.npz`` holding object arrays
    """
    if _is_pickle(path):
        if not trusted:
            raise UntrustedContentError(path, "the replay buffer", "a pickled ReplayBuffer")
        model.load_replay_buffer(path, truncate_last_traj=truncate_last_traj)  # type: ignore[attr-defined]
        return
    buffer = getattr(model, "replay_buffer", None)
    if buffer is None:
        raise ModelFileError(f"cannot load {path}: {type(model).__name__} has no replay buffer")
    arrays, settings = _read_npz(path)
    if settings.get("class") != class_path(type(buffer)):
        raise ModelFileError(f"{path} holds a {settings.get('class')}, the model uses {class_path(type(buffer))}")
    for name, value in dict(settings.get("attributes", {})).items():
        if name in vars(buffer) and isinstance(value, (bool, int, float, str)):
            setattr(buffer, name, value)
    for key, array in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "array":
            setattr(buffer, rest, array)
        elif kind == "dict":
            name, _, entry = rest.partition("/")
            getattr(buffer, name)[entry] = array
    buffer.device = model.device
