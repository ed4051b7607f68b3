"""Stage 1: search a baseline around the deployment network (MnasNet-style reward), or take it as it is.

Candidates are sampled at deployment scale (:func:`scaling_search.search.space.suggest_spec`), costed there,
and trained through the study's proxy. The reward is ``acc * (cost / target) ** w`` with w = -0.07 (paper
Section 4), cost and target in deployment MACs (or predicted deployment latency).

Stage 1 is sequential by design: TPE's next sample depends on every earlier result, so a second worker could only
sample without them and the baseline would depend on timing. Any number of processes may run it; one trains at
a time (the others wait), and each trial is sampled by a TPE seeded from the study's seed and the count of trials
before it (:func:`sampler_seed`: two study seeds never share a trial's draws). A run
killed at any moment and started again therefore samples and trains exactly what an uninterrupted run does: a
killed or interrupted trial fails (:mod:`scaling_search.search.trial_claims`) and is not counted, so the next
trial is sampled from the same seed and the same history, which gives it the same params again. (It is not
re-enqueued: a trial killed while suggesting holds only part of its params, and a retry would sample the rest
from another state.) A trial whose training diverged (a non-finite loss) is a result, not an interruption: it
counts, so the next trial samples another network instead of the same one again.

With ``screen > 0`` the trials do not sample: :mod:`scaling_search.search.screen` scores many candidates untrained
first, and trial k trains the k-th best-scored one (its params fixed through Optuna's PartialFixedSampler).

With ``baseline = "challenge"`` the deployment network is the incumbent: trial 0 trains it (its params fixed the
same way), and a searched candidate replaces it only when its reward is higher at 95% (the difference of the two
rewards against its noise, :mod:`scaling_search.search.ties`' rule) twice: among stage 1's one-seed trials, and
then at the decision ladder's top rung, where both are trained again (stage ``baseline-confirm-...``, a work queue
like the rungs': resumable and shared by workers). Cheap evidence only eliminates, as on the ladder: a few
one-seed trials cannot tell networks apart that differ by a point or two (their seed spread is not measured), and
taking their argmax would make the baseline, and so every grid point after it, follow the seed. ``"search"``
takes the best reward whatever its margin.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaling_search.network.cost import count_cost
from scaling_search.errors import NonFiniteLossError, UserError
from scaling_search.search.candidate import Candidate, measure
from scaling_search.search.confidence import Z95, accuracy_variance
from scaling_search.search.context import StudyContext
from scaling_search.settings.study import StudyConfig
from scaling_search.search import screen as screening
from scaling_search.search.queue import Progress, outcome
from scaling_search.search.storage import is_done, running_elsewhere
from scaling_search.search.trial_claims import with_heartbeat
from scaling_search.search.space import incumbent_params, reward, suggest_spec
from scaling_search.network.spec import NetworkSpec


class YieldedTrial(Exception):
    """A stage-1 trial that found another process's trial running, begun first: it fails before sampling."""


def cost_function(config: StudyConfig) -> Callable[[NetworkSpec], float]:
    """The cost the reward and the budget use: deployment MACs, or latency predicted by the device's table."""
    if config.search.cost == "latency":
        from scaling_search.latency import LatencyTable

        return LatencyTable.open(config.search.latency_device, 1, runtime=config.search.latency_runtime).predict
    return lambda spec: float(count_cost(spec).macs)


