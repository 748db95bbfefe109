"""Safe loading: model zips, normalisation statistics and replay buffers read without running code from the file.

What loads safely (``trusted=False``, the default):

- **Model zips** of any registered algorithm, saved by sbx-lecture or by plain SB3 / sb3-contrib / a plugin, from a
  path or a file object. The ``data`` member's JSON fields are read as they are; its pickled fields are parsed by a
  symbolic unpickler that runs nothing and rebuilt only if they are plain data and every global the pickle names is
  allow-listed: numpy arrays, deques, the standard gymnasium spaces, ``TrainFreq``, SB3's ``ConstantSchedule`` /
  ``LinearSchedule`` / ``FloatSchedule``, rl-zoo3's ``SimpleLinearSchedule``, sbx-lecture's ``lin_X`` schedule, SB3's
  action noise, and classes of the allow-list (torch.nn modules such as activations, torch.optim optimizers, SB3 /
  sb3-contrib policies, features extractors and buffers, and classes from the packages of registered algorithms).
  Weights and optimizer states are read with ``torch.load(weights_only=True)``. ``custom_objects`` replaces fields as
  in SB3 (a replaced field is never read), and a zip that another algorithm saved is refused.
- A function or schedule that cannot be rebuilt (pickled by value: a lambda, a closure of older SB3 versions) is left
  out with SB3's ``UserWarning`` naming ``custom_objects``, as SB3 leaves out a field it cannot deserialize: the model
  keeps what its constructor sets. Load with ``trusted=True``, or pass the field in ``custom_objects``, to get it.
- **Normalisation statistics**: the ``.npz`` of :func:`save_normalization`, or a ``VecNormalize.save`` pickle (the
  RL Zoo's ``vecnormalize.pkl``) through the same symbolic unpickler, of which only the statistics and settings are
  kept.
- **Replay buffers**: the ``.npz`` of :func:`save_replay_buffer`. A pickled buffer needs ``trusted=True``.

Anything else is refused with :class:`UntrustedContentError`, one line naming the file and the field (or the
``.pth`` member that torch refuses). Errors are :class:`ModelFileError`, a ``ValueError`` as SB3 raises for a file
that is not a model zip (and a ``FileNotFoundError``, ``AssertionError`` or ``RuntimeError`` where SB3 raises one).
``trusted=True`` uses SB3's own loaders, which unpickle.

Modules, each importing only those before it: :mod:`~sbx_lecture.loading.pickles` (the symbolic unpickler),
:mod:`~sbx_lecture.loading.model` (the one path for model zips, and :class:`SafeLoadMixin`, the ``load`` our
algorithm classes inherit), :mod:`~sbx_lecture.loading.training_state` (statistics and buffers) and
:mod:`~sbx_lecture.loading.zoo_run` (the RL Zoo's scripts, loading through them). None of them imports an algorithm:
classes come from the registry by name.
"""

from __future__ import annotations

from sbx_lecture.loading.model import (  # noqa: F401  (re-exported: the package's safe loading API)
    ModelFileError,
    SafeLoadMixin,
    UntrustedContentError,
    inspect_model_file,
    load,
    read_model_metadata,
    save,
)
from sbx_lecture.loading.training_state import (  # noqa: F401  (re-exported, as above)
    load_normalization,
    load_replay_buffer,
    save_normalization,
    save_replay_buffer,
)
