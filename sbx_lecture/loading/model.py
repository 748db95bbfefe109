"""Model zips: one path that reads a zip, decides each field safely and hands the result to SB3's own loader.

:func:`load` (``trusted=False``, the default) is the one path; :class:`SafeLoadMixin` leads our algorithm classes'
``load`` here. It keeps SB3's load contract (a path or a file object, ``custom_objects``, ``policy_kwargs``, the
exception types SB3 raises):

1. **read the zip**: :func:`check_model_file`, the ``sbx_lecture.json`` metadata (:func:`read_model_metadata`), the
   ``data`` member's JSON, and every ``.pth`` member as SB3 reads it (``torch.load(weights_only=True)``), so that a
   member torch refuses is refused here in one line;
2. **decide each field** (:func:`_decide`) that ``custom_objects`` does not replace: a JSON value is kept as it is; a
   pickled one is parsed by the symbolic unpickler and rebuilt from plain data only
   (:mod:`sbx_lecture.loading.pickles`), and only if every global its pickle names is allow-listed; a function or
   schedule that cannot be rebuilt is left out with SB3's ``UserWarning`` naming ``custom_objects`` (SB3 leaves out a
   field it cannot deserialize); anything else is refused with :class:`UntrustedContentError`;
3. **rebuild the model**: its class (the one given, the one the metadata names, or the one registered class whose
   policy fits), refused when another algorithm saved the file, then SB3's ``BaseAlgorithm.load`` with every decided
   field as a ``custom_objects`` entry, so that it unpickles nothing and reads the weights and optimizer states with
   ``torch.load(weights_only=True)``.

``trusted=True`` hands the file to SB3's own ``BaseAlgorithm.load`` as it is, which unpickles.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sbx_lecture.loading.pickles import RefusedContent, allowed_global, class_path, decode, materialize
from sbx_lecture.runs import atomic_write

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

#: The member of a model zip that holds sbx-lecture's metadata (plain JSON).
METADATA_NAME = "sbx_lecture.json"
#: Metadata key of the ``"module:qualname"`` of the saved model's class (see :func:`save`).
CLASS_KEY = "algorithm_class"
#: Metadata key under which older saves of ours described their pickled fields in JSON: only its class is read.
_LEGACY_DESCRIPTION = "safe_load"
_TRUST_HINT = (
    "only if you trust its source, load it with trusted=True (eval and zoo enjoy: --trusted; "
    "train --resume never unpickles: start a new run)"
)
SelfSafeLoad = TypeVar("SelfSafeLoad", bound="SafeLoadMixin")
_SCHEDULE_NAMES = re.compile(r"(^learning_rate$|schedule|^clip_range|^target_kl$)")
#: What :func:`_decide` returns for a field that is left out (SB3's loader then never sees it).
_LEFT_OUT = object()


class ModelFileError(ValueError):
    """A model file that is missing, truncated, corrupted or of an unknown algorithm (a ``ValueError``, as SB3's
    loader raises for a file that is not a model zip)."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model file that does not exist (SB3 raises ``FileNotFoundError``)."""


class ModelFileAssertionError(ModelFileError, AssertionError):
    """A model zip that SB3's loader asserts on (no ``data`` member, a setting SB3 checks with ``assert``)."""


class ModelFileRuntimeError(ModelFileError, RuntimeError):
    """Weights that do not fit the model (SB3's loader raises torch's ``RuntimeError``)."""


#: Our error for each exception type SB3's loader raises (others become a plain ModelFileError).
_LIKE_SB3 = {
    FileNotFoundError: ModelFileNotFoundError,
    AssertionError: ModelFileAssertionError,
    RuntimeError: ModelFileRuntimeError,
}


def _error_like(exc: Exception) -> type[ModelFileError]:
    """The :class:`ModelFileError` to raise for ``exc`` of SB3's loader: one of its type where we have one."""
    return next((ours for theirs, ours in _LIKE_SB3.items() if isinstance(exc, theirs)), ModelFileError)


