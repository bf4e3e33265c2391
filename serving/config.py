"""How ``parcelrisk serve`` hands its options to BentoML's worker processes.

BentoML starts the workers itself and imports ``serving.service`` in each, so the command's
options travel as environment variables:

- ``PARCELRISK_PARAMS``: the params.yaml the command read (default ``params.yaml``);
- ``PARCELRISK_WORKERS``: ``--workers``, when given (else ``serve.workers``);
- ``PARCELRISK_TRACKING_URI``: MLflow tracking URI of the registry (default: MLflow's own);
- ``PARCELRISK_MODEL_DIR``: where the champion bundle is materialised (default: a temp dir);
- ``PARCELRISK_AUDIT_DB``: ``--audit-db``; also an operator's override of ``serve.audit_db``
  (``features.params.ENV_OVERRIDES``);
- the API-key variables of ``serving.auth``.

Everything else comes from params.yaml, read by ``worker_settings`` once per process (and
again only if these variables change, as they do between test clients).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

from features.params import DEFAULT_PARAMS, ENV_OVERRIDES, Settings, load_settings

TRACKING_URI_ENV = "PARCELRISK_TRACKING_URI"
PARAMS_ENV = "PARCELRISK_PARAMS"
MODEL_DIR_ENV = "PARCELRISK_MODEL_DIR"
# where `parcelrisk serve` keeps its workers' metric files (default: a fresh directory)
METRICS_DIR_ENV = "PARCELRISK_METRICS_DIR"
AUDIT_DB_ENV = "PARCELRISK_AUDIT_DB"
WORKERS_ENV = "PARCELRISK_WORKERS"


def worker_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings a service process runs with: the command's params.yaml and ``--workers``."""
    environ = os.environ if environ is None else environ
    names = (PARAMS_ENV, WORKERS_ENV, *ENV_OVERRIDES)
    return _settings_for(tuple((name, environ.get(name) or "") for name in names))


@functools.lru_cache(maxsize=8)
def _settings_for(variables: tuple[tuple[str, str], ...]) -> Settings:
    environ = dict(variables)
    named = environ.get(PARAMS_ENV)
    path = Path(named) if named else DEFAULT_PARAMS
    settings = load_settings(path, environ, must_exist=bool(named))
    workers = environ.get(WORKERS_ENV)
    if workers:
        serve = settings.serve.replace(workers=workers)
        settings = settings.model_copy(update={"serve": serve})
    return settings
