"""The outer loop: the rules that turn a study's trials into the next schedules.

Pure Python over plain floats, like an optax transformation: :class:`~optuna_fmd.FMDSampler`
reads the study into points (``_point``), a rule (``_rules``: the search rule of ``search/``,
the paper's sign and Adam rules of ``_paper``) steps a typed, frozen state (``_state``; JSON
only at the storage edge) in each param's coordinate (``_geometry``), and the sampler stores
the state on the trial it proposes. ``_population`` is the one part that speaks to Optuna: it
claims the members' slots of an iterate across workers. Nothing here imports torch.
"""

__all__: list[str] = []
