"""A study's stages in optuna-dashboard (the ``dashboard`` extra), served on this machine."""

from __future__ import annotations

from typing import Callable

from scaling_search.errors import UserError
from scaling_search.search.catalog import catalog
from scaling_search.search.storage import open_for_reading
from scaling_search.settings.study import mask_credentials


def stage_names(study: str, url: str) -> list[str]:
    """The stages ``<study>:<stage>`` stored in ``url`` (creates nothing); refuses a study with none."""
    stages = [stage.optuna_name for stage in catalog(url) if stage.study == study]
    if not stages:
        raise UserError(f"no study {study!r} in {mask_credentials(url)}; give its --storage or run it first")
    return stages


def serve(study: str, url: str, host: str, port: int, on_ready: Callable[[list[str]], None]) -> None:
    """Serve every stage of ``study`` until interrupted; ``on_ready(stages)`` is called before serving."""
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("the dashboard needs optuna-dashboard: pip install 'scaling-search[dashboard]'") from None
    stages = stage_names(study, url)
    on_ready(stages)
    try:
        optuna_dashboard.run_server(open_for_reading(url), host=host, port=port)
    except OSError as error:
        raise UserError(f"cannot serve on {host}:{port} ({error.strerror}); choose another --port") from None


__all__ = ["serve", "stage_names"]
