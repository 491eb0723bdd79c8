"""`abscopal criteria TABLE.csv --json`: the DESIGN.md keys, a hand-written table, bad input."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from abscopal.cli.main import main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

README_TABLE = """\
patient_id,lesion_id,date,organ,kind,role,diameter_long_mm,diameter_short_mm,diameter_viable_mm,sulpeak,suvmax,hu_mean,bone_sign,liver_sul_mean,liver_sul_sd,status
P001,L1,2024-01-08,liver,soft_tissue,,40,,,,,,,,,
P001,N1,2024-01-08,mediastinum,nodal,,25,18,,,,,,,,
P001,B1,2024-01-08,spine,blastic,,22,,,,,,,,,
P001,L1,2024-03-04,liver,soft_tissue,,26,,,,,,,,,
P001,N1,2024-03-04,mediastinum,nodal,,15,9,,,,,,,,
P001,B1,2024-03-04,spine,blastic,,22,,,,,,sclerotic_rim,,,present
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    message = ""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        message = "" if isinstance(exc.code, int) or exc.code is None else f"{exc.code}\n"
    out, err = capsys.readouterr()
    return code, out, err + message


def test_readme_table_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "measurements.csv"
    table.write_text(README_TABLE, encoding="utf-8")
    code, out, _ = run(["criteria", str(table), "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    [patient] = result["patients"]
    assert {"patient_id", "timepoints", "best_response"} <= patient.keys()
    assert patient["timepoints"] == [
        {**patient["timepoints"][0], "date": "2024-03-04", "category": "PR"}
    ]
    assert patient["best_response"] == "PR"
    code, out, _ = run(["criteria", str(table), "--criteria", "mda", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["patients"][0]["timepoints"][0]["category"] == "PR"  # sclerotic rim


def test_subset_of_lesions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "measurements.csv"
    table.write_text(README_TABLE, encoding="utf-8")
    code, out, _ = run(["criteria", str(table), "--lesions", "B1", "--json"], capsys)
    assert code == 0
    patient = json.loads(out)["patients"][0]
    assert patient["timepoints"][0]["category"] == "NON_CR_NON_PD"


def test_bad_table_exits_non_zero_naming_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "bad.csv"
    table.write_text(README_TABLE.replace("2024-03-04,liver", "04/03/2024,liver"), encoding="utf-8")
    code, out, err = run(["criteria", str(table), "--json"], capsys)
    assert code == 1
    assert out == ""
    assert "line 5, column 'date'" in err


def test_unknown_criteria_name_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "measurements.csv"
    table.write_text(README_TABLE, encoding="utf-8")
    code, _, err = run(["criteria", str(table), "--criteria", "who"], capsys)
    assert code == 2
    assert "recist11" in err


def test_readme_table_example(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The table a new user copies from the README gives the PR the README promises."""
    import json
    import re
    from pathlib import Path

    from abscopal.cli.main import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```csv\n(.*?)```", readme, re.S)
    assert block is not None
    table = tmp_path / "measurements.csv"
    table.write_text(block.group(1))
    try:
        main(["criteria", str(table), "--json"])
    except SystemExit as exc:  # typer exits 0 after a command
        assert exc.code in (0, None)
    (patient,) = json.loads(capsys.readouterr().out)["patients"]
    assert patient["best_response"] == "PR"
    assert [t["category"] for t in patient["timepoints"]] == ["PR"]
