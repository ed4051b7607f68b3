"""A command's stages share their worker processes (scaling_search.search.pool): the second stage's job runs in
the process the first stage's worker ran in; a stage without a pool spawns and ends its own; a worker whose job
fails is replaced at the next stage."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from scaling_search.search import runner
from scaling_search.search.workers import kept_workers, with_workers
from scaling_search.settings.study import load_study_config


def _record_process(folder: str, fail_in_worker_of: int, ctx) -> None:
    """A stage's job: leave this process's id in ``folder``; raise in any process but ``fail_in_worker_of``'s
    parent when it is set (a worker's failed job)."""
    Path(folder).mkdir(exist_ok=True)
    (Path(folder) / str(os.getpid())).write_text("")
    if fail_in_worker_of and os.getpid() != fail_in_worker_of:
        raise RuntimeError("a worker's job failed")


def _stage(ctx, folder: Path, fail: bool = False) -> set[int]:
    """The ids of the processes other than this one that ran one stage's job."""
    with_workers(ctx, partial(_record_process, str(folder), os.getpid() if fail else 0))
    return {int(p.name) for p in folder.iterdir()} - {os.getpid()}


@pytest.mark.slow
def test_a_commands_stages_share_their_workers_and_a_failed_one_is_replaced(tmp_path):
    config = load_study_config("smoke", {"search": {"workers": 2}}, "pool", f"sqlite:///{tmp_path}/pool.db")
    ctx = runner.prepare(config, stores=False)
    with kept_workers(ctx) as kept:
        first, second = _stage(kept, tmp_path / "first"), _stage(kept, tmp_path / "second")
        assert len(first) == 1 and second == first  # one worker, kept between the stages
        pool = kept.pool
        assert pool is not None and [w.process.pid for w in pool.idle] == list(first)
        failed = _stage(kept, tmp_path / "failed", fail=True)
        assert failed == first and pool.idle == []  # its job raised: the worker ended and is not kept
        replaced = _stage(kept, tmp_path / "replaced")
        assert len(replaced) == 1 and replaced != first
        idle = list(pool.idle)
    assert pool.idle == [] and not any(w.alive for w in idle)  # ended with the block
    own = [_stage(ctx, tmp_path / f"own{i}") for i in range(2)]  # no pool: each stage spawns and ends its own
    assert len(own[0]) == len(own[1]) == 1 and own[0] != own[1]