def sampler_seed(seed: int, history: int) -> int:
    """The TPE seed of the stage-1 trial that follows ``history`` counted trials of a study seeded ``seed``: both
    mixed by NumPy's ``SeedSequence``, so study seeds s and s + 1 do not draw alike one trial apart (as ``seed +
    history`` did: seed s's trial 1 sampled what seed s + 1's trial 0 sampled)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, history]).generate_state(1)[0])


def run_baseline(ctx: StudyContext) -> tuple[NetworkSpec, dict[str, Any]]:
    """Stage 1: the deployment-scale baseline with the best reward (or the deployment network itself), and its
    evidence."""
    config, network, transform, data = ctx.config, ctx.network, ctx.transform, ctx.proxy_data(ctx.network)
    if config.search.baseline == "network":
        return network, {"source": f"the deployment network ({config.deployment.network}) as given",
                         "macs": count_cost(network).macs, "blocks": network.num_blocks,
                         "resolution": network.resolution}
    storage = ctx.store.storage
    study, _ = ctx.store.open_stage("baseline", metric="reward", seeded=False)  # one seed per trial, always
    cost_of = cost_function(config)
    latency = config.search.cost == "latency"
    target = (config.search.target_latency_ms if latency else config.search.target_macs) or cost_of(network)
    study.set_user_attr("target", target)
    study.set_user_attr("cost", config.search.cost)
    screened = None
    if config.search.screen:  # the band is in deployment MACs whatever the reward's cost (no latency per sample)
        screened = screening.stored_or_run(
            study, network, transform, data, count=config.search.screen, band=config.search.screen_band,
            batch=config.search.screen_batch, seed=config.search.seed,
            target_macs=float(config.search.target_macs or count_cost(network).macs), progress=ctx.progress)
        if not screened["rows"]:
            raise UserError(f"stage 1's screen kept none of its {config.search.screen} candidates: none lies within "
                            f"{config.search.screen_band:.0%} of the target's deployment MACs; raise screen or "
                            "screen_band in the preset")

    total = config.search.trials
    incumbent = check_incumbent(config, network)

    def objective(trial: optuna.Trial) -> float:
        trials = study.get_trials(deepcopy=False)
        earlier = [t.number for t in trials if t.state == TrialState.RUNNING and t.number < trial.number]
        if earlier:  # another process started a trial at the same moment: one trains at a time
            trial.set_user_attr("yielded_to", earlier[0])
            raise YieldedTrial(f"stage 1 trains one trial at a time; trial {earlier[0]} started first")
        if sum(is_done(t) for t in trials) >= total:  # the earlier one finished the stage after this loop looked
            trial.set_user_attr("yielded_to", "complete")
            raise YieldedTrial(f"stage 1 already has its {total} trials")
        candidate = Candidate.of(suggest_spec(trial, network), transform)
        if incumbent is not None and candidate.deployment == network:
            trial.set_user_attr("incumbent", True)
        cost = cost_of(candidate.deployment)
        if latency:
            trial.set_user_attr("latency_ms", cost)
        measured = measure(trial, candidate, ctx.proxy_data(candidate.deployment), config.train, 1, ctx.trainer,
                           lambda acc: reward(acc, cost, target, config.search.reward_exponent))
        return reward(measured.mean, cost, target, config.search.reward_exponent)

    def describe(trial: FrozenTrial) -> str:
        attrs = trial.user_attrs
        reward_text = f"reward {trial.value:.4f} " if trial.value is not None else ""
        return f"{reward_text}{outcome(trial)}, {attrs.get('macs', 0) / 1e6:,.1f}M deployment MACs"

    done = sum(is_done(t) for t in study.get_trials(deepcopy=False))
    bar = Progress("baseline", total, min(done, total), ctx.progress, describe)
    try:
        while True:
            trials = study.get_trials(deepcopy=False)
            if sum(is_done(t) for t in trials) >= total:
                break
            if running_elsewhere(study, storage, config.search.grace_s, retry_failed=False):
                time.sleep(config.search.heartbeat_s)  # one process trains at a time
                continue
            # Reseeding from the history makes a resumed study sample exactly what an uninterrupted one would:
            # failed trials (killed, interrupted or yielded) do not count, and TPE ignores them too.
            history = sum(counts(t) for t in study.get_trials(deepcopy=False))
            study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(config.search.seed, history),
                                                       n_startup_trials=max(2, total // 2))
            screened_index = history - (incumbent is not None)
            if incumbent is not None and history == 0:
                study.sampler = fixed_sampler(incumbent, study.sampler)
            elif screened is not None and screened_index < len(screened["rows"]):
                study.sampler = fixed_sampler(screened["rows"][screened_index]["params"], study.sampler)
            study.optimize(with_heartbeat(objective, config.search.heartbeat_s), n_trials=1,
                           catch=(NonFiniteLossError, YieldedTrial), callbacks=[bar])
    finally:
        bar.close()
    completed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not completed:
        raise UserError(f"stage 1 of study {config.name!r} has no completed trial (all pruned or failed)")
    best, challenge = choose_baseline(completed) if incumbent is not None else (best_reward(completed), None)
    if challenge is not None and not challenge["kept"] and challenge["incumbent"] is not None \
            and config.search.rungs:
        trials = {t.number: t for t in completed}
        best, challenge = confirm_challenge(ctx, trials[challenge["incumbent"]], best, challenge)
    baseline = NetworkSpec.from_dict(best.user_attrs["spec"])
    info = {"source": "stage 1 search", "trial": best.number, "reward": best.value,
            "accuracy": best.user_attrs["accuracy"], "macs": best.user_attrs["macs"],
            "proxy_macs": best.user_attrs["proxy_macs"], "cost": config.search.cost, "target": target,
            "blocks": baseline.num_blocks, "resolution": baseline.resolution}
    if challenge is not None:
        info["challenge"] = challenge
    if screened is not None:
        info["screen"] = screening.summary(screened, total - (incumbent is not None))
    return baseline, info


def check_incumbent(config: StudyConfig, network: NetworkSpec) -> dict[str, Any] | None:
    """The params of stage 1's incumbent trial (the deployment network) with ``baseline = "challenge"``, None
    otherwise; a network the search space cannot express is refused."""
    if config.search.baseline != "challenge":
        return None
    params = incumbent_params(network)
    if params is None:
        raise UserError(f"stage 1 cannot defend the deployment network {config.deployment.network} against its "
                        "candidates: it lies outside the search space (kernels 3/5, expand ratios 1/4/6, SE 0/0.25); "
                        "use --baseline search (stage 1's best reward) or --baseline NETWORK")
    return params


def best_reward(trials: list[FrozenTrial]) -> FrozenTrial:
    """The completed trial of the highest reward (the earliest among equals)."""
    return max(trials, key=lambda t: (t.value, -t.number))


def cost_factor(trial: FrozenTrial) -> float:
    """A stage-1 trial's reward over its accuracy: ``(cost / target) ** w``, exact (0 for a zero accuracy)."""
    accuracy = trial.user_attrs["accuracy"]
    return trial.value / accuracy if accuracy else 0.0


