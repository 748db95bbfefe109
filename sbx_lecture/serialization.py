"""Safe loading: model zips, normalisation statistics and replay buffers read without running code from the file.

What loads safely (``trusted=False``, the default):

- **Model zips** of any registered algorithm, saved by sbx-lecture or by plain SB3 / sb3-contrib / a plugin. The
  ``data`` member's JSON fields are read as they are; its pickled fields are parsed by a symbolic unpickler that runs
  nothing (:mod:`sbx_lecture.safe_pickle`) and rebuilt only if they are plain data: numpy arrays, deques, the
  standard gymnasium spaces, ``TrainFreq``, SB3's ``ConstantSchedule`` / ``LinearSchedule`` / ``FloatSchedule``,
  rl-zoo3's ``SimpleLinearSchedule``, and classes of the allow-list (torch.nn modules such as activations,
  torch.optim optimizers, SB3 / sb3-contrib policies, features extractors and buffers, and classes from the packages
  of registered algorithms). Our own saves (:func:`save`) also carry a JSON description of those fields
  (:func:`describe_for_safe_load`), which takes precedence. Weights and optimizer states are read with
  ``torch.load(weights_only=True)``.
- A schedule that cannot be rebuilt (a function pickled by value: a lambda, a closure of older SB3 versions):
  ``learning_rate`` / ``lr_schedule`` become constant at the learning rate stored in the saved optimizer state; an
  sbx-lecture ``lin_X`` schedule is recognised by its name; any other field that holds a function is replaced by a
  stand-in that raises :class:`UntrustedContentError` when training calls it (prediction never does). Load with
  ``trusted=True`` to get such functions back.
- SB3's action noise objects (normal, Ornstein-Uhlenbeck, vectorized) are rebuilt from their arrays.
- **Normalisation statistics**: the ``.npz`` of :func:`save_normalization`, or a ``VecNormalize.save`` pickle (the
  RL Zoo's ``vecnormalize.pkl``) through the same symbolic unpickler, of which only the statistics and settings are
  kept.
- **Replay buffers**: the ``.npz`` of :func:`save_replay_buffer`. A pickled buffer needs ``trusted=True``.

Anything else is refused with :class:`UntrustedContentError`, one line naming the file and the field.
``trusted=True`` uses SB3's own loaders, which unpickle.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbx_lecture.runs import ModelFileError, atomic_write, check_model_file
from sbx_lecture.safe_description import DescriptionError, decode_described, describe_value
from sbx_lecture.safe_pickle import RefusedContent, class_path, decode, materialize, referenced_globals

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

__all__ = [
    "DESCRIPTION_KEY",
    "METADATA_NAME",
    "UntrustedContentError",
    "describe_for_safe_load",
    "inspect_model_file",
    "load",
    "load_normalization",
    "load_replay_buffer",
    "save",
    "save_normalization",
    "save_replay_buffer",
]

METADATA_NAME = "sbx_lecture.json"
#: Key of :func:`describe_for_safe_load`'s description inside ``sbx_lecture.json``.
DESCRIPTION_KEY = "safe_load"
_TRUST_HINT = "pass trusted=True (--trusted) only if you trust its source"
_SCHEDULE_NAMES = re.compile(r"(^learning_rate$|schedule|^clip_range|^target_kl$)")
_OUR_LINEAR = re.compile(r"linear_schedule\(([-+0-9.eE]+|inf|nan)\)")


class UntrustedContentError(ModelFileError):
    """Loading a file would need unpickling (running code named in it): refused unless ``trusted=True``."""

    def __init__(self, path: str | os.PathLike[str], field: str, what: str) -> None:
        what = " ".join(str(what).split())
        super().__init__(f"{path}: {field} needs unpickling ({what}); {_TRUST_HINT}")
        self.path, self.field, self.what = str(path), field, what


class UnavailableSchedule:
    """Stands for a schedule that could not be rebuilt safely: calling it (training does) raises the error."""

    def __init__(self, path: str, field: str) -> None:
        self.path, self.field = path, field

    def __call__(self, progress_remaining: float) -> float:
        raise UntrustedContentError(self.path, f"schedule {self.field!r} (needed to train)", "a pickled function")

    def __repr__(self) -> str:
        return f"UnavailableSchedule({self.field!r})"


# ----------------------------------------------------------------------------------------------------- saving


def _saved_fields(model: BaseAlgorithm) -> dict[str, Any]:
    """The attributes ``model.save`` writes into ``data`` (same exclusions as SB3's ``save``)."""
    excluded = set(model._excluded_save_params())
    state_dicts, torch_variables = model._get_torch_save_params()
    excluded.update(name.split(".")[0] for name in [*state_dicts, *torch_variables])
    return {name: value for name, value in model.__dict__.items() if name not in excluded}


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def describe_for_safe_load(model: BaseAlgorithm) -> dict[str, Any]:
    """Plain-JSON description of the fields of ``model`` that SB3 would pickle, for an exact safe rebuild.

    Classes are given as ``"module:qualname"`` (checked against the allow-list when loading), spaces, schedules,
    arrays and containers by their parts. Fields that cannot be described are left out; loading then reads them from
    the pickle with the symbolic unpickler, or refuses them.

    :param model: the model about to be saved
    :return: ``{"format": 1, "algorithm": "module:Class", "fields": {name: description}}``
    """
    fields: dict[str, Any] = {}
    for name, value in _saved_fields(model).items():
        if _is_json(value):
            continue
        with suppress(DescriptionError):
            fields[name] = describe_value(value)
    return {"format": 1, "algorithm": class_path(type(model)), "fields": fields}


def save(model: BaseAlgorithm, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
    """Save ``model`` atomically as an SB3 zip plus ``sbx_lecture.json`` (``metadata`` and the safe-load description).

    The zip still loads with plain SB3's ``cls.load``.
    """
    content = {**(metadata or {}), DESCRIPTION_KEY: describe_for_safe_load(model)}
    text = json.dumps(content, indent=2)

    def write(temporary: str) -> None:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_NAME, text)

    atomic_write(path, write, suffix=".zip")


# ----------------------------------------------------------------------------------------------------- reading


def _read_zip_json(path: str | os.PathLike[str], member: str) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            if member not in archive.namelist():
                return {}
            content = json.loads(archive.read(member))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: member {member!r} is unreadable ({type(exc).__name__}); re-save the model"
        ) from None
    if not isinstance(content, dict):
        raise ModelFileError(f"{path}: member {member!r} is not a JSON object; re-save the model")
    return content


