"""Notebooks are stored without outputs: check them (``make lint``) or strip them (``--strip``).

Outputs hold data, images and timings that change on every run: kept in git they bloat the
history, hide the code change in review and can carry data out of the sandbox. The test suite
executes every notebook (``tests/test_notebooks.py``), so stored outputs would prove nothing.

    python scripts/check_notebooks.py            # exit 1 naming each notebook and cell at fault
    python scripts/check_notebooks.py --strip    # clear outputs and execution counts in place
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_problems(path: Path) -> list[str]:
    """What keeps ``path`` from being stored: invalid nbformat, outputs, execution counts."""
    import nbformat

    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except Exception as exc:  # nbformat raises JSON, schema and reader errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [f"{path}: not a valid notebook: {first}"]
    problems = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{path}: cell {number} holds {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"{path}: cell {number} has an execution count")
    return problems


def strip_notebook(path: Path) -> bool:
    """Clear outputs and execution counts in place; True if the file changed."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(notebook, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/)")
    parser.add_argument("--strip", action="store_true", help="clear outputs in place")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.strip:
        for path in paths:
            if strip_notebook(path):
                print(f"stripped {path}")
        return 0
    problems = [p for path in paths for p in notebook_problems(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("store notebooks without outputs: make strip-notebooks", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
