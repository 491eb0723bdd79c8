"""The measurement table reader: bad input names the line and the column; missing values are NE."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from abscopal.criteria import CRITERIA, ResponseCategory
from abscopal.errors import IngestError
from abscopal.io.table import read_table

if TYPE_CHECKING:
    from pathlib import Path

HEADER = "patient_id,lesion_id,date,organ,kind,diameter_long_mm,sulpeak,liver_sul_mean,liver_sul_sd,status\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_reads_exact_decimals_and_groups_patients(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "P1,L1,2024-01-08,liver,soft_tissue,40.1,,,,\n"
        "P2,L1,2024-01-08,lung,soft_tissue,30,,,,\n"
        "P1,L1,2024-03-04,liver,soft_tissue,,,,,absent\n",
    )
    series = read_table(path)
    assert [s.patient_id for s in series] == ["P1", "P2"]
    assert series[0].readings[0].diameter_long_mm == Decimal("40.1")
    assert not series[0].readings[1].present


@pytest.mark.parametrize(
    ("body", "header", "match"),
    [
        ("P1,L1,2024-01-08\n", "patient_id,lesion_id,date\n", r"line 1 .*missing column\(s\) kind"),
        ("", HEADER.replace("organ", "orgen"), r"unknown column\(s\) orgen"),
        (
            "P1,L1,2024-13-40,liver,soft_tissue,10,,,,\n",
            HEADER,
            r"line 2, column 'date'.*YYYY-MM-DD",
        ),
        (
            "P1,L1,2024-01-08,liver,soft_tissue,-3,,,,\n",
            HEADER,
            r"line 2, column 'diameter_long_mm'.*>= 0",
        ),
        ("P1,L1,2024-01-08,liver,bone,10,,,,\n", HEADER, r"line 2, column 'kind'.*lytic"),
        (
            "P1,L1,2024-01-08,liver,soft_tissue,ten,,,,\n",
            HEADER,
            r"column 'diameter_long_mm': expected a number",
        ),
        (
            "P1,L1,2024-01-08,liver,soft_tissue,10,,,,\nP1,L1,2024-01-08,liver,soft_tissue,11,,,,\n",
            HEADER,
            r"line 3, column 'lesion_id'.*twice on 2024-01-08 \(also line 2\)",
        ),
        (
            "P1,L1,2024-01-08,liver,soft_tissue,10,4.0,,,\n",
            HEADER,
            r"line 2, column 'liver_sul_mean'",
        ),
        ("P1,,2024-01-08,liver,soft_tissue,10,,,,\n", HEADER, r"line 2, column 'lesion_id'.*empty"),
    ],
)
def test_bad_table_names_line_and_column(
    tmp_path: Path, body: str, header: str, match: str
) -> None:
    with pytest.raises(IngestError, match=match):
        read_table(write(tmp_path, body, header))


def test_missing_measurement_is_ne_with_reason_not_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "P1,L1,2024-01-08,liver,soft_tissue,30,,,,\nP1,L1,2024-03-04,liver,soft_tissue,,,,,\n",
    )
    [series] = read_table(path)
    for key, criterion in CRITERIA.items():
        result = criterion.assess(series)
        for a in (*result.timepoints, result.best_response):
            assert a.category is not ResponseCategory.NE or a.ne_reason, key
    [tp] = CRITERIA["recist11"].assess(series).timepoints
    assert tp.category is ResponseCategory.NE
    assert tp.ne_reason == "missing_target"


def test_baseline_flag_and_blood_pool_reference(tmp_path: Path) -> None:
    header = "patient_id,lesion_id,date,kind,sulpeak,blood_sul_mean,blood_sul_sd,baseline\n"
    body = (
        "P1,L1,2023-11-01,soft_tissue,9.0,1.5,0.2,\n"
        "P1,L1,2024-01-10,soft_tissue,8.0,1.5,0.2,true\n"
        "P1,L1,2024-03-06,soft_tissue,5.0,1.5,0.2,\n"
    )
    [series] = read_table(write(tmp_path, body, header))
    result = CRITERIA["percist"].assess(series)
    assert [a.category for a in result.timepoints] == [ResponseCategory.PMR]
    assert result.timepoints[0].baseline_value == Decimal("8.0")
