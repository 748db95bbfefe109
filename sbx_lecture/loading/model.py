"""Model zips: one path that reads a zip, decides each field safely and rebuilds the model as SB3 does.

:func:`load` (``trusted=False``, the default) is the one path; :class:`~sbx_lecture.loading.base.SafeLoadMixin`
leads our algorithm classes' ``load`` here:

1. **read the zip**: :func:`check_model_file`, the ``sbx_lecture.json`` metadata (:func:`read_model_metadata`), the
   ``data`` member's JSON, and the weights and optimizer states through SB3's ``load_from_zip_file`` without its
   ``data`` (``torch.load(weights_only=True)``);
2. **decide each field** (:func:`_decide`): a JSON value is kept as it is; a pickled one is parsed by the symbolic
   unpickler and rebuilt from plain data only (:mod:`sbx_lecture.loading.pickles`); a schedule that cannot be rebuilt
   is replaced (:func:`_fallback_schedule`); anything else is refused with :class:`UntrustedContentError`;
3. **rebuild the model**: its class (the one given, the one the metadata names, or the one registered class whose
   policy fits), then what SB3's ``BaseAlgorithm.load`` does once it has the data (:func:`_build`).

``trusted=True`` hands the file to SB3's own ``BaseAlgorithm.load``, which unpickles.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbx_lecture.loading.pickles import RefusedContent, class_path, decode, materialize, referenced_globals
from sbx_lecture.runs import atomic_write

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

#: The member of a model zip that holds sbx-lecture's metadata (plain JSON).
METADATA_NAME = "sbx_lecture.json"
#: Metadata key of the ``"module:qualname"`` of the saved model's class (see :func:`save`).
CLASS_KEY = "algorithm_class"
#: Metadata key under which older saves of ours described their pickled fields in JSON: only its class is read.
_LEGACY_DESCRIPTION = "safe_load"
_TRUST_HINT = "pass trusted=True (--trusted) only if you trust its source"
_SCHEDULE_NAMES = re.compile(r"(^learning_rate$|schedule|^clip_range|^target_kl$)")


class ModelFileError(Exception):
    """A model file that is missing, truncated, corrupted or of an unknown algorithm."""


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


def save(model: BaseAlgorithm, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
    """Save ``model`` atomically as an SB3 zip plus ``sbx_lecture.json`` (``metadata`` and the model's class).

    The zip still loads with plain SB3's ``cls.load``.
    """
    text = json.dumps({**(metadata or {}), CLASS_KEY: class_path(type(model))}, indent=2)

    def write(temporary: str) -> None:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_NAME, text)

    atomic_write(path, write, suffix=".zip")


# ----------------------------------------------------------------------------------------------------- 1. reading


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
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelFileError(f"model file {path} is truncated or corrupted ({exc}); {hint}") from None
    if broken is not None:
        raise ModelFileError(f"model file {path} is corrupted (member {broken!r} fails its checksum); {hint}")
    if "data" not in names:
        # A truncated model can still look like a zip: the torch archives nested inside it carry their own index.
        raise ModelFileError(
            f"model file {path} is truncated or corrupted, or is not a Stable-Baselines3 model (no 'data' member); "
            f"{hint}"
        )


def _read_json_member(path: str | os.PathLike[str], member: str) -> dict[str, Any]:
    """The JSON object in ``member`` of the zip (empty when there is no such member)."""
    with zipfile.ZipFile(path) as archive:
        if member not in archive.namelist():
            return {}
        raw = archive.read(member)
    try:
        content = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"model file {path}: its {member} is not JSON; re-save the model") from None
    if not isinstance(content, dict):
        raise ModelFileError(f"model file {path}: its {member} is not a JSON object; re-save the model")
    return content


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata sbx-lecture stored in the model zip (empty for models saved by plain SB3).

    :raises ModelFileError: when that member is not a JSON object with text ``algo``/``env``
    """
    content = _read_json_member(path, METADATA_NAME)
    for key in ("algo", "env"):
        if key in content and not isinstance(content[key], str):
            raise ModelFileError(f"model file {path}: {METADATA_NAME} has a {key!r} that is not text; pass --algo")
    return content


# ----------------------------------------------------------------------------------------------------- 2. deciding


def _unpickled(path: str, name: str, item: dict[str, Any]) -> Any:
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
    """A replacement for a schedule field that could not be rebuilt, ``None`` for a field that is no schedule.

    ``learning_rate`` / ``lr_schedule`` become constant at the learning rate stored in the saved optimizer state; any
    other schedule becomes an :class:`UnavailableSchedule`, which raises when training calls it (prediction never
    does).
    """
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule

    kind = str(item.get(":type:", ""))
    if not re.search(r"function|Schedule", kind) or not (_SCHEDULE_NAMES.search(name) or "function" in kind):
        return None
    learning_rate = _saved_learning_rate(params)
    if name == "learning_rate" and learning_rate is not None:
        return learning_rate
    if name == "lr_schedule" and learning_rate is not None:
        return FloatSchedule(ConstantSchedule(learning_rate))
    return UnavailableSchedule(path, name)


def _decide(path: str, name: str, item: Any, params: dict[str, Any]) -> Any:
    """The value of the saved field ``name``: its JSON, its plain data rebuilt, a fallback schedule, or a refusal."""
    if not (isinstance(item, dict) and ":serialized:" in item):
        return item
    try:
        return _unpickled(path, name, item)
    except RefusedContent as exc:
        replacement = _fallback_schedule(path, name, item, params)
        if replacement is None:
            raise UntrustedContentError(path, f"field {name!r} of 'data'", str(exc)) from None
        return replacement


# ----------------------------------------------------------------------------------------------------- 3. rebuilding


def _policy_class_of(path: str, fields: dict[str, Any]) -> type | None:
    """The saved policy class where it is safe to rebuild (it tells the algorithm of a zip without metadata)."""
    try:
        cls = _decide(path, "policy_class", fields.get("policy_class"), {})
    except ModelFileError:
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
    legacy = metadata.get(_LEGACY_DESCRIPTION)
    saved_class = metadata.get(CLASS_KEY) or (legacy.get("algorithm") if isinstance(legacy, dict) else None)
    candidates: dict[type, str] = {}
    for spec in registry:  # only registered classes are considered: a file never names what gets imported
        try:
            cls = spec.load()
        except (RegistryError, ImportError):
            continue
        if saved_class is not None and class_path(cls) == saved_class:
            return cls
        if policy_class is not None and policy_class in getattr(cls, "policy_aliases", {}).values():
            candidates.setdefault(cls, spec.name)
    if len(candidates) == 1:
        return next(iter(candidates))
    names = ", ".join(sorted(candidates.values())) or "no registered algorithm"
    raise ModelFileError(f"cannot tell which algorithm saved {path} (its policy fits {names}); pass algo= (--algo)")


def load(
    path: str | os.PathLike[str] | io.BufferedIOBase,
    env: Any = None,
    *,
    trusted: bool = False,
    device: Any = "auto",
    algo: str | type | None = None,
    custom_objects: dict[str, Any] | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """Load a model zip of any registered algorithm without unpickling anything (see the module docstring).

    :param path: the model zip (a file object only with ``trusted=True`` and the class as ``algo``)
    :param env: environment to run it on (its spaces must match); ``None`` to only predict
    :param trusted: use SB3's own loader, which unpickles: only for files from a source you trust
    :param device: torch device
    :param algo: registry name or class, for zips without sbx-lecture metadata
    :param custom_objects: values replacing the saved fields of those names, as in SB3
    :param kwargs: ``force_reset``, ``print_system_info``, or attributes to set on the model, as SB3's ``load``
    :raises UntrustedContentError: a field would need unpickling
    :raises ModelFileError: missing, corrupted or unreadable file, or an unknown algorithm
    """
    if trusted and isinstance(algo, type):  # Class.load(..., trusted=True): SB3's own loader, as with plain SB3
        return _sb3_load(algo, path, env, device, custom_objects, kwargs)
    if isinstance(path, io.BufferedIOBase):
        caller = f"{algo.__name__}.load" if isinstance(algo, type) else "load"
        raise TypeError(f"{caller} reads a file path; a file object needs trusted=True")
    if not Path(path).exists() and Path(f"{path}.zip").is_file():  # SB3 appends .zip to a path without it
        path = f"{path}.zip"
    path_text = str(path)
    check_model_file(path)
    metadata = read_model_metadata(path)
    fields = _read_json_member(path, "data")
    if trusted:
        cls = _choose_class(path_text, metadata, algo, _policy_class_of(path_text, fields))
        return _wrap(path_text, cls, lambda: _sb3_load(cls, path, env, device, custom_objects, kwargs))
    from stable_baselines3.common.save_util import load_from_zip_file

    print_info = bool(kwargs.pop("print_system_info", False))
    if print_info:
        from stable_baselines3.common.utils import get_system_info

        print("== CURRENT SYSTEM INFO ==")
        get_system_info()
    _, params, pytorch_variables = load_from_zip_file(
        path_text, load_data=False, device=device, print_system_info=print_info
    )
    data = {
        name: custom_objects[name]
        if custom_objects and name in custom_objects
        else _decide(path_text, name, item, params)
        for name, item in fields.items()
    }
    policy_class = data.get("policy_class")
    cls = _choose_class(path_text, metadata, algo, policy_class if isinstance(policy_class, type) else None)
    return _wrap(path_text, cls, lambda: _build(cls, data, params, pytorch_variables, env, device, kwargs))


def _sb3_load(
    cls: type, path: Any, env: Any, device: Any, custom_objects: dict[str, Any] | None, kwargs: dict[str, Any]
) -> BaseAlgorithm:
    """SB3's own ``BaseAlgorithm.load`` for ``cls`` (it unpickles), past the safe ``load`` of our classes."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    sb3_load = vars(BaseAlgorithm)["load"].__func__
    return sb3_load(cls, path, env, device, custom_objects, **kwargs)  # type: ignore[no-any-return]


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

    Each pickled field goes through the same decision as in :func:`load`.

    :return: plain JSON: ``members`` (name, size), ``metadata``, ``sb3_version``, ``fields`` (name →
        ``{"value": ...}`` for JSON fields, ``{"type", "references", "safe"}`` for pickled ones, with ``refused``
        and ``fallback`` when not safe), ``needs_trust`` (field names), ``safe_load`` (whether :func:`load` can
        rebuild it) and ``reason`` (why not)
    """
    check_model_file(path)
    with zipfile.ZipFile(path) as archive:
        members = [{"name": info.filename, "size": info.file_size} for info in archive.infolist()]
        version = (
            archive.read("_stable_baselines3_version").decode()
            if "_stable_baselines3_version" in [m["name"] for m in members]
            else None
        )
    metadata = _read_json_member(path, METADATA_NAME)
    metadata.pop(_LEGACY_DESCRIPTION, None)
    report: dict[str, Any] = {}
    needs_trust: list[str] = []
    for name, item in _read_json_member(path, "data").items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            report[name] = {"value": item}
            continue
        entry: dict[str, Any] = {"type": item.get(":type:")}
        try:
            entry["references"] = referenced_globals(base64.b64decode(str(item[":serialized:"])))
            _unpickled(str(path), name, item)
            entry["safe"] = True
        except RefusedContent as exc:
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
