"""Model zips: one path that reads a zip, decides each field safely and hands the result to SB3's own loader.

:func:`load` is the one path, whoever calls it: ``sbx_lecture.load``, the run engine, the zoo bridge, and the
``load`` of our algorithm classes (:class:`SafeLoadMixin` only forwards to it). It keeps SB3's load contract (a path
or a file object, ``custom_objects``, ``policy_kwargs``, the exception types SB3 raises):

1. **read the zip** once (:func:`check_model_file`), then (:func:`_examine`) the
   ``sbx_lecture.json`` metadata (:func:`read_model_metadata`), the ``data`` member's JSON, and every ``.pth`` member
   as SB3 reads it (``torch.load(weights_only=True)``), so that a member torch refuses is named in one line;
2. **decide each pickled field** (:func:`_decide`) that ``custom_objects`` does not replace: it is parsed by the
   symbolic unpickler and rebuilt from plain data only (:mod:`sbx_lecture.loading.pickles`), and only if every global
   its pickle names is allow-listed; without trust, a function or schedule that cannot be rebuilt is left out with
   SB3's ``UserWarning`` naming ``custom_objects`` (SB3 leaves out a field it cannot deserialize) and anything else is
   refused with :class:`UntrustedContentError`;
3. **rebuild the model**: its class (the one given, the one the metadata names, or the one registered class whose
   policy fits), refused when another algorithm saved the file, then SB3's ``BaseAlgorithm.load`` with every decided
   field as a ``custom_objects`` entry, so that it unpickles nothing and reads the weights and optimizer states with
   ``torch.load(weights_only=True)``.

``trusted=True`` takes the same path but leaves the fields to SB3's ``BaseAlgorithm.load``, which unpickles them.
:func:`inspect_model_file` reports steps 1 and 2 field by field.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sbx_lecture.infra.files import atomic_write, json_record
from sbx_lecture.infra.validation import one_line
from sbx_lecture.loading import pickles

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

#: The member of a model zip that holds sbx-lecture's metadata (plain JSON).
METADATA_NAME = "sbx_lecture.json"
#: Metadata key of the ``"module:qualname"`` of the saved model's class (see :func:`save`).
CLASS_KEY = "algorithm_class"
#: Metadata key under which older saves of ours described their pickled fields in JSON: never read.
_LEGACY_DESCRIPTION = "safe_load"
_TRUST_HINT = (
    "only if you trust its source, load it with trusted=True (eval and zoo enjoy: --trusted; "
    "train --resume never unpickles: start a new run)"
)
#: Pickled fields holding a schedule, which (as a function field) is left out when it cannot be rebuilt.
_SCHEDULE_NAMES = re.compile(r"(^learning_rate$|schedule|^clip_range|^target_kl$)")
SelfSafeLoad = TypeVar("SelfSafeLoad", bound="SafeLoadMixin")
Source = str | os.PathLike[str] | io.BufferedIOBase


#: Saved schedules that ``_setup_model`` rebuilds on every load from the field named beside them (SB3's
#: ``_setup_lr_schedule``, DPG's critic schedule): one that needs trust is left out without a warning of its own, so
#: that ``custom_objects=dict(learning_rate=...)`` loads without a warning, as in SB3.
REBUILT_BY_SETUP = {"lr_schedule": "learning_rate", "critic_lr_schedule": "critic_learning_rate"}


class ModelFileError(ValueError):
    """A model file that is missing, truncated, corrupted or of an unknown algorithm (a ``ValueError``, as SB3's
    loader raises for a file that is not a model zip)."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """A model file that does not exist (SB3 raises ``FileNotFoundError``)."""


class ModelFileAssertionError(ModelFileError, AssertionError):
    """A model zip that SB3's loader asserts on (no ``data`` member, a setting SB3 checks with ``assert``)."""


class ModelFileRuntimeError(ModelFileError, RuntimeError):
    """Weights that do not fit the model (SB3's loader raises torch's ``RuntimeError``)."""


