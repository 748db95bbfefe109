"""What the RL Baselines3 Zoo is given: its tables filled from the registry, a few adapters, and Optuna storages.

The zoo has no plugin mechanism. Its scripts read three shared tables, which :func:`register_with_zoo` fills from the
sbx-lecture registry (built-in and third-party algorithms alike) before any zoo parser runs, as SBX does:
``rl_zoo3.utils.ALGOS`` (``--algo`` name → class) and ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` /
``HYPERPARAMS_CONVERTER`` (Optuna samplers for ``-optimize``, converters of a stored trial for ``--trial-id``). What no
table can say is done by a few small adapters of rl_zoo3 and Optuna (:func:`_adapt_the_zoo`), which the plain zoo gets
too: with sbx-lecture installed, the start-up hook ``_sbx_lecture_zoo_hook`` calls :func:`autoregister` when
``rl_zoo3`` is first imported. Each adapter is a function that gets the original first; ``tests/test_zoo.py`` fails
when an adapted signature changes. The Optuna storages of ``--storage`` (:func:`open_study_storage`,
:func:`ensure_study`) serve the zoo bridge (:mod:`sbx_lecture.zoo`) and ``sbx-lecture sweep``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import pkgutil
import random
import re
import sys
import time
import warnings
from collections import UserDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from unittest import mock

from sbx_lecture import zoo_config
from sbx_lecture.factory import UsageError, build_model
from sbx_lecture.infra.validation import is_action_space_error, one_line
from sbx_lecture.plugins import PluginManager, get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm


class ZooBridgeError(Exception):
    """A zoo command line that cannot work, explained in one line."""


# --------------------------------------------------------------------------------------------------------------
# The zoo's tables
# --------------------------------------------------------------------------------------------------------------


class LazyAlgorithms(UserDict[str, Any]):
    """rl_zoo3's ``ALGOS`` with the registry's algorithms added; a registered class is imported on first lookup.

    The zoo only reads ``ALGOS.keys()`` (its ``--algo`` choices), ``ALGOS[name]`` and the class's ``__name__``, so
    listing the names never imports an algorithm module.

    :param zoo_algorithms: the zoo's own table, kept for the names no plugin registers
    """

    def __init__(self, zoo_algorithms: Mapping[str, type[BaseAlgorithm]]) -> None:
        super().__init__(zoo_algorithms)
        self.zoo_algorithms = dict(zoo_algorithms)

    def sync(self, specs: Sequence[AlgorithmSpec]) -> None:
        """Make the table the zoo's algorithms, the classes added by hand (``ALGOS[name] = cls``, as SBX does) and
        ``specs``, which win on a shared name; the specs of an earlier sync are dropped."""
        added = {name: entry for name, entry in self.data.items() if not isinstance(entry, AlgorithmSpec)}
        self.data = {**self.zoo_algorithms, **added, **{spec.name: spec for spec in specs}}

    def spec(self, name: str) -> AlgorithmSpec | None:
        """The registry entry behind ``name``, or ``None`` for one of the zoo's own or a hand-added class."""
        entry = self.data.get(name)
        return entry if isinstance(entry, AlgorithmSpec) else None

    def __getitem__(self, name: str) -> type[BaseAlgorithm]:
        entry = self.data[name]
        return entry.load() if isinstance(entry, AlgorithmSpec) else entry