def reward_variance(attrs: dict[str, Any], factor: float) -> float:
    """The variance of a reward ``accuracy * factor`` from the accuracy's noise (validation sampling, and the seed
    spread where several seeds trained it), scaled by the exact cost factor squared; 0 where the trial recorded
    neither its validation size nor a spread."""
    seeds = len(attrs.get("accuracy_per_seed") or [None])
    variance = accuracy_variance(attrs["accuracy"], attrs.get("val_images"), attrs.get("accuracy_std"), seeds)
    return (variance or 0.0) * factor ** 2


def choose_baseline(trials: list[FrozenTrial]) -> tuple[FrozenTrial, dict[str, Any]]:
    """The incumbent (the deployment network) unless the best searched trial's reward is higher at 95%, and the
    comparison that decided it (``kept``, the best challenger's trial and reward, the margin it needed)."""
    best = best_reward(trials)
    incumbent = next((t for t in trials if t.user_attrs.get("incumbent")), None)
    if incumbent is None:  # the deployment network's training diverged: nothing to defend
        return best, {"kept": False, "incumbent": None, "why": "the deployment network has no completed trial"}
    if best.number == incumbent.number:
        return incumbent, {"kept": True, "incumbent": incumbent.number, "challenger": None,
                           "why": "no searched candidate has a higher reward"}
    margin = Z95 * math.sqrt(sum(reward_variance(t.user_attrs, cost_factor(t)) for t in (best, incumbent)))
    record = {"incumbent": incumbent.number, "incumbent_reward": incumbent.value, "challenger": best.number,
              "challenger_reward": best.value, "margin": margin}
    if best.value - incumbent.value > margin:
        return best, {**record, "kept": False, "why": "its reward is higher than the deployment network's at 95%"}
    return incumbent, {**record, "kept": True,
                       "why": "no searched candidate's reward is higher than the deployment network's at 95%"}


