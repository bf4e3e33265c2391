"""The CLI's last line of defence: errors from the setup (MLflow, a full disk) end in one line
and exit 2, never a traceback; a fault of ours still shows its traceback."""

from __future__ import annotations

import errno

import pytest

import serving.main as main_module


def _run(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    def app() -> None:
        raise exc

    monkeypatch.setattr(main_module, "app", app)
    with pytest.raises(SystemExit) as exit_info:
        main_module.main()
    return int(exit_info.value.code), capsys.readouterr().err


def test_an_mlflow_error_is_one_line(monkeypatch, capsys) -> None:
    from mlflow.exceptions import MlflowException

    exc = MlflowException("Invalid clause(s) in filter string: OR, '\nmore detail")
    code, err = _run(monkeypatch, capsys, exc)
    assert code == 2
    assert err.strip() == (
        "error: the MLflow tracking store: Invalid clause(s) in filter string: OR, '"
    )


def test_a_full_disk_is_one_line(monkeypatch, capsys) -> None:
    code, err = _run(monkeypatch, capsys, OSError(errno.ENOSPC, "No space left on device"))
    assert code == 2 and err.strip().startswith("error: no space left on device")
    assert "Traceback" not in err


def test_a_fault_of_ours_keeps_its_traceback(monkeypatch) -> None:
    monkeypatch.setattr(main_module, "app", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main_module.main()


def test_a_model_name_that_breaks_registry_queries_is_refused(tmp_path) -> None:
    import yaml

    from features.errors import ParcelriskError
    from features.params import load_settings

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"promote": {"model_name": "risk'model"}}))
    with pytest.raises(ParcelriskError, match="is not a model name: letters, digits"):
        load_settings(path)
