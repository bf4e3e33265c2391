"""The auditor pages download model artifacts under the worker's model root, which the worker
removes at shutdown (``ParcelRiskService._shut_down``): a stopped server leaves none of them
under /tmp, as it leaves no champion downloads."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from serving.auditor.pages import AuditorPages


def test_evidence_downloads_go_under_the_worker_model_root(tmp_path) -> None:
    service = SimpleNamespace(_model_root=tmp_path / "worker-1", _tracking_uri=None)
    pages = AuditorPages(lambda: service)
    cache = pages.evidence(service)
    assert tmp_path / "worker-1" / "auditor-evidence" in cache._root.parents
    assert cache._root.is_dir()


def test_outside_a_worker_they_go_to_a_temporary_directory() -> None:
    from serving.auditor.model_evidence import ModelEvidenceCache

    cache = ModelEvidenceCache(None)
    try:
        assert Path(tempfile.gettempdir()) in cache._root.parents
    finally:
        cache._root.rmdir()