def _decode_field(path: str, name: str, item: dict[str, Any]) -> Any:
    """A ``:serialized:`` field rebuilt through the symbolic unpickler (raises :class:`RefusedContent`)."""
    try:
        tree = decode(base64.b64decode(str(item[":serialized:"]).encode(), validate=True))
    except (binascii.Error, pickle.UnpicklingError, EOFError, ValueError):
        raise ModelFileError(
            f"{path}: field {name!r} is corrupted (not a readable pickle); re-save the model"
        ) from None
    return materialize(tree, name)


def _saved_learning_rate(params: dict[str, Any]) -> float | None:
    for name, state in params.items():
        if name.endswith("optimizer") and isinstance(state, dict):
            groups = state.get("param_groups") or [{}]
            if isinstance(groups[0].get("lr"), (int, float)):
                return float(groups[0]["lr"])
    return None


def _fallback_schedule(path: str, name: str, item: dict[str, Any], params: dict[str, Any]) -> Any:
    """A replacement for a schedule field that could not be rebuilt (see the module docstring); ``None`` if none."""
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule

    readable = json.dumps({k: v for k, v in item.items() if k != ":serialized:"})
    kind = str(item.get(":type:", ""))
    if not re.search(r"function|Schedule", kind) or not (_SCHEDULE_NAMES.search(name) or "function" in kind):
        return None
    match = _OUR_LINEAR.search(readable)
    if match is not None:
        from sbx_lecture.hyperparams import linear_schedule

        return linear_schedule(float(match.group(1)))
    learning_rate = _saved_learning_rate(params)
    if name == "learning_rate" and learning_rate is not None:
        return learning_rate
    if name == "lr_schedule" and learning_rate is not None:
        return FloatSchedule(ConstantSchedule(learning_rate))
    return UnavailableSchedule(path, name)


def _rebuild_data(
    path: str, fields: dict[str, Any], description: Any, custom_objects: dict[str, Any] | None, params: dict[str, Any]
) -> dict[str, Any]:
    described = description.get("fields", {}) if isinstance(description, dict) else {}
    data: dict[str, Any] = {}
    for name, item in fields.items():
        if custom_objects is not None and name in custom_objects:
            data[name] = custom_objects[name]
            continue
        try:
            if isinstance(described, dict) and name in described:
                data[name] = decode_described(described[name], name)
            elif isinstance(item, dict) and ":serialized:" in item:
                data[name] = _decode_field(path, name, item)
            else:
                data[name] = item
        except (RefusedContent, DescriptionError) as exc:
            replacement = _fallback_schedule(path, name, item, params) if isinstance(item, dict) else None
            if replacement is None:
                raise UntrustedContentError(path, f"field {name!r} of 'data'", str(exc)) from None
            data[name] = replacement
    return data


