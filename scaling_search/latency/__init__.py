"""Latency: measured by one protocol (:mod:`.measure`), predicted from the spec by a lookup table
(:mod:`.table`), and scored the way the field scores predictors (:mod:`.score`)."""

from scaling_search.latency.measure import (RUNTIMES, Latency, check_runtime, describe_device, latency_dict,
                                            measure_latencies, measure_latency, prepare_runner, robust_ms,
                                            synchronizer, time_interleaved)
from scaling_search.latency.score import PredictorScore, score_predictor
from scaling_search.latency.table import (HELD_OUT_LIMIT, CacheFlush, Correction, HeldOut, LatencyTable,
                                          calibration_specs, fit_correction, fit_relative, held_out_check,
                                          network_parts, random_specs)

__all__ = ["HELD_OUT_LIMIT", "RUNTIMES", "CacheFlush", "Correction", "HeldOut", "Latency", "LatencyTable", "PredictorScore", "calibration_specs",
           "check_runtime", "describe_device", "fit_correction", "fit_relative", "held_out_check", "latency_dict", "measure_latencies",
           "measure_latency", "network_parts", "prepare_runner", "random_specs", "robust_ms", "score_predictor", "synchronizer",
           "time_interleaved"]
