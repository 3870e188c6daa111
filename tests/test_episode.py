"""run_episode: determinism, and bad input refused before any training starts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd import (
    EngineOptions,
    ForwardOptions,
    PlainOptions,
    ReverseOptions,
    SnapshotOptions,
    episode,
)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started")

    for name in ("run_hypergradient",):  # the one entry to every engine, plain training too
        monkeypatch.setattr(episode, name, boom)


@pytest.fixture
def no_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine starts but may draw no minibatch: every engine's step t draws
    ``problem.batch_at(t)`` first."""
    build = episode.build_episode

    def boom(t: int) -> object:
        raise AssertionError("training started")

    def stepless(*args: object, **kwargs: object) -> object:
        problem, table, state0 = build(*args, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(problem, batch_at=boom), table, state0

    monkeypatch.setattr(episode, "build_episode", stepless)


@pytest.mark.parametrize(
    "schedules,match",
    [
        (
            {"learning_rate": [0.1]},
            r"schedule `learning_rate` is not a hyperparameter of optimizer='sgd' or of the "
            r"loss; they are \['lr', 'momentum', 'weight_decay', 'class_weight', "
            r"'label_smoothing'\]",
        ),
        ({"beta1": [0.9]}, r"`beta1` is not a hyperparameter of optimizer='sgd'"),
        ({"lr": [0.1] * 21}, r"between 1 and steps=20 windows, but got 21"),
        ({"lr": []}, r"between 1 and steps=20 windows, but got 0"),
        ({"lr": [0.1, float("nan")]}, r"`lr` value 1 must be a finite float, but got nan"),
        ({"lr": [0.1, "0.2"]}, r"`lr` value 1 must be a finite float, but got '0.2'"),
        ({"lr": 0.1}, r"`lr` must be a list of floats, but got 0.1"),
        ([0.1], r"`schedules` must map hyper name"),
    ],
)
def test_bad_schedules_are_refused_before_training(
    no_training: None, schedules: object, match: str
) -> None:
    task = fmd.tasks.Digits(steps=20, batch_size=16)
    with pytest.raises((ValueError, TypeError), match=match):
        fmd.run_episode(task, schedules)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"seed": -1}, r"`seed` must be a non-negative int, but got -1"),
        ({"seed": 1.5}, r"`seed` must be a non-negative int, but got 1.5"),
    ],
)
def test_bad_episode_arguments(no_training: None, kwargs: dict, match: str) -> None:
    task = fmd.tasks.Digits(steps=20, batch_size=16)
    with pytest.raises(ValueError, match=match):
        fmd.run_episode(task, {"lr": [0.1]}, **kwargs)


def test_bad_engine_options_are_refused_where_they_are_made() -> None:
    """The engine and its options are checked once, where they enter: their constructors."""
    engines = r"`engine` must be one of \('auto', 'forward', 'reverse', 'bptt', 'fds'\)"
    with pytest.raises(ValueError, match=engines + r", but got 'magic'"):
        EngineOptions("magic")
    with pytest.raises(
        ValueError, match=r"`chunk_size` must be a positive int or None, but got 0"
    ):
        ForwardOptions(chunk_size=0)
    with pytest.raises(ValueError, match=r"`discount` must be in \(0, 1\], but got 2"):
        EngineOptions(discount=2)


@pytest.mark.parametrize(
    "keyword", ["engine", "chunk_size", "checkpoint_every", "resume", "validate_every", "enigne"]
)
def test_an_old_or_misspelled_keyword_is_a_type_error(no_training: None, keyword: str) -> None:
    task = fmd.tasks.Digits(steps=20, batch_size=16)
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{keyword}'"):
        fmd.run_episode(task, {"lr": [0.1]}, **{keyword: None})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"steps": 0}, r"`steps` must be a positive int, but got 0"),
        ({"batch_size": -3}, r"`batch_size` must be a positive int, but got -3"),
        ({"val_fraction": 1.0}, r"`val_fraction` must lie in \(0, 1\), but got 1.0"),
        ({"dtype": torch.int64}, r"`dtype` must be a floating torch.dtype"),
        ({"optimizer": "rmsprop"}, r"`optimizer` must be one of 'sgd', 'adam', 'adamw'"),
        ({"hypers": {"beta1": 0.9}}, r"`hypers` names \['beta1'\], which optimizer='sgd'"),
        ({"grad_clip": 0.0}, r"`grad_clip` must be positive or None, but got 0.0"),
        ({"device": "tpu:x"}, r"`device` must name a torch device, but got 'tpu:x'"),
    ],
)
def test_bad_task_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fmd.tasks.Digits(**kwargs)


def test_batch_larger_than_training_split(no_training: None) -> None:
    task = fmd.tasks.Digits(steps=5, batch_size=5000)
    with pytest.raises(ValueError, match=r"`batch_size` must not exceed the training split"):
        fmd.run_episode(task, {"lr": [0.1]})


def test_same_seed_same_episode_bitwise_and_other_seed_differs() -> None:
    task = fmd.tasks.Digits(steps=25, batch_size=16)
    sched = {"lr": [0.1, 0.05], "momentum": [0.9, 0.8]}
    a = fmd.run_episode(task, sched, seed=3)
    b = fmd.run_episode(fmd.tasks.Digits(steps=25, batch_size=16), sched, seed=3)
    c = fmd.run_episode(task, sched, seed=4)
    assert a.val_loss == b.val_loss and a.hypergradient == b.hypergradient
    assert a.val_loss != c.val_loss
    assert a.seconds > 0 and a.seed == 3


