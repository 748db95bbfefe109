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
from types import SimpleNamespace
from typing import Any
from unittest import mock

from sbx_lecture.loading.model import UntrustedContentError, load
from sbx_lecture.loading.training_state import load_normalization

#: Flag of the scripts that load a run, through ``sbx-lecture zoo`` (not of rl_zoo3): rl_zoo3's own loading.
TRUSTED_FLAG = "--trusted"
TRUSTED_VARIABLE = "SBX_LECTURE_ZOO_TRUSTED"
#: Scripts that load a trained run.
LOADING_SCRIPTS = ("enjoy", "record_video", "record_training")
#: The zoo's modules whose ``ALGOS`` its loading scripts read (``from rl_zoo3 import ALGOS``, ``rl_zoo3.utils``).
_MODULES = ("rl_zoo3", "rl_zoo3.utils")


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
        return OrderedDict(pairs)  # [key, value] pairs

    def refuse(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        source = str(getattr(loader, "name", "a YAML file"))
        raise UntrustedContentError(source, "a YAML tag of a Python object", f"{node.tag}: code would build it")

    ZooFileLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", ordered_dict)
    tuples = yaml.constructor.FullConstructor.construct_python_tuple  # PyYAML's own, as its full loader builds them
    ZooFileLoader.add_constructor("tag:yaml.org,2002:python/tuple", tuples)
    ZooFileLoader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    return ZooFileLoader


def _load_normalization(load_path: str, venv: Any) -> Any:
    """``VecNormalize.load`` as rl_zoo3's ``create_test_env`` calls it, reading the statistics without unpickling them
    (and saying which file it read)."""
    print(f"normalisation statistics: {load_path}", file=sys.stderr)
    return load_normalization(load_path, venv)


def load_without_unpickling(stack: contextlib.ExitStack, trusted: bool) -> None:
    """For the block of ``stack``, the zoo's scripts load models, statistics and YAML files without running code.

    With ``trusted`` (or :data:`TRUSTED_VARIABLE` set to ``1``), nothing is changed except that the scripts the
    bridge starts itself (record_training's record_video) are trusted too.
    """
    stack.enter_context(mock.patch.dict(os.environ))  # the environment as it was, afterwards
    if trusted or os.environ.get(TRUSTED_VARIABLE) == "1":
        os.environ[TRUSTED_VARIABLE] = "1"
        return
    import yaml

    stack.enter_context(mock.patch.object(yaml, "UnsafeLoader", zoo_file_loader()))
    stack.enter_context(mock.patch("rl_zoo3.utils.VecNormalize", SimpleNamespace(load=_load_normalization)))
    for module in map(importlib.import_module, _MODULES):
        # what ALGOS[algo] gives the zoo's scripts: a ``load`` that unpickles nothing
        safe = {name: SimpleNamespace(load=functools.partial(load, algo=name)) for name in module.ALGOS}
        stack.enter_context(mock.patch.object(module, "ALGOS", safe))
