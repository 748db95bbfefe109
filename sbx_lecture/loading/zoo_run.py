"""The zoo's ``enjoy`` and ``record_video`` through ``sbx-lecture zoo``, loading a run's files without running code.

rl_zoo3 loads what a run folder holds by unpickling it (the model's pickled fields, ``vecnormalize.pkl``) and by
YAML's unsafe loader (``config.yml``, ``args.yml``): a run folder from elsewhere could run anything. Through the
bridge, these scripts load as ``sbx-lecture eval`` does:

- the model with :func:`sbx_lecture.loading.load` (plain data and ``weights_only`` tensors);
- normalisation statistics with :func:`sbx_lecture.loading.load_normalization` (a pickle is read by a parser
  that builds arrays and plain containers only), naming the file it used;
- the zoo's YAML files with a loader that builds plain data and the one Python type the zoo writes there
  (``collections.OrderedDict``), and refuses every other Python tag.

``--trusted`` (or ``SBX_LECTURE_ZOO_TRUSTED=1``, which the bridge sets for the scripts it starts itself) gives the
zoo's own loading back, for files whose source the user trusts.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from sbx_lecture.loading.model import UntrustedContentError, load
from sbx_lecture.loading.training_state import load_normalization

TRUSTED_FLAG = "--trusted"
TRUSTED_VARIABLE = "SBX_LECTURE_ZOO_TRUSTED"
#: Scripts that load a trained run.
LOADING_SCRIPTS = ("enjoy", "record_video", "record_training")
_MODULES = ("rl_zoo3", "rl_zoo3.utils", "rl_zoo3.enjoy", "rl_zoo3.record_video")


def pop_trusted(arguments: list[str]) -> tuple[list[str], bool]:
    """The arguments without ``--trusted``, and whether it (or the environment variable) was given."""
    trusted = TRUSTED_FLAG in arguments or os.environ.get(TRUSTED_VARIABLE, "") == "1"
    return [argument for argument in arguments if argument != TRUSTED_FLAG], trusted


@functools.cache
def zoo_file_loader() -> type:
    """A YAML loader for the files rl_zoo3 writes into a run folder (``args.yml``, ``config.yml``): plain data plus the
    two Python types its ``yaml.dump`` writes there, ``OrderedDict`` and ``tuple``; any other Python tag is refused
    with :class:`UntrustedContentError` (naming the file when the loader reads an open file)."""
    import yaml

    class ZooFileLoader(yaml.SafeLoader):
        """Plain YAML plus the ordered dictionaries and tuples the zoo writes; any other Python tag is refused."""

    def ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> OrderedDict[Any, Any]:
        (pairs,) = loader.construct_sequence(node, deep=True)  # type: ignore[arg-type]
        return OrderedDict((key, value) for key, value in pairs)

    def refuse(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        source = Path(str(getattr(loader, "name", "a YAML file")))
        raise UntrustedContentError(source, "a YAML tag of a Python object", f"{node.tag}: code would build it")

    ZooFileLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", ordered_dict)
    ZooFileLoader.add_constructor(
        "tag:yaml.org,2002:python/tuple",
        lambda loader, node: tuple(loader.construct_sequence(node)),  # type: ignore[arg-type]
    )
    ZooFileLoader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    return ZooFileLoader


def _normalization_loader() -> type:
    from stable_baselines3.common.vec_env import VecNormalize

    class SafeVecNormalize(VecNormalize):
        """``VecNormalize.load`` as the zoo calls it, reading the statistics without unpickling them."""

        @staticmethod
        def load(load_path: str, venv: Any) -> VecNormalize:  # type: ignore[override]
            print(f"normalisation statistics: {load_path}", file=sys.stderr)
            return load_normalization(load_path, venv)

    return SafeVecNormalize


@contextlib.contextmanager
def loading_without_unpickling(trusted: bool) -> Iterator[None]:
    """While the block runs, the zoo's scripts load models, statistics and YAML files without running code.

    With ``trusted``, nothing is changed except that scripts the bridge starts itself are trusted too.
    """
    with contextlib.ExitStack() as stack:
        stack.callback(_restore_variable, os.environ.get(TRUSTED_VARIABLE))
        if trusted:
            os.environ[TRUSTED_VARIABLE] = "1"
            yield
            return
        import yaml

        modules = [importlib.import_module(name) for name in _MODULES]
        stack.enter_context(mock.patch.object(yaml, "UnsafeLoader", zoo_file_loader()))
        stack.enter_context(mock.patch("rl_zoo3.utils.VecNormalize", _normalization_loader()))
        for module in modules:
            table = getattr(module, "ALGOS", None)
            if table is not None:  # what ALGOS[algo] gives the zoo's scripts: a ``load`` that unpickles nothing
                safe = {name: SimpleNamespace(load=functools.partial(load, algo=name)) for name in table}
                stack.enter_context(mock.patch.object(module, "ALGOS", safe))
        yield


def _restore_variable(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(TRUSTED_VARIABLE, None)
    else:
        os.environ[TRUSTED_VARIABLE] = previous