def test_fixed_hypers_come_from_the_task() -> None:
    sched = {"lr": [0.1]}
    base = fmd.run_episode(fmd.tasks.Digits(steps=20, batch_size=16), sched, hypergradient=False)
    other = fmd.run_episode(
        fmd.tasks.Digits(steps=20, batch_size=16, hypers={"momentum": 0.0}),
        sched,
        hypergradient=False,
    )
    assert base.val_loss != other.val_loss


@pytest.mark.parametrize("engine", ["forward", "reverse"])
def test_resumed_episode_equals_the_uninterrupted_one_bitwise(engine: str) -> None:
    task = fmd.tasks.Digits(steps=12, batch_size=16)
    sched = {"lr": [0.1, 0.05], "momentum": [0.9, 0.8]}
    every_3 = ReverseOptions(checkpoint_every=3)
    options = EngineOptions(engine, reverse=every_3)
    whole = fmd.run_episode(task, sched, seed=2, options=options)
    saved: list[bytes] = []
    fmd.run_episode(
        task,
        sched,
        seed=2,
        options=options,
        snapshots=SnapshotOptions(every=4, on_snapshot=lambda s: saved.append(s.to_bytes())),
    )
    steps = [(s.step, s.phase) for s in map(fmd.engine.Snapshot.from_bytes, saved)]
    if engine == "forward":  # after steps 4 and 8 (12 is the end: nothing left to resume)
        assert steps == [(4, "forward"), (8, "forward")]
    else:  # at the first segment boundary (every 3 steps) at or after each multiple of 4
        assert steps == [
            (6, "forward"),
            (9, "forward"),
            (9, "backward"),
            (6, "backward"),
            (3, "backward"),
        ]
    for resume in (saved[-1], fmd.engine.Snapshot.from_bytes(saved[0])):
        # engine="auto" goes on with the snapshot's engine (it would pick reverse mode here)
        res = fmd.run_episode(
            task,
            sched,
            seed=2,
            options=EngineOptions(reverse=every_3),
            snapshots=SnapshotOptions(resume=resume),
        )
        assert (res.val_loss, res.val_accuracy, res.train_loss) == (
            whole.val_loss,
            whole.val_accuracy,
            whole.train_loss,
        )
        assert res.hypergradient == whole.hypergradient
        assert (res.steps, res.engine) == (whole.steps, engine)


def test_snapshot_of_another_episode_is_refused_before_training(no_step: None) -> None:
    task = fmd.tasks.Digits(steps=12, batch_size=16)
    snap = fmd.engine.Snapshot("forward", 4, [], float("nan"), 2, fingerprint="x")
    refused = {
        "forward": r"another run, whose task, schedules, seed.* \(its fingerprint is 'x'",
        "auto": r"it belongs to another run",  # goes on with the snapshot's engine
        "reverse": r"its engine is 'forward', but this run's is 'reverse'",
        "bptt": r"snapshots need engine 'forward' or 'reverse' \(or no hypergradient\)",
    }
    for engine, match in refused.items():
        with pytest.raises(ValueError, match=match):
            fmd.run_episode(
                task,
                {"lr": [0.1, 0.05]},
                options=EngineOptions(engine),
                snapshots=SnapshotOptions(resume=snap),
            )
    with pytest.raises(ValueError, match=r"`every` and `on_snapshot` must be given"):
        SnapshotOptions(every=5)
    with pytest.raises(ValueError, match=r"`every` must be a positive int or None"):
        SnapshotOptions(every=0, on_snapshot=print)
    with pytest.raises(TypeError, match=r"`resume` must be a Snapshot, its bytes or None"):
        SnapshotOptions(resume="x")  # type: ignore[arg-type]


def test_intermediate_validation_reports_and_stops_without_changing_the_trajectory() -> None:
    task = fmd.tasks.Digits(steps=60, batch_size=32)
    sched = {"lr": [0.1, 0.05]}
    plain = fmd.run_episode(task, sched, hypergradient=False)
    seen: list[tuple[int, float]] = []
    watched = fmd.run_episode(
        task,
        sched,
        hypergradient=False,
        options=EngineOptions(
            plain=PlainOptions(validate_every=20, on_validation=lambda t, v: seen.append((t, v)))
        ),
    )
    assert watched.val_loss == plain.val_loss  # bitwise: evaluation consumes no randomness
    assert [t for t, _ in seen] == [20, 40]
    assert seen[0][1] > seen[1][1] > plain.val_loss  # the loss falls as training goes on

    class Stop(Exception):
        pass

    def stop(t: int, v: float) -> None:
        raise Stop(t)

    with pytest.raises(Stop, match="20"):
        fmd.run_episode(
            task,
            sched,
            hypergradient=False,
            options=EngineOptions(plain=PlainOptions(validate_every=20, on_validation=stop)),
        )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"validate_every": 0, "on_validation": print}, r"`validate_every` must be a positive"),
        ({"validate_every": 5}, r"must be given together"),
        ({"validate_every": 5, "on_validation": print, "hypergradient": True}, r"plain training"),
    ],
)
def test_bad_validation_arguments_are_refused_before_training(
    no_training: None, kwargs: dict[str, object], match: str
) -> None:
    hypergradient = bool(kwargs.pop("hypergradient", False))
    with pytest.raises(ValueError, match=match):
        fmd.run_episode(
            fmd.tasks.Digits(steps=20),
            {"lr": [0.1]},
            hypergradient=hypergradient,
            options=EngineOptions(plain=PlainOptions(**kwargs)),  # type: ignore[arg-type]
        )