def confirm_challenge(ctx: StudyContext, incumbent: FrozenTrial, challenger: FrozenTrial,
                      challenge: dict[str, Any]) -> tuple[FrozenTrial, dict[str, Any]]:
    """Train the incumbent and the challenger that beat it again at the ladder's top rung (its epochs, proxy and
    seeds) and keep the incumbent unless the challenger's reward is higher at 95% there too."""
    from scaling_search.search.ladder import rung_context
    from scaling_search.search.queue import point, prepare_points, train_stage
    from scaling_search.search.workers import with_workers
    from scaling_search.settings.ladder import regime_stage

    top = len(ctx.config.search.rungs)
    rung_ctx = rung_context(ctx, top)
    config = rung_ctx.config
    stage = f"baseline-{regime_stage('confirm', config)}-s{config.search.repeats}"
    entries = [point(Candidate.of(NetworkSpec.from_dict(trial.user_attrs["spec"]), rung_ctx.transform),
                     {"stage1_trial": trial.number, "role": role}, {"stage1_trial": trial.number})
               for trial, role in ((incumbent, "incumbent"), (challenger, "challenger"))]
    prepare_points(rung_ctx, stage, entries, {"stage1_trials": [incumbent.number, challenger.number]})
    study = with_workers(rung_ctx, partial(train_stage, stage, "baseline confirm", describe_confirmation))
    # a training that diverged (no accuracy) scores a reward of 0: it cannot win, nor defend
    rows = {t.user_attrs["stage1_trial"]: t.user_attrs for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE}
    rewards, variances = {}, {}
    for trial in (incumbent, challenger):
        row, factor = rows.get(trial.number, {"accuracy": 0.0}), cost_factor(trial)
        rewards[trial.number] = row["accuracy"] * factor
        variances[trial.number] = reward_variance(row, factor)
    margin = Z95 * math.sqrt(variances[incumbent.number] + variances[challenger.number])
    ahead = rewards[challenger.number] - rewards[incumbent.number] > margin
    at_top = {"stage": stage, "regime": ctx.config.search.rungs[-1].describe(ctx.config),
              "incumbent_reward": rewards[incumbent.number], "challenger_reward": rewards[challenger.number],
              "margin": margin}
    if ahead:
        return challenger, {**challenge, "confirmed": at_top,
                            "why": "its reward is higher than the deployment network's at 95% in stage 1 and again "
                                   "at the top rung"}
    return incumbent, {**challenge, "kept": True, "confirmed": at_top,
                       "why": "the best searched candidate beat the deployment network at 95% in stage 1 but not "
                              "at the top rung"}


def describe_confirmation(attrs: dict[str, Any]) -> str:
    """A confirmation trial's log line: ``stage 1 trial 2 (challenger)``."""
    return f"stage 1 trial {attrs['stage1_trial']} ({attrs['role']})"


def fixed_sampler(params: dict[str, Any], base: optuna.samplers.BaseSampler) -> optuna.samplers.BaseSampler:
    """Optuna's PartialFixedSampler with every stage-1 param fixed (its experimental-API warning silenced: the
    tests pin what this module relies on, that each suggested param takes its fixed value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.PartialFixedSampler(params, base)


def counts(trial: FrozenTrial) -> bool:
    """Whether a stage-1 trial is part of the history the next sample depends on: every trial but one that
    failed without a result (killed, interrupted, yielded); a diverged training (its ``error``) is a result."""
    return trial.state != TrialState.FAIL or "error" in trial.user_attrs


__all__ = ["YieldedTrial", "check_incumbent", "choose_baseline", "cost_function", "run_baseline", "sampler_seed"]
