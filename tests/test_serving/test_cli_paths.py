"""Paths given to the CLI that cannot be used: one line naming the path, exit 2, at once."""

from __future__ import annotations

import pytest

from tests.test_serving.conftest import run_cli


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "{decl}", "--report", "{file}"),
        ("features", "build", "--declarations", "{decl}", "--out", "{file}"),
        ("generate", "--parcels", "10", "--days", "1", "--start", "2026-01-01", "--out", "{file}"),
    ],
)
def test_an_output_directory_that_is_a_file_is_refused_before_any_work(
    capsys, tmp_path, args
) -> None:
    occupied = tmp_path / "taken"
    occupied.write_text("x")
    decl = tmp_path / "missing.parquet"  # never read: the output is checked first
    code, _, err = run_cli(capsys, *(a.format(decl=decl, file=occupied) for a in args))
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: {args[-2]} {occupied}: is a file, not a directory; give a directory "
        "(made if missing)"
    ]
    assert occupied.read_text() == "x"


def test_an_os_error_on_a_given_path_is_one_line(capsys, tmp_path, monkeypatch) -> None:
    """Whatever command meets it: a path the system refuses is named with the system's reason."""

    def refused(**kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr("features.synthetic.generate_to_dir", refused)
    code, _, err = run_cli(
        capsys, "generate", "--parcels", "10", "--days", "1", "--start", "2026-01-01",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"error: {tmp_path / 'locked'}: Permission denied"


def test_an_os_error_without_a_path_keeps_its_traceback(capsys, tmp_path, monkeypatch) -> None:
    """Not about a path the user gave: a fault of the program, shown as one."""

    def broken(**kwargs):
        raise OSError("socket went away")

    monkeypatch.setattr("features.synthetic.generate_to_dir", broken)
    with pytest.raises(OSError, match="socket went away"):
        run_cli(
            capsys, "generate", "--parcels", "10", "--days", "1", "--start", "2026-01-01",
            "--out", str(tmp_path / "out"),
        )  # fmt: skip


def test_score_refuses_to_write_over_its_own_input(capsys, tmp_path) -> None:
    decl = tmp_path / "decl.parquet"
    decl.write_bytes(b"PAR1 not really")
    code, _, err = run_cli(
        capsys, "score", str(decl), "--out", str(tmp_path / "." / "decl.parquet")
    )
    assert code == 2
    assert "is the declarations file itself" in err and len(err.strip().splitlines()) == 1
    assert decl.read_bytes() == b"PAR1 not really"


def test_score_refuses_an_output_directory_that_is_not_there_before_scoring(
    capsys, tmp_path
) -> None:
    """It was found after the decisions were scored and stored (--audit-db)."""
    decl = tmp_path / "decl.parquet"
    decl.write_bytes(b"not read")
    out = tmp_path / "nowhere" / "s.parquet"
    code, _, err = run_cli(capsys, "score", str(decl), "--out", str(out), "--audit-db", "x.db")
    assert code == 2 and err.strip() == (
        f"error: --out {out}: directory {out.parent} does not exist"
    )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--port", "99999"), "Invalid value for '--port'"),
        (("--port", "-1"), "Invalid value for '--port'"),
        (("--host", "256.1.1.1"), "--host '256.1.1.1' is not an address"),
    ],
)
def test_serve_refuses_a_port_or_host_it_cannot_bind_in_one_line(capsys, args, says) -> None:
    code, _, err = run_cli(capsys, "serve", *args)
    assert code == 2, err
    assert says in err and "Traceback" not in err


def test_a_file_written_over_a_directory_names_the_directory_not_a_temp_file(tmp_path) -> None:
    from features.errors import ParcelriskError
    from features.intake.io import atomic_write

    (tmp_path / "taken").mkdir()
    with pytest.raises(ParcelriskError, match=r"taken is a directory: give a file name"):
        atomic_write(tmp_path / "taken", lambda tmp: tmp.write_text("x"))
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary file left


def test_history_export_refuses_a_name_that_is_not_parquet(capsys, tmp_path) -> None:
    db = tmp_path / "audit.db"
    db.write_bytes(b"")
    code, _, err = run_cli(capsys, "history", "export", "--db", str(db), "--out", "h.csv")
    assert code == 2 and "h.parquet" in err and not (tmp_path / "h.csv").exists()
