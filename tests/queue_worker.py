"""One worker of a shared study, as a separate process (tests/test_workers.py): stage 1 and the grid with a slow
fake trainer, then the answer as one JSON line on stdout. Usage: python queue_worker.py STORAGE_URL OUTPUT_DIR"""

import json
import os
import sys
import time
from pathlib import Path

from scaling_search.network.budget import parse_budget
from scaling_search.network.cost import count_cost
from scaling_search.search import runner
from scaling_search.settings.study import load_study_config
from scaling_search.training import EpochMetrics, TrainResult

# long enough for a kill to land mid-trial (tests/test_workers.py looks every 0.05 s); tests that kill the worker
# elsewhere (tests/test_storage_kill.py: while it creates its storage) set QUEUE_WORKER_PAUSE_S=0
SECONDS_PER_TRAINING = float(os.environ.get("QUEUE_WORKER_PAUSE_S", "0.15"))


def slow_fake_trainer(spec, data, settings, on_epoch=None):
    """A known accuracy from the network's shape (as tests/test_search_runner.py's), after a pause."""
    time.sleep(SECONDS_PER_TRAINING)
    accuracy = 0.3 + spec.resolution / 1000 + spec.stages[-1].out_channels / 10_000 - spec.num_blocks / 1000
    if on_epoch is not None:
        on_epoch(1, EpochMetrics(1, 1.0, accuracy, accuracy, 0.1, 0.0))
    cost = count_cost(spec)
    return TrainResult(accuracy, accuracy, 1.0, 1, 0.01, 1000.0, cost.macs, cost.params, spec.resolution, "fake", 1)


def answer(url: str, output: Path) -> dict:
    """Run the study on ``url`` as a worker does: the grid's coefficients and stage 1's baseline."""
    overrides = {"search": {"baseline": "search", "trials": 4, "pruner": "none", "heartbeat_s": 1, "grace_s": 3}}
    config = load_study_config("smoke", overrides, "shared", url)
    result = runner.run(config, parse_budget("2x"), output=output, trainer=slow_fake_trainer, progress=False)
    return {"coefficients": list(result.grid.coefficients), "baseline": result.baseline.to_dict()}


def main() -> None:
    print(json.dumps(answer(sys.argv[1], Path(sys.argv[2]))))


if __name__ == "__main__":
    main()