def _policy_class_of(fields: dict[str, Any]) -> type | None:
    item = fields.get("policy_class")
    if not isinstance(item, dict) or ":serialized:" not in item:
        return None
    try:
        cls = materialize(decode(base64.b64decode(str(item[":serialized:"]))), "policy_class")
    except Exception:
        return None
    return cls if isinstance(cls, type) else None


def _choose_class(path: str, metadata: dict[str, Any], algo: str | type | None, policy_class: type | None) -> type:
    from sbx_lecture.plugins import get_plugin_manager
    from sbx_lecture.registry import RegistryError, normalize_name

    if isinstance(algo, type):
        return algo
    registry = get_plugin_manager().registry
    saved = metadata.get("algo")
    if isinstance(saved, str) and saved:
        if algo is not None and normalize_name(algo) != normalize_name(saved):
            raise ModelFileError(f"{path} holds a {saved!r} model, not {algo!r}; leave out algo= (--algo)")
        if saved not in registry:
            raise ModelFileError(f"{path} holds a {saved!r} model, which is not registered; install the plugin for it")
        return registry.get(saved)
    if algo is not None:
        return registry.get(algo)
    description = metadata.get(DESCRIPTION_KEY)
    described = description.get("algorithm") if isinstance(description, dict) else None
    candidates: dict[type, str] = {}
    for spec in registry:  # only registered classes are considered: a file never names what gets imported
        try:
            cls = spec.load()
        except (RegistryError, ImportError):
            continue
        if described is not None and class_path(cls) == described:
            return cls
        if policy_class is not None and policy_class in getattr(cls, "policy_aliases", {}).values():
            candidates.setdefault(cls, spec.name)
    if len(candidates) == 1:
        return next(iter(candidates))
    names = ", ".join(sorted(candidates.values())) or "no registered algorithm"
    raise ModelFileError(f"cannot tell which algorithm saved {path} (its policy fits {names}); pass algo= (--algo)")


