"""What the algorithms run on besides their math: checks and machinery shared by our classes and the plugins'.

- :mod:`~sbx_lecture.infra.validation`: checks of user-given values, one message ``<name> must be <rule>, got <value>``;
- :mod:`~sbx_lecture.infra.finite`: training stops at the first NaN or infinity (:class:`NonFiniteError`);
- :mod:`~sbx_lecture.infra.schedules`: the remaining progress kept in [0, 1], so that schedules stay in range;
- :mod:`~sbx_lecture.infra.compilation`: an update's loss computation compiled with ``torch.compile``, or run eagerly;
- :mod:`~sbx_lecture.infra.allocator`: glibc's malloc keeps freed memory for the next gradient step;
- :mod:`~sbx_lecture.infra.studies`: Optuna studies from a ``--storage`` text, for the zoo bridge and the sweep.

These modules import nothing of sbx-lecture: they sit at the bottom, beside the registry, below ``common/``.
"""
