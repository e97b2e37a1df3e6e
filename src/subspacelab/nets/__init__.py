"""Training and evaluation every study shares.

:mod:`~subspacelab.nets.training` (the Lightning entry point :func:`fit`, loaders, the
single-model :class:`LossModule`), :mod:`~subspacelab.nets.joint` (the one trainer of many
independent small models at once) and :mod:`~subspacelab.nets.eval` (``predict``,
``accuracy``). Import the first two only inside the code that trains: Lightning's import costs
seconds, and a stage that does not train never pays it.
"""
