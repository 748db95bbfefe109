"""Safe loading: model zips, normalisation statistics and replay buffers read without running code from the file.

What loads safely (``trusted=False``, the default):

- **Model zips** of any registered algorithm, saved by sbx-lecture or by plain SB3 / sb3-contrib / a plugin. The
  ``data`` member's JSON fields are read as they are; its pickled fields are parsed by a symbolic unpickler that runs
  nothing and rebuilt only if they are plain data: numpy arrays, deques, the standard gymnasium spaces,
  ``TrainFreq``, SB3's ``ConstantSchedule`` / ``LinearSchedule`` / ``FloatSchedule``, rl-zoo3's
  ``SimpleLinearSchedule``, sbx-lecture's ``lin_X`` schedule, SB3's action noise, and classes of the allow-list
  (torch.nn modules such as activations, torch.optim optimizers, SB3 / sb3-contrib policies, features extractors and
  buffers, and classes from the packages of registered algorithms). Weights and optimizer states are read with
  ``torch.load(weights_only=True)``.
- A schedule that cannot be rebuilt (a function pickled by value: a lambda, a closure of older SB3 versions):
  ``learning_rate`` / ``lr_schedule`` become constant at the learning rate stored in the saved optimizer state; any
  other field that holds a function is replaced by a stand-in that raises :class:`UntrustedContentError` when
  training calls it (prediction never does). Load with ``trusted=True`` to get such functions back.
- **Normalisation statistics**: the ``.npz`` of :func:`save_normalization`, or a ``VecNormalize.save`` pickle (the
  RL Zoo's ``vecnormalize.pkl``) through the same symbolic unpickler, of which only the statistics and settings are
  kept.
- **Replay buffers**: the ``.npz`` of :func:`save_replay_buffer`. A pickled buffer needs ``trusted=True``.

Anything else is refused with :class:`UntrustedContentError`, one line naming the file and the field.
``trusted=True`` uses SB3's own loaders, which unpickle.

Modules: :mod:`~sbx_lecture.loading.base` (the ``load`` our algorithm classes inherit; it imports nothing and reaches
:func:`load` when called), then, each importing only those before it, :mod:`~sbx_lecture.loading.pickles` (the
symbolic unpickler), :mod:`~sbx_lecture.loading.model` (the one path for model zips),
:mod:`~sbx_lecture.loading.training_state` (statistics and buffers) and :mod:`~sbx_lecture.loading.zoo_run` (the RL
Zoo's scripts, loading through them). None of them imports an algorithm: classes come from the registry by name.
"""

from __future__ import annotations

from sbx_lecture.loading.base import SafeLoadMixin
from sbx_lecture.loading.model import (
    METADATA_NAME,
    ModelFileError,
    UntrustedContentError,
    check_model_file,
    inspect_model_file,
    load,
    read_model_metadata,
    save,
)
from sbx_lecture.loading.training_state import (
    load_normalization,
    load_replay_buffer,
    save_normalization,
    save_replay_buffer,
)

__all__ = [
    "METADATA_NAME",
    "ModelFileError",
    "SafeLoadMixin",
    "UntrustedContentError",
    "check_model_file",
    "inspect_model_file",
    "load",
    "load_normalization",
    "load_replay_buffer",
    "read_model_metadata",
    "save",
    "save_normalization",
    "save_replay_buffer",
]
