"""Training: configuration grids, walk-forward selection and the model artifact.

- :func:`sep_research.training.walkforward.walk_forward` -> ``WalkForwardResult``
- :mod:`sep_research.training.artifact`: ``write_artifact``, ``load_artifact``,
  ``verify_artifact`` (standard library only, for the live runner)
- :mod:`sep_research.training.summary`: ``build_payload``, ``oos_table``

Importing this package imports nothing heavy.
"""