def _sample(spec: AlgorithmSpec, trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> Any:
    """The zoo's ``HYPERPARAMS_SAMPLER`` entry of ``spec``: its registered sampler, imported on first call."""
    return spec.load_zoo_sampler()(trial, n_actions, n_envs, additional_args)  # type: ignore[misc]


def _convert(spec: AlgorithmSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The zoo's ``HYPERPARAMS_CONVERTER`` entry of ``spec``: a stored trial's parameters as hyperparameters
    (``--trial-id``), by the plugin's ``zoo_converter``, else by the ``convert`` attribute of its sampler (which the
    samplers of :mod:`sbx_lecture.zoo_samplers` carry)."""
    converter = spec.extra.get("zoo_converter") or getattr(spec.load_zoo_sampler(), "convert", None)
    if converter is None:
        raise ZooBridgeError(
            f"algorithm {spec.name!r} ({spec.origin}) registers no converter for stored trials: register it with "
            "zoo_converter=..., or give the sampler a 'convert' attribute"
        )
    return dict((pkgutil.resolve_name(converter) if isinstance(converter, str) else converter)(params))


def register_with_zoo(manager: PluginManager | None = None) -> LazyAlgorithms:
    """Put every registered algorithm into rl_zoo3's ``ALGOS``, samplers and converters; safe to call again.

    ``ALGOS`` becomes a :class:`LazyAlgorithms` (rebound in every loaded ``rl_zoo3`` module that held the zoo's
    dict, so the modules imported later get it too); the Optuna tables are the zoo's dicts, updated in place. A
    registered name wins over the zoo's own entry of the same name. A sampler is set only where the plugin gave one,
    so SB3's algorithms keep the zoo's samplers. The adapters of :func:`_adapt_the_zoo` are installed once.

    :param manager: the plugin manager to read (default: the process-wide one)
    :return: the zoo's ``ALGOS`` table
    """
    try:
        import rl_zoo3.hyperparams_opt as zoo_optimization  # imports rl_zoo3, and with it rl_zoo3.utils's ALGOS
        import rl_zoo3.utils as zoo_utils
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith(("rl_zoo3", "optuna")):
            raise
        raise ZooBridgeError(f"the zoo bridge needs {error.name}: pip install 'sbx-lecture[zoo]'") from None

    current = zoo_utils.ALGOS
    table = current if isinstance(current, LazyAlgorithms) else LazyAlgorithms(current)
    specs = list((manager or get_plugin_manager()).registry)
    table.sync(specs)
    for module_name, module in list(sys.modules.items()):
        if module_name.partition(".")[0] == "rl_zoo3" and getattr(module, "ALGOS", None) is current:
            module.ALGOS = table  # type: ignore[attr-defined]
    for spec in specs:
        if spec.zoo_sampler is not None:
            zoo_optimization.HYPERPARAMS_SAMPLER[spec.name] = functools.partial(_sample, spec)
        if spec.zoo_sampler is not None or spec.extra.get("zoo_converter") is not None:
            zoo_optimization.HYPERPARAMS_CONVERTER[spec.name] = functools.partial(_convert, spec)
    _adapt_the_zoo()
    return table


def zoo_sampler(algo: str, table: Mapping[str, Any]) -> Any:
    """The Optuna sampler the zoo holds for ``algo`` (``(trial, n_actions, n_envs, additional_args) ->
    hyperparameters``): the registered one (ours, plugins') or the zoo's own (SB3's), for ``-optimize`` and sweeps."""
    import rl_zoo3.hyperparams_opt as zoo_optimization

    if algo not in zoo_optimization.HYPERPARAMS_SAMPLER:
        spec = table.spec(algo) if isinstance(table, LazyAlgorithms) else None
        origin = f" (plugin {spec.origin})" if spec is not None else ""
        raise ZooBridgeError(f"{algo!r}{origin} has no zoo sampler to search with: register one with zoo_sampler=...")
    return zoo_optimization.HYPERPARAMS_SAMPLER[algo]


def autoregister() -> None:
    """Called by the start-up hook (``_sbx_lecture_zoo_hook``) when a plain zoo script first imports ``rl_zoo3``.

    It registers every algorithm (:func:`register_with_zoo`) and makes the adapters' errors (:class:`ZooBridgeError`,
    :class:`~sbx_lecture.zoo_config.ZooConfigError`) and the zoo's own "missing package" errors (an ``ImportError``
    that names the ``pip install``) one line on stderr instead of a traceback. A registration that fails (a broken
    plugin) is said in one line by the hook, which leaves the zoo with its own algorithms.
    """
    register_with_zoo()
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        one_line = isinstance(error, (ZooBridgeError, zoo_config.ZooConfigError)) or (
            isinstance(error, ImportError) and "pip install" in str(error)
        )
        if one_line and not os.environ.get("SBX_LECTURE_DEBUG"):
            print(f"{Path(sys.argv[0]).name or 'rl_zoo3'}: error: {' '.join(str(error).split())}", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    sys.excepthook = excepthook


# --------------------------------------------------------------------------------------------------------------
# The adapters: what no table of the zoo can say. Each gets the function it adapts first.
# --------------------------------------------------------------------------------------------------------------


def adapted(original: Callable[..., Any], adapter: Callable[..., Any]) -> Any:
    """``adapter`` with ``original`` as its first argument, looking like ``original`` (``functools.wraps``: its name,
    signature and ``__wrapped__``, which ``tests/test_zoo.py`` compares with the signature the adapter was written
    for)."""
    return functools.wraps(original)(lambda *args, **kwargs: adapter(original, *args, **kwargs))


def _adapt_the_zoo() -> None:
    """Install, once, the adapters the plain zoo gets too: :func:`read_hyperparameters_adapter`,
    :func:`_setup_experiment`, :func:`_objective` and :func:`_hyperparameters_optimization` of rl_zoo3's
    ``ExperimentManager``, and :func:`_get_storage` of ``optuna.storages``."""
    import optuna
    from rl_zoo3.exp_manager import ExperimentManager

    if getattr(ExperimentManager, "_sbx_lecture_patched", False):
        return
    adapters: dict[str, Callable[..., Any]] = {
        "read_hyperparameters": read_hyperparameters_adapter,
        "setup_experiment": _setup_experiment,
        "objective": _objective,
        "hyperparameters_optimization": _hyperparameters_optimization,
    }
    for name, adapter in adapters.items():
        setattr(ExperimentManager, name, adapted(getattr(ExperimentManager, name), adapter))
    optuna.storages.get_storage = adapted(optuna.storages.get_storage, _get_storage)
    ExperimentManager._sbx_lecture_patched = True  # type: ignore[attr-defined]


def read_hyperparameters_adapter(read: Callable[..., Any], manager: Any, then: Callable[..., Any] | None = None) -> Any:
    """``ExperimentManager.read_hyperparameters``: without ``-conf``, an algorithm that registers a zoo file reads it
    (the zoo would read ``rl_zoo3/hyperparams/<algo>.yml``); a yml's section is chosen by
    :func:`sbx_lecture.zoo_config.select_section`, the one rule of ``train`` and ``bench`` (``Hopper-v5`` reads
    ``Hopper-v4``), said in one line when it is not the environment's own.

    :param then: what ``sbx-lecture zoo`` does next with ``(manager, hyperparameters, where)``
        (:func:`sbx_lecture.zoo._check_train`)
    """
    import yaml
    from rl_zoo3.utils import ALGOS

    algo, env_id = manager.algo, manager.env_name.gym_id
    spec = ALGOS.spec(algo) if isinstance(ALGOS, LazyAlgorithms) else None
    registered = zoo_config.registered_zoo_file(spec) if spec is not None else None
    if registered is not None and not getattr(manager.args, "conf_file", None):
        manager.config = str(registered)
    where = manager.config
    if not where.endswith((".yml", ".yaml")):
        hyperparams, saved = read(manager)  # a Python file or package named by -conf: the zoo's own reading
    else:
        name, section = zoo_config.section_for(zoo_config.read_sections(Path(where)), env_id, algo, where)
        if name != env_id:
            print(f"Using the section {name!r} of {where} for {env_id}")
        with mock.patch.object(yaml, "safe_load", lambda stream: {env_id: section}):  # the zoo reads the file
            hyperparams, saved = read(manager)
        where = f"section {name!r} of {where}"
    return (hyperparams if then is None else then(manager, hyperparams, where)), saved


def _setup_experiment(setup: Callable[..., Any], manager: Any) -> Any:
    """``ExperimentManager.setup_experiment``: an action space the algorithm (or the zoo's action noise) cannot use is a
    one-line :class:`ZooBridgeError`. When the algorithm, built with its defaults, refuses the space, it is the error of
    ``sbx-lecture train``; else the zoo's action noise refused it, and the message says what to remove."""
    from rl_zoo3.utils import ALGOS

    try:
        return setup(manager)
    except (AssertionError, ValueError, TypeError, KeyError) as error:
        if not is_action_space_error(error):
            raise
        env = manager.create_envs(1, no_log=True)
        try:
            build_model(manager.algo, ALGOS[manager.algo], env, {}, {}, seed=0)
        except UsageError as refusal:
            if is_action_space_error(refusal):
                raise ZooBridgeError(str(refusal)) from error
        finally:
            env.close()
        message = one_line(error)
        if "noise" in message.lower():
            message += ": remove noise_type and noise_std from the hyperparameters (-params noise_type:None)"
        raise ZooBridgeError(message) from error


def _objective(objective: Callable[..., float], manager: Any, trial: Any) -> float:
    """``ExperimentManager.objective``: a trial pruned because training failed (a ``ValueError`` such as
    :class:`~sbx_lecture.infra.finite.NonFiniteError`) is pruned with the reason, which Optuna's "Trial N pruned." line
    shows and the trial keeps as its user attribute ``pruned`` (as in ``sbx-lecture sweep``)."""
    import optuna

    try:
        return objective(manager, trial)
    except optuna.TrialPruned as pruned:
        if pruned.args or pruned.__cause__ is None:
            raise
        reason = one_line(pruned.__cause__)
        trial.set_user_attr("pruned", reason)
        raise optuna.TrialPruned(reason) from pruned.__cause__


def _hyperparameters_optimization(optimize: Callable[..., None], manager: Any) -> None:
    """``ExperimentManager.hyperparameters_optimization``: the report files ``report_..._<time>.csv/.pkl`` get a name of
    their own, the zoo's ``int(time.time())`` followed by this process's id (the zoo's second alone let workers that
    finish together overwrite each other's), and the pickled study is an in-memory copy (:func:`_pickle_report`),
    which holds no storage URL (nor its password)."""
    from rl_zoo3 import exp_manager

    report_time = SimpleNamespace(time=lambda: int(time.time()) * 10**7 + os.getpid() % 10**7)
    with mock.patch.object(exp_manager, "time", report_time), mock.patch.object(exp_manager, "pkl", _PICKLED_REPORT):
        optimize(manager)


def _pickle_report(study: Any, file: Any) -> None:
    """The zoo's ``pkl.dump(study, file)`` of its report, with an in-memory copy of ``study``: the trials and the
    study's attributes (URLs masked), but not its storage, whose URL may hold a password."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" after the search
    try:
        copy = optuna.create_study(
            study_name=study.study_name, directions=study.directions, sampler=study.sampler, pruner=study.pruner
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(study.trials)
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, mask_url(value) if isinstance(value, str) else value)
    pickle.dump(copy, file)


#: The zoo's ``pkl`` in :func:`_hyperparameters_optimization`.
_PICKLED_REPORT = SimpleNamespace(dump=_pickle_report)


def _get_storage(get_storage: Callable[[Any], Any], storage: Any) -> Any:
    """``optuna.storages.get_storage``, which ``create_study``/``load_study`` call on the zoo's ``--storage`` text: the
    storage of :func:`open_study_storage` (a Redis URL is Optuna's Redis journal, a database's tables are created
    safely when several workers start at once on a fresh database)."""
    return get_storage(open_study_storage(storage) if isinstance(storage, str) else storage)


# --------------------------------------------------------------------------------------------------------------
# Optuna studies: storages from the zoo's --storage, created once, shared by workers
# --------------------------------------------------------------------------------------------------------------

#: URL schemes of Optuna's Redis journal backend.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: Attempts at opening a database storage (creating its tables) before giving up (see :func:`open_study_storage`).
STUDY_CREATION_ATTEMPTS = 8
#: The package each storage scheme needs, and the ``pip install`` that brings it.
STORAGE_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'sbx-lecture[zoo]' (or: pip install 'psycopg[binary]')"),
    "postgresql+psycopg": ("psycopg", "pip install 'psycopg[binary]'"),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
    **dict.fromkeys(("redis", "rediss", "unix"), ("redis", "pip install 'sbx-lecture[zoo]' (or: pip install redis)")),
}


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``postgresql://user:***@host/db``)."""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^@/\s]*@", r"\1***@", text)


def check_storage_driver(storage: str) -> None:
    """Raise :class:`ZooBridgeError` when the driver of the storage URL ``storage`` is not installed."""
    driver = STORAGE_DRIVERS.get(storage.partition("://")[0].lower() if "://" in storage else "")
    if driver is not None and importlib.util.find_spec(driver[0]) is None:
        raise ZooBridgeError(f"the storage {mask_url(storage)} needs the package {driver[0]!r}: {driver[1]}")


def open_study_storage(storage: str) -> Any:
    """An Optuna storage from the zoo's ``--storage``.

    A path ending in ``.log`` is a journal file, a ``redis://`` (``rediss://``, ``unix://``) URL a Redis journal, any
    other string a database URL (SQLAlchemy's; ``postgresql://`` uses psycopg 3). A Redis URL's ``?prefix=NAME``
    keeps the journal under keys ``NAME:...``, so that several journals can share one Redis database. Several
    processes started at once on a fresh database race to create Optuna's tables; the losers' attempts fail (a unique
    violation, a deadlock) and are retried after a short random pause (up to :data:`STUDY_CREATION_ATTEMPTS` times),
    when the tables exist.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    if storage.endswith(".log") and "://" not in storage:
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage))
    check_storage_driver(storage)
    if storage.startswith(REDIS_SCHEMES):
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(storage)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = "".join(value for key, value in query if key == "prefix")
        url = urlunsplit(parts._replace(query=urlencode([(key, value) for key, value in query if key != "prefix"])))
        with warnings.catch_warnings():  # "JournalRedisBackend is experimental", at every start of every worker
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalRedisBackend(url, prefix=prefix))
    for attempt in range(1, STUDY_CREATION_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as error:
            if not _is_creation_race(error):
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)
    return optuna.storages.RDBStorage(storage)


def ensure_study(storage: str, study_name: str, **options: Any) -> tuple[Any, bool]:
    """Create the study ``study_name`` in ``storage`` (and a database's tables) unless it exists, and open it.

    Of several processes that create it at once, one does and the others load it (Optuna's ``DuplicatedStudyError``).
    A storage that cannot be opened is a :class:`ZooBridgeError` that names it, its password masked.

    :param options: for ``optuna.create_study``/``load_study`` (``sampler``, ``pruner``)
    :return: the study and whether it existed already
    """
    import optuna

    check_storage_driver(storage)
    try:
        opened = open_study_storage(storage)
        try:
            return optuna.create_study(study_name=study_name, storage=opened, direction="maximize", **options), False
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=study_name, storage=opened, **options), True
    except Exception as error:
        reason = mask_url(" ".join(str(error).split("\n")[0].split())) or type(error).__name__
        raise ZooBridgeError(f"cannot open the Optuna storage {mask_url(storage)}: {reason}") from None


def _is_creation_race(error: Exception) -> bool:
    """Whether ``error``, a database's (SQLAlchemy's) error, is another process creating the same tables, type or
    study at the same time: a unique (duplicate) key, an object that already exists, a deadlock between the creators."""
    words = ("already exists", "duplicate", "unique", "deadlock")
    return type(error).__module__.startswith("sqlalchemy") and any(word in str(error).lower() for word in words)