def _error_like(exc: Exception) -> type[ModelFileError]:
    """The :class:`ModelFileError` to raise for ``exc`` of SB3's loader: one of its type where we have one (others
    become a plain ModelFileError)."""
    for ours in (ModelFileNotFoundError, ModelFileAssertionError, ModelFileRuntimeError):
        if isinstance(exc, ours.__bases__[1]):  # the type of SB3's error it stands for
            return ours
    return ModelFileError


class UntrustedContentError(ModelFileError):
    """Loading a file would need unpickling (running code named in it): refused unless ``trusted=True``."""

    def __init__(self, path: str | os.PathLike[str], field: str, what: str) -> None:
        what = " ".join(str(what).split())
        super().__init__(f"{path}: {field} needs unpickling ({what}); {_TRUST_HINT}")
        self.path, self.field, self.what = str(path), field, what


def save(model: BaseAlgorithm, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
    """Save ``model`` atomically as an SB3 zip plus ``sbx_lecture.json`` (``metadata`` and the model's class).

    The zip still loads with plain SB3's ``cls.load``.
    """
    text = json.dumps({**(metadata or {}), CLASS_KEY: pickles.class_path(type(model))}, indent=2)

    def write(temporary: str) -> None:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_NAME, text)

    atomic_write(path, write, suffix=".zip")


# ----------------------------------------------------------------------------------------------------- 1. reading


def check_model_file(path: Source) -> tuple[str, dict[str, bytes]]:
    """Raise :class:`ModelFileError` with a readable reason if ``path`` is not an intact SB3 model zip, else read it
    once.

    :param path: a path (completed with ``.zip`` as SB3 does) or a file object
    :return: its name in messages, and every member's content (which ``zipfile`` checks against its checksum)
    """
    label = str(getattr(path, "name", "the model file object"))  # how messages name a file object
    if isinstance(path, (str, os.PathLike)):
        if not Path(path).exists() and Path(f"{path}.zip").is_file():
            path = f"{path}.zip"  # as SB3 completes it
        label = str(path)
        if Path(path).exists() and not Path(path).is_file():
            raise ModelFileError(f"model file {label} is not a file")
    hint = "re-save the model, or use a checkpoint from the run folder's checkpoints/"
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
    except FileNotFoundError:
        raise ModelFileNotFoundError(f"model file {label} does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelFileError(
            f"model file {label} is truncated or corrupted (not a readable zip archive: {one_line(exc)}); {hint}"
        ) from None
    if "data" not in members:
        # A truncated model can still look like a zip: the torch archives nested inside it carry their own index.
        raise ModelFileAssertionError(
            f"model file {label} is truncated or corrupted, or is not a Stable-Baselines3 model (no 'data' member); "
            f"{hint}"
        )
    return label, members


def _metadata(label: str, members: dict[str, bytes]) -> dict[str, Any]:
    """The JSON object of the ``sbx_lecture.json`` member (empty when there is none)."""
    where = f"model file {label}: its {METADATA_NAME}"
    return json_record(
        members.get(METADATA_NAME, b"{}"), where, "re-save the model, or pass --algo", ModelFileError, ("algo", "env")
    )


def read_model_metadata(path: Source) -> dict[str, Any]:
    """The metadata sbx-lecture stored in the model zip (empty for models saved by plain SB3).

    :raises ModelFileError: when that member is not a JSON object with text ``algo``/``env``
    """
    return _metadata(*check_model_file(path))


