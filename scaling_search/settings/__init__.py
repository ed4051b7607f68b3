"""Settings: the typed, validated, frozen tables of a preset or study file, and the presets themselves.

A study document has the tables ``[data]`` (:class:`DataSettings`), ``[deployment]`` (:class:`DeploymentSettings`),
``[proxy]`` (:class:`ProxySettings`), ``[train]`` (:class:`TrainSettings`) and ``[search]``
(:class:`SearchSettings`); :func:`load_study_config` reads one (a shipped preset of :mod:`.presets` or a TOML file,
then command-line overrides) into one frozen :class:`StudyConfig`. Nothing here imports torch or Optuna.
"""

from __future__ import annotations

from scaling_search.settings.presets import PRESETS, load_toml, preset_path
from scaling_search.settings.proxy import ProxySettings
from scaling_search.settings.study import (BASELINES, COSTS, PRUNERS, DeploymentSettings, SearchSettings, StudyConfig,
                                           check_study_name, default_storage, default_study_name, load_study_config, mask_credentials)
from scaling_search.settings.tables import DataSettings, section_from_table, sections_from_toml
from scaling_search.settings.train import OPTIMIZERS, TrainSettings

__all__ = ["BASELINES", "COSTS", "OPTIMIZERS", "PRESETS", "PRUNERS", "DataSettings", "DeploymentSettings",
           "ProxySettings", "SearchSettings", "StudyConfig", "TrainSettings", "check_study_name", "default_storage",
           "default_study_name", "load_study_config", "load_toml", "mask_credentials", "preset_path", "section_from_table",
           "sections_from_toml"]