class UntrustedContentError(ModelFileError):
    """Loading a file would need unpickling (running code named in it): refused unless ``trusted=True``."""

    def __init__(self, path: str | os.PathLike[str], field: str, what: str) -> None:
        what = " ".join(str(what).split())
        super().__init__(f"{path}: {field} needs unpickling ({what}); {_TRUST_HINT}")
        self.path, self.field, self.what = str(path), field, what


class _InMemory(io.BytesIO):
    """A model zip held in memory (read from a file object, or with fields left out), with its name for messages."""

    def __init__(self, content: bytes, name: str) -> None:
        super().__init__(content)
        self.name = name


Source = str | os.PathLike[str] | io.BufferedIOBase


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


def _label(source: Source) -> str:
    """How messages name a model file: its path, or the name of the file object."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "the model file object"))


def _source(path: Source) -> str | os.PathLike[str] | _InMemory:
    """``path`` as the readers below take it: a file object is read from its start into memory (SB3 reads file
    objects too), a path without ``.zip`` is completed as SB3 does."""
    if isinstance(path, io.BufferedIOBase):
        path.seek(0)
        return _InMemory(path.read(), _label(path))
    if not Path(path).exists() and Path(f"{path}.zip").is_file():
        return f"{path}.zip"
    return path


def check_model_file(path: Source) -> None:
    """Raise :class:`ModelFileError` with a readable reason if ``path`` is not an intact SB3 model zip.

    :param path: a path or a file object
    """
    label = _label(path)
    hint = "re-save the model, or use a checkpoint from the run folder's checkpoints/"
    if isinstance(path, (str, os.PathLike)):
        if not Path(path).exists():
            raise ModelFileNotFoundError(f"model file {label} does not exist")
        if not Path(path).is_file():
            raise ModelFileError(f"model file {label} is not a file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file {label} is truncated or corrupted (not a readable zip archive); {hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelFileError(f"model file {label} is truncated or corrupted ({exc}); {hint}") from None
    if broken is not None:
        raise ModelFileError(f"model file {label} is corrupted (member {broken!r} fails its checksum); {hint}")
    if "data" not in names:
        # A truncated model can still look like a zip: the torch archives nested inside it carry their own index.
        raise ModelFileAssertionError(
            f"model file {label} is truncated or corrupted, or is not a Stable-Baselines3 model (no 'data' member); "
            f"{hint}"
        )


def _read_json_member(path: Source, member: str) -> dict[str, Any]:
    """The JSON object in ``member`` of the zip (empty when there is no such member)."""
    with zipfile.ZipFile(path) as archive:
        if member not in archive.namelist():
            return {}
        raw = archive.read(member)
    try:
        content = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"model file {_label(path)}: its {member} is not JSON; re-save the model") from None
    if not isinstance(content, dict):
        raise ModelFileError(f"model file {_label(path)}: its {member} is not a JSON object; re-save the model")
    return content


def read_model_metadata(path: Source) -> dict[str, Any]:
    """The metadata sbx-lecture stored in the model zip (empty for models saved by plain SB3).

    :raises ModelFileError: when that member is not a JSON object with text ``algo``/``env``
    """
    content = _read_json_member(path, METADATA_NAME)
    for key in ("algo", "env"):
        if key in content and not isinstance(content[key], str):
            raise ModelFileError(
                f"model file {_label(path)}: {METADATA_NAME} has a {key!r} that is not text; pass --algo"
            )
    return content


def _refused_tensor_members(path: Source) -> dict[str, str]:
    """Each ``.pth`` member that ``torch.load(weights_only=True)``, as SB3's loader calls it, refuses, with torch's
    reason (the global it will not import)."""
    import torch as th

    refused: dict[str, str] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".pth"):
                continue
            with archive.open(name) as member:
                try:
                    th.load(member, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError as exc:
                    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s+Please|\n|$)", str(exc))
                    refused[name] = f"torch refuses it: {found.group(1) if found else 'not plain tensors'}"
                except Exception as exc:  # SB3's loader would fail on it too
                    raise _error_like(exc)(
                        f"model file {_label(path)}: member {name!r} is corrupted ({type(exc).__name__}); re-save it"
                    ) from None
    return refused


# ----------------------------------------------------------------------------------------------------- 2. deciding


def _unpickled(path: str, name: str, item: dict[str, Any], references: list[str] | None = None) -> Any:
    """A ``:serialized:`` field rebuilt through the symbolic unpickler (raises :class:`RefusedContent`), refused too
    when its pickle names a global outside the allow-list that its value does not hold (a trusted load would still
    import it, and call it if the pickle does).

    :param references: gets the globals the pickle refers to (see :func:`~sbx_lecture.loading.pickles.decode`)
    """
    references = [] if references is None else references
    try:
        tree = decode(base64.b64decode(str(item[":serialized:"]).encode(), validate=True), references)
    except (binascii.Error, pickle.UnpicklingError, EOFError, ValueError):
        raise ModelFileError(
            f"{path}: field {name!r} is corrupted (not a readable pickle); re-save the model"
        ) from None
    value = materialize(tree, name)
    unlisted = [target for target in dict.fromkeys(references) if not allowed_global(target)]
    if unlisted:
        raise RefusedContent(f"{', '.join(unlisted)} outside the allow-list")
    return value


def _is_schedule(name: str, item: dict[str, Any]) -> bool:
    """Whether a pickled field holds a function or a schedule, which is left out when it cannot be rebuilt."""
    kind = str(item.get(":type:", ""))
    return "function" in kind or ("Schedule" in kind and _SCHEDULE_NAMES.search(name) is not None)


def _decide(path: str, name: str, item: Any) -> Any:
    """The value of the saved field ``name``: its JSON, its plain data rebuilt, :data:`_LEFT_OUT`, or a refusal.

    A function or schedule that cannot be rebuilt is left out with SB3's ``UserWarning`` (the model keeps what its
    constructor sets, as with SB3 when a field cannot be deserialized); anything else is refused.
    """
    if not (isinstance(item, dict) and ":serialized:" in item):
        return item
    try:
        return _unpickled(path, name, item)
    except RefusedContent as exc:
        if not _is_schedule(name, item):
            raise UntrustedContentError(path, f"field {name!r} of 'data'", str(exc)) from None
        warnings.warn(
            f"Could not deserialize object {name} without trusted=True ({exc}). Consider using `custom_objects` "
            "argument to replace this object.",
            UserWarning,
        )
    return _LEFT_OUT


# ----------------------------------------------------------------------------------------------------- 3. rebuilding


def _policy_class_of(path: str, fields: dict[str, Any]) -> type | None:
    """The saved policy class where it is safe to rebuild (it tells the algorithm of a zip without metadata)."""
    try:
        cls = _unpickled(path, "policy_class", fields["policy_class"])
    except (KeyError, TypeError, RefusedContent, ModelFileError):
        return None
    return cls if isinstance(cls, type) else None


def _registered_classes() -> dict[type, str]:
    """Every registered algorithm class that imports, with its registry name (a file never names what is imported)."""
    from sbx_lecture.plugins import get_plugin_manager
    from sbx_lecture.registry import RegistryError

    classes: dict[type, str] = {}
    for spec in get_plugin_manager().registry:
        try:
            classes.setdefault(spec.load(), spec.name)
        except (RegistryError, ImportError):
            continue
    return classes


def _saved_class(metadata: dict[str, Any]) -> str | None:
    """The ``"module:qualname"`` of the class that saved the zip, where our metadata records it."""
    legacy = metadata.get(_LEGACY_DESCRIPTION)
    saved = metadata.get(CLASS_KEY) or (legacy.get("algorithm") if isinstance(legacy, dict) else None)
    return saved if isinstance(saved, str) else None


def _choose_class(path: str, metadata: dict[str, Any], algo: str | type | None, policy_class: type | None) -> type:
    from sbx_lecture.plugins import get_plugin_manager
    from sbx_lecture.registry import normalize_name

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
    classes = _registered_classes()
    saved_class = _saved_class(metadata)
    for cls in classes:
        if class_path(cls) == saved_class:
            return cls
    candidates = [cls for cls in classes if policy_class in getattr(cls, "policy_aliases", {}).values()]
    if policy_class is not None and len(candidates) == 1:
        return candidates[0]
    names = ", ".join(sorted(classes[cls] for cls in candidates)) if policy_class else ""
    raise ModelFileError(
        f"cannot tell which algorithm saved {path} (its policy fits {names or 'no registered algorithm'}); "
        "pass algo= (--algo)"
    )


def _check_saved_by(path: str, cls: type, metadata: dict[str, Any], fields: dict[str, Any], policy: Any) -> None:
    """Refuse a zip that another algorithm saved: the class our metadata names, or else (SB3's data names no class)
    constructor arguments of registered algorithms among its fields that an instance of ``cls`` does not store."""
    saved = _saved_class(metadata)
    if saved is not None:
        if saved in {class_path(base) for base in cls.__mro__}:
            return
        saver, detail = saved.rpartition(":")[2], ""
    else:
        try:  # the instance SB3's loader builds first
            stored = set(vars(cls(policy=policy, env=None, device="cpu", _init_setup_model=False)))
        except Exception:  # SB3's loader, building the same instance, reports why in one line
            return
        others = {
            other: set(inspect.signature(other).parameters) for other in _registered_classes() if other is not cls
        }
        arguments = set(fields) & set().union(*others.values())
        foreign = sorted(arguments - stored)
        if not foreign:
            return
        taken = {other.__name__: len(arguments & own) for other, own in others.items()}
        saver = " or ".join(name for name, count in taken.items() if count == max(taken.values()))
        detail = f" (its fields {', '.join(foreign)} are no attributes of {cls.__name__})"
    raise ModelFileError(
        f"{path} was saved by {saver}, not by {cls.__name__}{detail}; "
        "load it with that algorithm's class, or with sbx_lecture.load"
    )


def _without_fields(path: Source, names: list[str]) -> _InMemory:
    """A copy of the zip in memory whose ``data`` lacks ``names``: SB3's loader must not see (and unpickle) them."""
    copy = io.BytesIO()
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(copy, "w") as result:
        for info in original.infolist():
            content = original.read(info)
            if info.filename == "data":
                kept = {name: item for name, item in json.loads(content).items() if name not in names}
                content = json.dumps(kept).encode()
            result.writestr(info, content)
    return _InMemory(copy.getvalue(), _label(path))


def load(
    path: Source,
    env: Any = None,
    *,
    trusted: bool = False,
    device: Any = "auto",
    algo: str | type | None = None,
    custom_objects: dict[str, Any] | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """Load a model zip of any registered algorithm without unpickling anything (see the module docstring).

    :param path: the model zip: a path, or a file object (read from its start) as SB3 takes
    :param env: environment to run it on (its spaces must match); ``None`` to only predict
    :param trusted: use SB3's own loader, which unpickles: only for files from a source you trust
    :param device: torch device
    :param algo: registry name or class, for zips without sbx-lecture metadata; a zip that another algorithm saved
        is refused
    :param custom_objects: values replacing the saved fields of those names, as in SB3: a replaced field is never
        read
    :param kwargs: ``force_reset``, ``print_system_info``, ``policy_kwargs`` (must equal the saved ones, as SB3
        checks) or attributes to set on the model, as SB3's ``load``
    :raises UntrustedContentError: a field or a ``.pth`` member would need unpickling
    :raises ModelFileError: missing, corrupted or unreadable file, an unknown algorithm or another algorithm's file
        (a ``ValueError``, and a ``FileNotFoundError``, ``AssertionError`` or ``RuntimeError`` where SB3 raises one)
    """
    if trusted and isinstance(algo, type):  # Class.load(..., trusted=True): SB3's own loader, as with plain SB3
        return _sb3_load(algo, path, env, device, custom_objects, kwargs)
    source = _source(path)
    label = _label(source)
    check_model_file(source)
    metadata = read_model_metadata(source)
    fields = _read_json_member(source, "data")
    given = custom_objects or {}
    if trusted:
        objects, policy_class = dict(given), _policy_class_of(label, fields)
    else:  # every field decided here: SB3's loader then takes them all from custom_objects and unpickles nothing
        for member, reason in _refused_tensor_members(source).items():
            raise UntrustedContentError(label, f"member {member!r}", reason)
        decided = {name: _decide(label, name, item) for name, item in fields.items() if name not in given}
        left_out = [name for name, value in decided.items() if value is _LEFT_OUT]
        objects = {**{name: value for name, value in decided.items() if value is not _LEFT_OUT}, **given}
        source = _without_fields(source, left_out) if left_out else source
        policy_class = objects.get("policy_class")
    cls = _choose_class(label, metadata, algo, policy_class if isinstance(policy_class, type) else None)
    _check_saved_by(label, cls, metadata, fields, policy_class)
    return _wrap(label, cls, lambda: _sb3_load(cls, source, env, device, objects, kwargs))


class SafeLoadMixin:
    """Makes ``cls.load`` read model zips through :func:`load` (nothing unpickled): the one ``load`` our classes and
    plugins' classes override.

    Put it first among the bases: ``class TNPG(SafeLoadMixin, ClampedProgressMixin, OnPolicyAlgorithm)``.
    ``trusted=True`` uses Stable-Baselines3's own ``load``, which unpickles the file's pickled fields.
    """

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfSafeLoad],
        path: str | os.PathLike[str] | io.BufferedIOBase,
        env: Any = None,
        device: Any = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        trusted: bool = False,
        **kwargs: Any,
    ) -> SelfSafeLoad:
        """Load a model of this class from ``path`` (see :func:`load`).

        :param trusted: unpickle with Stable-Baselines3's ``load``: only for files from a source you trust
        """
        return load(  # type: ignore[return-value]
            path,
            env,
            trusted=trusted,
            device=device,
            algo=cls,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )


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
        raise _error_like(exc)(f"cannot load {path} as {cls.__name__}: {message}") from exc