def _member(name: str, content: bytes, label: str) -> dict[str, Any]:
    """The member ``name`` as :func:`inspect_model_file` reports it: its size, and for a ``.pth`` member that
    ``torch.load(weights_only=True)`` refuses, as SB3's loader calls it, why (the globals it will not import)."""
    import torch as th

    entry: dict[str, Any] = {"name": name, "size": len(content)}
    if name.endswith(".pth"):
        try:
            with warnings.catch_warnings():  # torch warns of a pickle protocol it does not expect: it refuses below
                warnings.simplefilter("ignore", UserWarning)
                th.load(io.BytesIO(content), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # torch's own list of the globals it will not import
            try:
                unsafe = th.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(content))
            except ValueError:  # not torch's zip format (a bare pickle, a legacy file, garbage): torch lists nothing
                unsafe = ["not a torch checkpoint"]
            entry["refused"] = f"torch refuses it: {', '.join(unsafe) or 'not plain tensors'}"
        except Exception as exc:  # SB3's loader would fail on it too
            raise _error_like(exc)(
                f"model file {label}: member {name!r} is corrupted ({type(exc).__name__}); re-save it"
            ) from None
    return entry


# ----------------------------------------------------------------------------------------------------- 2. deciding


def _decide(name: str, item: Any) -> dict[str, Any]:
    """How the saved field ``name`` loads without trust, as :func:`inspect_model_file` reports it.

    A JSON value is ``{"value": item}``. A pickled one gets its ``type``, ``references`` (every global a trusted load
    would import), ``safe`` and, when safe, ``rebuilt`` (its value from plain data); when not, ``refused`` (why) and
    ``left_out`` (a function or schedule, which :func:`load` leaves out with SB3's warning instead of refusing the
    file), or ``corrupted`` for a pickle that cannot be read at all.
    """
    if not (isinstance(item, dict) and ":serialized:" in item):
        return {"value": item}
    references: list[str] = []
    entry: dict[str, Any] = {"type": item.get(":type:"), "safe": False, "left_out": False}
    try:
        tree = pickles.decode(base64.b64decode(str(item[":serialized:"]).encode(), validate=True), references)
        value = pickles.materialize(tree, name)
        unlisted = [target for target in dict.fromkeys(references) if not pickles.allowed_global(target)]
        if unlisted:  # named but not held: a trusted load would still import it, and call it if the pickle does
            raise pickles.RefusedContent(f"{', '.join(unlisted)} outside the allow-list")
        entry.update(safe=True, rebuilt=value)
    except (binascii.Error, pickle.UnpicklingError, EOFError, ValueError):
        entry.update(refused="unreadable: not a readable pickle", corrupted=True)
    except pickles.RefusedContent as exc:
        kind = str(item.get(":type:", ""))
        schedule = "Schedule" in kind and _SCHEDULE_NAMES.search(name) is not None
        entry.update(refused=str(exc), left_out="function" in kind or schedule)
    entry["references"] = list(dict.fromkeys(references))
    return entry


def _examine(path: Source, replaced: Any = ()) -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]:
    """Steps 1 and 2, for :func:`load` and :func:`inspect_model_file` alike: read the zip once and decide every field
    not in ``replaced`` and every ``.pth`` member.

    :return: the report of :func:`inspect_model_file` (with each safe field's ``rebuilt`` value, and ``blocking``:
        what :func:`load` refuses without trust and why, ``.pth`` members first), the members and the fields' JSON
    """
    label, members = check_model_file(path)
    entries = [_member(name, content, label) for name, content in members.items()]
    data = json_record(members["data"], f"model file {label}: its data", "re-save the model", ModelFileError)
    fields = {name: _decide(name, item) for name, item in data.items() if name not in replaced}
    needs_trust = [name for name, entry in fields.items() if entry.get("safe") is False]
    needs_trust += [member["name"] for member in entries if "refused" in member]
    blocking = [(f"member {m['name']!r}", m["refused"]) for m in entries if "refused" in m]
    blocking += [
        (f"field {n!r} of 'data'", e["refused"]) for n, e in fields.items() if "refused" in e and not e["left_out"]
    ]
    outcome = "load refuses the file without it" if blocking else "without it load leaves them out with a warning"
    report = {
        "path": label,
        "members": entries,
        "sb3_version": members.get("_stable_baselines3_version", b"").decode() or None,
        "metadata": _metadata(label, members),
        "fields": fields,
        "needs_trust": needs_trust,
        "safe_load": not blocking,
        "reason": f"{', '.join(needs_trust)} need unpickling; {outcome}" if needs_trust else None,
        "blocking": blocking,
    }
    return report, members, data


