"""OptunaHub entry of optuna-fmd: the names of ``optuna_fmd`` itself, so that
``fmd = optunahub.load_module("samplers/fmd")`` and ``import optuna_fmd as fmd`` are the same
``fmd``."""

from optuna_fmd import (
    EngineOptions,
    EpisodeResult,
    EvaluationResult,
    FMDSampler,
    ForwardOptions,
    HypergradientObjective,
    PlainOptions,
    ReverseOptions,
    Schedule,
    ScheduleSpace,
    SnapshotOptions,
    baselines,
    evaluate_schedule,
    outer,
    run_episode,
    space,
    tasks,
    visualization,
)

__all__ = [
    "EngineOptions",
    "EpisodeResult",
    "EvaluationResult",
    "FMDSampler",
    "ForwardOptions",
    "HypergradientObjective",
    "PlainOptions",
    "ReverseOptions",
    "Schedule",
    "ScheduleSpace",
    "SnapshotOptions",
    "baselines",
    "evaluate_schedule",
    "outer",
    "run_episode",
    "space",
    "tasks",
    "visualization",
]
