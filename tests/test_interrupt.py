"""A Ctrl-C never wedges the study's storage (scaling_search.search.interrupt)."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import warnings

import optuna
import pytest
import sqlalchemy

from scaling_search.search.interrupt import inside_storage_call, install_interrupt_handler


def test_a_frame_inside_sqlalchemy_is_a_storage_call_and_the_tests_own_is_not(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    seen: list[bool] = []
    sqlalchemy.event.listen(engine, "before_cursor_execute",
                            lambda *args: seen.append(inside_storage_call(sys._getframe())))
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("select 1"))
    assert seen == [True]
    assert not inside_storage_call(sys._getframe())


def _interrupt_writing_trials(path, tries: int, seed: int = 0) -> list[str]:
    """SIGINT at a random moment of a trial that alternates SQLite writes with work of its own (as a training
    trial reports epochs); what each try ended with."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 2}},
                                         heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(storage=storage, study_name="writes")
    draw = random.Random(seed)

    def objective(trial: optuna.Trial) -> float:
        for step in range(1_000_000):
            trial.set_user_attr(f"step{step % 20}", step)
            sum(range(20_000))  # about a millisecond of the trial's own work
        return 0.0

    outcomes = []
    for attempt in range(tries):
        timer = threading.Timer(draw.uniform(0.05, 0.25), os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            study.optimize(objective, n_trials=1)
            outcomes.append("finished")
        except KeyboardInterrupt:
            outcomes.append("interrupted")
        except Exception as error:  # a wedged storage: StorageInternalError, "Should not reach", ...
            outcomes.append(type(error).__name__)
        try:
            study.set_user_attr("after", attempt)  # the storage takes a write at once (2 s busy timeout)
        except Exception as error:
            outcomes[-1] += f", then {type(error).__name__}"
        timer.join()
    return outcomes


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_at_random_moments_of_storage_writes_always_leaves_a_working_storage(tmp_path):
    previous = install_interrupt_handler()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna flags heartbeats experimental
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            outcomes = _interrupt_writing_trials(tmp_path / "study.db", tries=15)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcomes == ["interrupted"] * 15