# ----------------------------------------------------------------------------------------------------- 3. rebuilding


def _choose_class(label: str, metadata: dict[str, Any], algo: str | type | None, policy: Any) -> type:
    """The class to load with: ``algo`` (a class or a registry name), else the algorithm or class our metadata names,
    else the one registered class whose policy is the saved one."""
    from sbx_lecture.plugins import get_plugin_manager

    if isinstance(algo, type):
        return algo
    registry = get_plugin_manager().registry
    if algo is not None:
        return registry.get(algo)
    saved = metadata.get("algo")  # text, as _metadata checks
    if saved:
        if saved not in registry:
            raise ModelFileError(f"{label} holds a {saved!r} model, which is not registered; install the plugin for it")
        return registry.get(saved)
    classes = pickles.registered_classes()
    ours = [cls for cls in classes if pickles.class_path(cls) == metadata.get(CLASS_KEY)]
    candidates = ours or [cls for cls in classes if policy in cls.policy_aliases.values()]
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(sorted(classes[cls] for cls in candidates)) or "no registered algorithm"
    raise ModelFileError(f"cannot tell which algorithm saved {label} (its policy fits {names}); pass algo= (--algo)")


def _check_saved_by(label: str, cls: type, metadata: dict[str, Any], fields: dict[str, Any], policy: Any) -> None:
    """Refuse a zip that another algorithm saved: the class our metadata names, or else (SB3's data names no class)
    constructor arguments of registered algorithms among its fields that an instance of ``cls`` does not store."""
    saved = metadata.get(CLASS_KEY)
    if isinstance(saved, str):
        if saved in {pickles.class_path(base) for base in cls.__mro__}:
            return
        saver, detail = saved.rpartition(":")[2], ""
    else:
        try:  # the instance SB3's loader builds first
            stored = set(vars(cls(policy=policy, env=None, device="cpu", _init_setup_model=False)))
        except Exception:  # SB3's loader, building the same instance, reports why in one line
            return
        classes = pickles.registered_classes()
        others = {other: set(inspect.signature(other).parameters) for other in classes if other is not cls}
        arguments = set(fields) & set().union(*others.values())
        foreign = sorted(arguments - stored)
        if not foreign:
            return
        taken = {other.__name__: len(arguments & own) for other, own in others.items()}
        saver = " or ".join(name for name, count in taken.items() if count == max(taken.values()))
        detail = f" (its fields {', '.join(foreign)} are no attributes of {cls.__name__})"
    raise ModelFileError(
        f"{label} was saved by {saver}, not by {cls.__name__}{detail}; "
        "load it with that algorithm's class, or with sbx_lecture.load"
    )


def _zip(members: dict[str, bytes], data: dict[str, Any]) -> io.BytesIO:
    """The zip for SB3's loader, in memory: ``members`` with ``data`` as the member of that name, so that SB3's loader
    never sees (and unpickles) a field left out of it."""
    copy = io.BytesIO()
    with zipfile.ZipFile(copy, "w") as result:
        for name, content in {**members, "data": json.dumps(data).encode()}.items():
            result.writestr(name, content)
    return copy


