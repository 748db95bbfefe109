"""What the RL Baselines3 Zoo is given: its tables filled from the registry, three adapters, and Optuna storages.

The zoo has no plugin mechanism. Its scripts read three shared tables, which :func:`register_with_zoo` fills from
the sbx-lecture registry (built-in and third-party algorithms alike) before any zoo parser runs, as SBX does:
``rl_zoo3.utils.ALGOS`` (``--algo`` name → class) and ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` /
``HYPERPARAMS_CONVERTER`` (Optuna samplers for ``--optimize``, converters of a stored trial for ``--trial-id``).
What no table can say is done by a few small adapters (:func:`_adapt_the_zoo`), which the plain zoo gets too: with
sbx-lecture installed, the start-up hook ``_sbx_lecture_zoo_hook`` calls :func:`autoregister` when ``rl_zoo3`` is
first imported. The Optuna storages of ``--storage`` (:func:`open_study_storage`, :func:`ensure_study`) serve the
zoo bridge (:mod:`sbx_lecture.zoo`) and ``sbx-lecture sweep``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import pkgutil
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections import UserDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar
from unittest import mock

from sbx_lecture import zoo_config
from sbx_lecture.infra.validation import is_action_space_error
from sbx_lecture.plugins import PluginManager, get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

#: Value of ``SBX_LECTURE_ZOO_AUTOREGISTER`` that switches the plain zoo's automatic registration off.
AUTOREGISTER_VARIABLE = "SBX_LECTURE_ZOO_AUTOREGISTER"


class ZooBridgeError(Exception):
    """A zoo command line that cannot work, explained before rl_zoo3 starts."""


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


@dataclass(frozen=True, eq=False)
class LazySampler:
    """The registered Optuna sampler of an algorithm, imported on first call (the zoo's sampler signature), and its
    :meth:`convert`, the zoo's converter of a stored trial.

    :param spec: the algorithm's registry entry
    """

    spec: AlgorithmSpec

    def __call__(self, trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
        sampler = self.spec.load_zoo_sampler()
        assert sampler is not None  # set only for a spec with a sampler
        return sampler(trial, n_actions, n_envs, additional_args)

    def convert(self, params: dict[str, Any]) -> dict[str, Any]:
        """A stored trial's parameters as hyperparameters (the zoo's ``--trial-id``): by the plugin's
        ``zoo_converter`` when it registered one, else by the ``convert`` attribute of its sampler (as the samplers of
        :mod:`sbx_lecture.zoo_samplers` carry)."""
        converter = self.spec.extra.get("zoo_converter") or getattr(self.spec.load_zoo_sampler(), "convert", None)
        if isinstance(converter, str):
            converter = pkgutil.resolve_name(converter)
        if converter is None:
            raise ZooBridgeError(
                f"algorithm {self.spec.name!r} ({self.spec.origin}) registers no converter for stored trials: "
                "register it with zoo_converter=..., or give the sampler a 'convert' attribute"
            )
        return dict(converter(params))


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
        import rl_zoo3  # noqa: F401  (imports rl_zoo3.utils and with it the zoo's ALGOS)
        import rl_zoo3.hyperparams_opt as zoo_optimization
        import rl_zoo3.utils as zoo_utils
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith(("rl_zoo3", "optuna")):
            raise
        raise ZooBridgeError(f"the zoo bridge needs {error.name}: pip install 'sbx-lecture[zoo]'") from None

    current = zoo_utils.ALGOS
    table = current if isinstance(current, LazyAlgorithms) else LazyAlgorithms(dict(current))
    specs = list((manager or get_plugin_manager()).registry)
    table.sync(specs)
    for module_name, module in list(sys.modules.items()):
        if module_name.partition(".")[0] == "rl_zoo3" and getattr(module, "ALGOS", None) is current:
            module.ALGOS = table  # type: ignore[attr-defined]
    for spec in specs:
        if spec.zoo_sampler is not None:
            zoo_optimization.HYPERPARAMS_SAMPLER[spec.name] = LazySampler(spec)
        if spec.zoo_sampler is not None or spec.extra.get("zoo_converter") is not None:
            zoo_optimization.HYPERPARAMS_CONVERTER[spec.name] = LazySampler(spec).convert  # type: ignore[assignment]
    _adapt_the_zoo()
    return table


def autoregister() -> None:
    """Called by the start-up hook (``_sbx_lecture_zoo_hook``) when a plain zoo script first imports ``rl_zoo3``.

    It registers every algorithm (:func:`register_with_zoo`) and makes the bridge's errors (:class:`ZooBridgeError`)
    and the zoo's own "missing package" errors (an ``ImportError`` that names the ``pip install``) one line on
    stderr instead of a traceback. A registration that fails (a broken plugin) leaves the zoo with its
    own algorithms and says so in one line (``SBX_LECTURE_DEBUG=1``: the traceback).
    """
    try:
        register_with_zoo()
    except Exception as error:  # a broken plugin must not break the zoo itself
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        print(
            f"sbx-lecture: the RL Zoo sees only its own algorithms ({reason}); "
            f"{AUTOREGISTER_VARIABLE}=0 stops this registration",
            file=sys.stderr,
        )
        return
    previous = sys.excepthook
    if getattr(previous, "_sbx_lecture_zoo", False):
        return

    def excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        one_line = isinstance(error, (ZooBridgeError, zoo_config.ZooConfigError)) or (
            isinstance(error, ImportError) and "pip install" in str(error)
        )
        if one_line and not os.environ.get("SBX_LECTURE_DEBUG"):
            print(f"{Path(sys.argv[0]).name or 'rl_zoo3'}: error: {' '.join(str(error).split())}", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    excepthook._sbx_lecture_zoo = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


# --------------------------------------------------------------------------------------------------------------
# The adapters: what no table of the zoo can say
# --------------------------------------------------------------------------------------------------------------


def _adapt_the_zoo() -> None:
    """Install, once, the adapters of rl_zoo3 and Optuna. Each wraps the original with ``functools.wraps`` (so
    ``__wrapped__`` and the signature stay the original's, which ``tests/test_zoo.py`` compares with the signature
    the adapter was written for):

    - ``ExperimentManager.read_hyperparameters``: without ``-conf``, an algorithm that registers a zoo file reads it
      (the zoo would read ``rl_zoo3/hyperparams/<algo>.yml``); a yml's section is chosen by
      :func:`sbx_lecture.zoo_config.select_section`, the one rule of ``train`` and ``bench`` (``Hopper-v5`` reads
      ``Hopper-v4``), said in one line when it is not the environment's own;
    - ``ExperimentManager.objective``: a trial pruned because training failed (a ``ValueError`` such as
      :class:`~sbx_lecture.infra.finite.NonFiniteError`) is pruned with the reason, which Optuna's "Trial N pruned."
      line shows and the trial keeps as its user attribute ``pruned`` (as in ``sbx-lecture sweep``);
    - ``ExperimentManager.hyperparameters_optimization``: the report files ``report_*.csv/.pkl`` get a name of their
      own (the zoo's changes once a second, so workers that finish together overwrote each other's) and the pickled
      study is an in-memory copy, which holds no storage URL (nor its password);
    - ``ExperimentManager.setup_experiment``: an action space the algorithm (or the zoo's action noise) cannot use is
      a one-line :class:`ZooBridgeError`, worded as ``sbx-lecture train`` words it;
    - ``optuna.storages.get_storage`` (which ``create_study``/``load_study`` call on the zoo's ``--storage`` text): a
      Redis URL becomes Optuna's Redis journal (see :func:`open_study_storage`), and a database's tables are created
      safely when several workers start at once on a fresh database (see :func:`ensure_study`).
    """
    import optuna
    from rl_zoo3.exp_manager import ExperimentManager

    if getattr(ExperimentManager, "_sbx_lecture_patched", False):
        return
    import yaml

    read_hyperparameters = ExperimentManager.read_hyperparameters
    setup_experiment = ExperimentManager.setup_experiment
    objective = ExperimentManager.objective
    hyperparameters_optimization = ExperimentManager.hyperparameters_optimization
    get_storage = optuna.storages.get_storage
    zoo_module = sys.modules[ExperimentManager.__module__]
    zoo_default_folder = Path(zoo_module.__file__ or "").parent / "hyperparams"

    @functools.wraps(read_hyperparameters)
    def reading_the_registered_file(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = _table().spec(self.algo)
        registered = zoo_config.registered_zoo_file(spec) if spec is not None else None
        if registered is not None and self.config == str(zoo_default_folder / f"{self.algo}.yml"):
            self.config = str(registered)
        if not self.config.endswith((".yml", ".yaml")):
            return read_hyperparameters(self)
        env_id, sections = self.env_name.gym_id, zoo_config.read_sections(Path(self.config))
        name, section = zoo_config.section_for(sections, env_id, self.algo, self.config)
        if name != env_id:
            print(f"Using the section {name!r} of {self.config} for {env_id}")
        with mock.patch.object(yaml, "safe_load", lambda stream: {env_id: section}):  # the zoo reads the file
            return read_hyperparameters(self)

    @functools.wraps(objective)
    def pruning_with_the_reason(self: Any, trial: Any) -> float:
        try:
            return objective(self, trial)
        except optuna.TrialPruned as pruned:
            if pruned.args or pruned.__cause__ is None:
                raise
            reason = " ".join(str(pruned.__cause__).split()) or type(pruned.__cause__).__name__
            trial.set_user_attr("pruned", reason)
            raise optuna.TrialPruned(reason) from pruned.__cause__

    @functools.wraps(hyperparameters_optimization)
    def writing_reports_of_their_own(self: Any) -> None:
        folder = self.log_folder
        with tempfile.TemporaryDirectory(prefix="sbx-lecture-report-") as scratch:
            self.log_folder = scratch
            try:
                with mock.patch.object(zoo_module, "pkl", SimpleNamespace(dump=_pickle_report)):
                    hyperparameters_optimization(self)
            finally:
                self.log_folder = folder
                token = uuid.uuid4().hex[:8]
                for report in sorted(Path(scratch, self.algo).glob("report_*")):
                    destination = Path(folder, self.algo, f"{report.stem}_{token}{report.suffix}")
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    print(f"Report: {shutil.move(report, destination)}")

    @functools.wraps(setup_experiment)
    def refusing_action_spaces_in_one_line(self: Any) -> Any:
        try:
            return setup_experiment(self)
        except (AssertionError, ValueError, TypeError, KeyError) as error:
            if not is_action_space_error(error):
                raise
            raise _action_space_refusal(self, error) from error

    @functools.wraps(get_storage)
    def opening_storage_urls(storage: Any) -> Any:
        if isinstance(storage, str):
            return _retrying_creation_races(lambda: get_storage(open_study_storage(storage)))
        return get_storage(storage)

    ExperimentManager.read_hyperparameters = reading_the_registered_file  # type: ignore[method-assign]
    ExperimentManager.setup_experiment = refusing_action_spaces_in_one_line  # type: ignore[method-assign]
    ExperimentManager.objective = pruning_with_the_reason  # type: ignore[method-assign]
    ExperimentManager.hyperparameters_optimization = writing_reports_of_their_own  # type: ignore[method-assign]
    optuna.storages.get_storage = opening_storage_urls
    ExperimentManager._sbx_lecture_patched = True  # type: ignore[attr-defined]


def _table() -> LazyAlgorithms:
    import rl_zoo3.utils as zoo_utils

    return zoo_utils.ALGOS if isinstance(zoo_utils.ALGOS, LazyAlgorithms) else LazyAlgorithms(zoo_utils.ALGOS)


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


def _action_space_refusal(manager: Any, error: BaseException) -> ZooBridgeError:
    """The error for an action space that the zoo refused while setting ``manager``'s experiment up.

    When the algorithm itself refuses the space, it is the error of ``sbx-lecture train`` (the algorithm is built
    with its defaults to learn it); else (the zoo's action noise on a space that is not a Box) it says what to remove.
    """
    from sbx_lecture.factory import UsageError, build_model

    env = manager.create_envs(1, no_log=True)
    try:
        build_model(manager.algo, _table()[manager.algo], env, {}, {}, seed=0)
    except UsageError as refusal:
        if is_action_space_error(refusal):
            return ZooBridgeError(str(refusal))
    finally:
        env.close()
    message = " ".join(str(error).split())
    if "noise" in message.lower():
        message += ": remove noise_type and noise_std from the hyperparameters (-params noise_type:None)"
    return ZooBridgeError(message)


# --------------------------------------------------------------------------------------------------------------
# Optuna studies: storages from the zoo's --storage, created once, shared by workers
# --------------------------------------------------------------------------------------------------------------

#: URL schemes of Optuna's Redis journal backend.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: Attempts at creating a study's tables and the study itself before giving up (see :func:`ensure_study`).
STUDY_CREATION_ATTEMPTS = 8
_REDIS_HINT = "pip install 'sbx-lecture[zoo]' (or: pip install redis)"
#: The package each storage scheme needs, and the ``pip install`` that brings it.
STORAGE_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'sbx-lecture[zoo]' (or: pip install 'psycopg[binary]')"),
    "postgresql+psycopg": ("psycopg", "pip install 'psycopg[binary]'"),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
    "redis": ("redis", _REDIS_HINT),
    "rediss": ("redis", _REDIS_HINT),
    "unix": ("redis", _REDIS_HINT),
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
    keeps the journal under keys ``NAME:...``, so that several journals can share one Redis database.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    if storage.endswith(".log") and "://" not in storage:
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage))
    check_storage_driver(storage)
    if not storage.startswith(REDIS_SCHEMES):
        return storage
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(storage)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "".join(value for key, value in query if key == "prefix")
    url = urlunsplit(parts._replace(query=urlencode([(key, value) for key, value in query if key != "prefix"])))
    with warnings.catch_warnings():  # "JournalRedisBackend is experimental", at every start of every worker
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        return JournalStorage(JournalRedisBackend(url, prefix=prefix))


def ensure_study(storage: str, study_name: str, **options: Any) -> tuple[Any, bool]:
    """Create the study ``study_name`` in ``storage`` (and a database's tables) unless it exists, and open it.

    Several processes started at once on a fresh database race to create Optuna's tables and the study; the losers'
    attempts fail (a unique violation) and are retried after a short random pause, when the tables exist. A storage
    that cannot be opened is a :class:`ZooBridgeError` that names it, its password masked.

    :param options: for ``optuna.load_study`` (``sampler``, ``pruner``)
    :return: the study and whether it existed already
    """
    import optuna

    def create_and_load() -> tuple[Any, bool]:
        opened = open_study_storage(storage)
        try:
            optuna.create_study(study_name=study_name, storage=opened, direction="maximize")
            existed = False
        except optuna.exceptions.DuplicatedStudyError:
            existed = True
        return optuna.load_study(study_name=study_name, storage=opened, **options), existed

    check_storage_driver(storage)
    try:
        return _retrying_creation_races(create_and_load)
    except Exception as error:
        reason = mask_url(" ".join(str(error).split("\n")[0].split())) or type(error).__name__
        raise ZooBridgeError(f"cannot open the Optuna storage {mask_url(storage)}: {reason}") from None


Result = TypeVar("Result")


def _retrying_creation_races(action: Callable[[], Result]) -> Result:
    """``action()``, tried again (up to :data:`STUDY_CREATION_ATTEMPTS` times, after a short random pause) while it
    fails because another process creates the same tables, type or study at the same time."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except Exception as error:
            if attempt >= STUDY_CREATION_ATTEMPTS or not _is_creation_race(error):
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)


def _is_creation_race(error: Exception) -> bool:
    """Whether ``error`` is another process creating the same tables, type or study at the same time."""
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    except ModuleNotFoundError:
        return False
    text = str(error).lower()
    return isinstance(error, IntegrityError) or (
        isinstance(error, (ProgrammingError, OperationalError))
        and any(word in text for word in ("already exists", "duplicate", "deadlock"))
    )