# ----------------------------------------------------------------------------------------------------- inspecting


def inspect_model_file(path: Source) -> dict[str, Any]:
    """What a model zip holds and what would need trust, without running anything from it.

    Each pickled field and each ``.pth`` member goes through the same decision as in :func:`load`.

    :return: plain JSON: ``members`` (name, size, and ``refused`` for a ``.pth`` member torch refuses),
        ``metadata``, ``sb3_version``, ``fields`` (name → ``{"value": ...}`` for JSON fields, ``{"type",
        "references", "safe"}`` for pickled ones, ``references`` being every global a trusted load would import, with
        ``refused`` and ``left_out`` when not safe), ``needs_trust`` (field and member names), ``safe_load``
        (whether :func:`load` can rebuild it) and ``reason`` (what needs trust, and what :func:`load` does without it)
    """
    source = _source(path)
    check_model_file(source)
    refused_members = _refused_tensor_members(source)
    with zipfile.ZipFile(source) as archive:
        members = [{"name": info.filename, "size": info.file_size} for info in archive.infolist()]
        version = (
            archive.read("_stable_baselines3_version").decode()
            if "_stable_baselines3_version" in [m["name"] for m in members]
            else None
        )
    for member in members:
        if member["name"] in refused_members:
            member["refused"] = refused_members[member["name"]]
    metadata = _read_json_member(source, METADATA_NAME)
    metadata.pop(_LEGACY_DESCRIPTION, None)
    report: dict[str, Any] = {}
    for name, item in _read_json_member(source, "data").items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            report[name] = {"value": item}
            continue
        references: list[str] = []
        entry: dict[str, Any] = {"type": item.get(":type:")}
        try:
            _unpickled(_label(source), name, item, references)
            entry["safe"] = True
        except RefusedContent as exc:
            entry.update(safe=False, refused=str(exc), left_out=_is_schedule(name, item))
        except Exception as exc:  # a report, whatever the file holds
            entry.update(safe=False, refused=f"unreadable ({type(exc).__name__})", left_out=False)
        report[name] = {**entry, "references": list(dict.fromkeys(references))}
    needs_trust = [name for name, entry in report.items() if entry.get("safe") is False] + list(refused_members)
    blocking = [name for name in needs_trust if not report.get(name, {}).get("left_out")]
    outcome = "load refuses the file without it" if blocking else "without it load leaves them out with a warning"
    return {
        "path": _label(source),
        "members": members,
        "sb3_version": version,
        "metadata": metadata,
        "fields": report,
        "needs_trust": needs_trust,
        "safe_load": not blocking,
        "reason": f"{', '.join(needs_trust)} need unpickling; {outcome}" if needs_trust else None,
    }