def load(
    path: Source,
    env: Any = None,
    device: Any = "auto",
    custom_objects: dict[str, Any] | None = None,
    print_system_info: bool = False,
    force_reset: bool = True,
    *,
    trusted: bool = False,
    algo: str | type | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """Load a model zip of any registered algorithm without unpickling anything (see the module docstring).

    The arguments up to ``force_reset`` are SB3's ``load``'s.

    :param path: the model zip: a path, or a file object as SB3 takes
    :param env: environment to run it on (its spaces must match); ``None`` to only predict
    :param device: torch device
    :param custom_objects: values replacing the saved fields of those names, as in SB3: a replaced field is never
        read
    :param print_system_info: print the system the model was saved on, as SB3 does
    :param force_reset: reset the environment before the next ``learn``, as SB3 does
    :param trusted: leave the fields to SB3's own loader, which unpickles: only for files from a source you trust
    :param algo: registry name or class, for zips without sbx-lecture metadata; a zip that another algorithm saved
        is refused
    :param kwargs: ``policy_kwargs`` (must equal the saved ones, as SB3 checks) or attributes to set on the model, as
        SB3's ``load``
    :raises UntrustedContentError: a field or a ``.pth`` member would need unpickling
    :raises ModelFileError: missing, corrupted or unreadable file, an unknown algorithm or another algorithm's file
        (a ``ValueError``, and a ``FileNotFoundError``, ``AssertionError`` or ``RuntimeError`` where SB3 raises one)
    """
    from stable_baselines3.common.base_class import BaseAlgorithm

    objects = dict(custom_objects or {})
    report, members, fields = _examine(path, objects)
    label, decided = report["path"], report["fields"]
    for name, entry in decided.items():
        if entry.get("corrupted"):
            raise ModelFileError(f"{label}: field {name!r} is corrupted (not a readable pickle); re-save the model")
    if report["blocking"] and not trusted:
        raise UntrustedContentError(label, *report["blocking"][0])
    left_out = [] if trusted else [name for name, entry in decided.items() if entry.get("left_out")]
    for name in left_out:
        if name not in REBUILT_BY_SETUP:  # the field it is rebuilt from has its own warning, if it needs one
            warnings.warn(  # SB3's UserWarning
                f"Could not deserialize object {name} without trusted=True ({decided[name]['refused']}). Consider "
                "using `custom_objects` argument to replace this object."
            )
    if not trusted:
        objects.update({name: entry["rebuilt"] for name, entry in decided.items() if entry.get("safe")})
    policy = objects.get("policy_class", decided.get("policy_class", {}).get("rebuilt"))
    cls = _choose_class(label, report["metadata"], algo, policy)
    _check_saved_by(label, cls, report["metadata"], fields, policy)
    source = _zip(members, {name: item for name, item in fields.items() if name not in left_out})
    sb3_load = vars(BaseAlgorithm)["load"].__func__  # SB3's own, past the safe ``load`` of our classes
    try:
        return sb3_load(cls, source, env, device, objects, print_system_info, force_reset, **kwargs)
    except Exception as exc:
        raise _error_like(exc)(f"cannot load {label} as {cls.__name__}: {one_line(exc)}") from exc


class SafeLoadMixin:
    """Makes ``cls.load`` the safe :func:`load` of this class (nothing unpickled without ``trusted=True``): put it
    first among the bases, ``class TNPG(SafeLoadMixin, ClampedProgressMixin, OnPolicyAlgorithm)``."""

    @classmethod
    def load(cls: type[SelfSafeLoad], path: Source, *args: Any, **kwargs: Any) -> SelfSafeLoad:  # type: ignore[override]
        """:func:`load` for this class, with SB3's arguments and ``trusted``."""
        return load(path, *args, algo=cls, **kwargs)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------- inspecting


def inspect_model_file(path: Source) -> dict[str, Any]:
    """What a model zip holds and what would need trust, without running anything from it.

    Each pickled field and each ``.pth`` member goes through the same decision as in :func:`load`.

    :return: plain JSON: ``members`` (name, size, and ``refused`` for a ``.pth`` member torch refuses),
        ``metadata``, ``sb3_version``, ``fields`` (name → :func:`_decide`'s report, without the rebuilt value),
        ``needs_trust`` (field and member names), ``safe_load`` (whether :func:`load` can rebuild it) and ``reason``
        (what needs trust, and what :func:`load` does without it)
    """
    report = _examine(path)[0]
    del report["blocking"]  # the reason says it
    report["metadata"].pop(_LEGACY_DESCRIPTION, None)
    for entry in report["fields"].values():
        entry.pop("rebuilt", None)
    return report