def load(
    path: str | os.PathLike[str],
    env: Any = None,
    *,
    trusted: bool = False,
    device: Any = "auto",
    algo: str | type | None = None,
    custom_objects: dict[str, Any] | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """Load a model zip of any registered algorithm without unpickling anything (see the module docstring).

    :param path: the model zip
    :param env: environment to run it on (its spaces must match); ``None`` to only predict
    :param trusted: use SB3's own loader, which unpickles: only for files from a source you trust
    :param device: torch device
    :param algo: registry name or class, for zips without sbx-lecture metadata
    :param custom_objects: values replacing the saved fields of those names, as in SB3
    :param kwargs: ``force_reset``, ``print_system_info``, or attributes to set on the model, as SB3's ``load``
    :raises UntrustedContentError: a field would need unpickling
    :raises ModelFileError: missing, corrupted or unreadable file, or an unknown algorithm
    """
    if not Path(path).exists() and Path(f"{path}.zip").is_file():  # SB3 appends .zip to a path without it
        path = f"{path}.zip"
    path_text = str(path)
    check_model_file(path)
    metadata = _read_zip_json(path, METADATA_NAME)
    fields = _read_zip_json(path, "data")
    if trusted:
        cls = _choose_class(path_text, metadata, algo, _policy_class_of(fields))
        from sbx_lecture.common.safe_load import SafeLoadMixin

        extra = {"trusted": True} if issubclass(cls, SafeLoadMixin) else {}
        return _wrap(path_text, cls, lambda: cls.load(path, env, device, custom_objects, **extra, **kwargs))  # type: ignore[attr-defined]
    from stable_baselines3.common.save_util import load_from_zip_file

    print_info = bool(kwargs.pop("print_system_info", False))
    if print_info:
        from stable_baselines3.common.utils import get_system_info

        print("== CURRENT SYSTEM INFO ==")
        get_system_info()
    _, params, pytorch_variables = load_from_zip_file(
        path_text, load_data=False, device=device, print_system_info=print_info
    )
    data = _rebuild_data(path_text, fields, metadata.get(DESCRIPTION_KEY), custom_objects, params)
    policy_class = data.get("policy_class")
    cls = _choose_class(path_text, metadata, algo, policy_class if isinstance(policy_class, type) else None)
    return _wrap(path_text, cls, lambda: _build(cls, data, params, pytorch_variables, env, device, kwargs))


def _wrap(path: str, cls: type, build: Callable[[], BaseAlgorithm]) -> BaseAlgorithm:
    try:
        return build()
    except ModelFileError:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelFileError(f"cannot load {path} as {cls.__name__}: {message}") from exc


def _build(
    cls: Any, data: dict[str, Any], params: dict[str, Any], variables: Any, env: Any, device: Any, kwargs: Any
) -> BaseAlgorithm:
    """What SB3's ``BaseAlgorithm.load`` does once it has the data (mirrors stable_baselines3 2.x)."""
    from stable_baselines3.common.save_util import recursive_setattr
    from stable_baselines3.common.utils import check_for_correct_spaces

    kwargs = dict(kwargs)
    force_reset = kwargs.pop("force_reset", True)
    policy_kwargs = data.get("policy_kwargs")
    if isinstance(policy_kwargs, dict):
        policy_kwargs.pop("device", None)
        net_arch = policy_kwargs.get("net_arch")
        if net_arch and isinstance(net_arch, list) and isinstance(net_arch[0], dict):
            policy_kwargs["net_arch"] = net_arch[0]
    if "policy_kwargs" in kwargs and kwargs["policy_kwargs"] != policy_kwargs:
        raise ValueError(f"the given policy_kwargs {kwargs['policy_kwargs']} differ from the saved {policy_kwargs}")
    if "observation_space" not in data or "action_space" not in data:
        raise ModelFileError("the saved data has no observation_space or action_space")
    if not isinstance(data.get("policy_class"), type):
        raise ModelFileError("the saved data has no policy class")
    if env is not None:
        env = cls._wrap_env(env, data.get("verbose", 0))
        check_for_correct_spaces(env, data["observation_space"], data["action_space"])
        if force_reset:
            data["_last_obs"] = None
        data["n_envs"] = env.num_envs
    model = cls(policy=data["policy_class"], env=env, device=device, _init_setup_model=False)
    model.__dict__.update(data)
    model.__dict__.update(kwargs)
    model._setup_model()
    model.set_parameters(params, exact_match=True, device=device)
    for name, value in (variables or {}).items():
        if value is not None:
            recursive_setattr(model, f"{name}.data", value.data)
    if model.use_sde:
        model.policy.reset_noise()
    return model  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------------- inspecting


def inspect_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a model zip holds and which fields would need trust, without running anything from it.

    :return: plain JSON: ``members`` (name, size), ``metadata`` (without the description), ``sb3_version``,
        ``fields`` (name → ``{"value": ...}`` for JSON fields, ``{"type", "references", "safe", "described"}`` for
        pickled ones), ``needs_trust`` (field names), ``safe_load`` (whether :func:`load` can rebuild it) and
        ``reason`` (why not)
    """
    check_model_file(path)
    with zipfile.ZipFile(path) as archive:
        members = [{"name": info.filename, "size": info.file_size} for info in archive.infolist()]
        version = (
            archive.read("_stable_baselines3_version").decode()
            if "_stable_baselines3_version" in [m["name"] for m in members]
            else None
        )
    metadata = _read_zip_json(path, METADATA_NAME)
    description = metadata.pop(DESCRIPTION_KEY, None)
    described = description.get("fields", {}) if isinstance(description, dict) else {}
    fields = _read_zip_json(path, "data")
    report: dict[str, Any] = {}
    needs_trust: list[str] = []
    for name, item in fields.items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            report[name] = {"value": item}
            continue
        entry: dict[str, Any] = {"type": item.get(":type:"), "described": name in described}
        try:
            entry["references"] = referenced_globals(base64.b64decode(str(item[":serialized:"])))
            if name in described:
                decode_described(described[name], name)
            else:
                _decode_field(str(path), name, item)
            entry["safe"] = True
        except (RefusedContent, DescriptionError) as exc:
            entry.update(
                safe=False, refused=str(exc), fallback=_fallback_schedule(str(path), name, item, {}) is not None
            )
        except Exception as exc:
            entry.update(safe=False, refused=f"unreadable ({type(exc).__name__})", fallback=False)
        if not entry["safe"]:
            needs_trust.append(name)
        report[name] = entry
    blocking = [name for name in needs_trust if not report[name]["fallback"]]
    return {
        "path": str(path),
        "members": members,
        "sb3_version": version,
        "metadata": metadata,
        "fields": report,
        "needs_trust": needs_trust,
        "safe_load": not blocking,
        "reason": f"fields {', '.join(blocking)} need unpickling" if blocking else None,
    }


from sbx_lecture.training_state import (  # noqa: E402  (re-exported: part of this module's API)
    load_normalization,
    load_replay_buffer,
    save_normalization,
    save_replay_buffer,
)
