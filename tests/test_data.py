"""pylstm.data.read_series: a univariate series from a CSV file, with its repairs stated and every bad file a one-line
SeriesError (a ValueError) naming the file and the problem."""

import numpy as np
import pytest

from pylstm.data import SeriesError, infer_season, read_series


def _csv(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_monthly_series_reads_with_its_times_as_written_and_season_12(tmp_path):
    p = _csv(tmp_path, "month,value,other\n1959-01,315.42,1\n1959-02,316.31,2\n1959-03, 316.50 ,3\n1959-04,317.56,4\n")
    s = read_series(p)
    assert s.name == "value" and s.times == ["1959-01", "1959-02", "1959-03", "1959-04"]
    np.testing.assert_array_equal(s.values, [315.42, 316.31, 316.50, 317.56])
    assert s.season == 12 and s.notes == []
    assert read_series(p, column="other").values.tolist() == [1, 2, 3, 4]


def test_gaps_inside_are_interpolated_and_gaps_at_the_ends_trimmed_with_notes(tmp_path):
    p = _csv(tmp_path, "t,y\n1,\n2,NA\n3,1.0\n4,\n5,nan\n6,4.0\n7,\n")
    s = read_series(p)
    assert s.times == ["3", "4", "5", "6"]
    np.testing.assert_allclose(s.values, [1.0, 2.0, 3.0, 4.0])
    assert s.notes == ["trimmed 2 missing value(s) at the start and 1 at the end",
                       "filled 2 missing value(s) inside the series by linear interpolation"]
    assert s.season is None  # the times are not dates


@pytest.mark.parametrize("times,season", [
    (["1959Q1", "1959Q2", "1959Q3", "1959Q4", "1960Q1"], 4),
    (["2020-01-06", "2020-01-13", "2020-01-20", "2020-01-27"], 52),
    (["2020-01-01", "2020-01-02", "2020-01-03"], 7),
    (["1700", "1701", "1702"], None),
    (["a", "b", "c"], None),
    ([f"{m:02d}/15/2000" for m in range(1, 13)], 12),  # only month-first reads the 15th
    ([f"{m:02d}/01/2000" for m in range(1, 13)], None),  # month-first: monthly; day-first: daily. Ambiguous
    ([f"2024-01-{d:02d}" for d in range(1, 32) if d % 7 not in (6, 0)], 5),  # 2024-01-06 was a Saturday
], ids=["quarterly", "weekly", "daily", "yearly", "labels", "us-monthly", "ambiguous", "business-days"])
def test_the_season_is_inferred_from_dates(times, season):
    assert infer_season(times) == season


@pytest.mark.parametrize("text,message", [
    ("", "the file is empty"),
    ("t,y\n", "has a header row but no data"),
    ("t\n1\n2\n", "needs a header row and at least two columns"),
    ("t,y\n1,2\n2,x3\n", "line 3: 'x3' in column 'y' is not a number"),
    ("t,y\n1,2\n2,inf\n", "line 3: 'inf' in column 'y' is not a finite number"),
    ("t,y\n1,\n2,\n", "column 'y' holds no numbers"),
    ("t,y\n1\n", "line 2 has 1 fields, column 'y' needs 2"),
], ids=["empty", "header-only", "one-column", "not-a-number", "infinite", "all-missing", "short-row"])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    p = _csv(tmp_path, text)
    with pytest.raises(SeriesError, match=message) as e:
        read_series(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_an_unknown_column_or_a_missing_file_is_an_error(tmp_path):
    p = _csv(tmp_path, "t,a,b\n1,2,3\n")
    with pytest.raises(SeriesError, match="no column 'c'; the columns are a, b"):
        read_series(p, column="c")
    with pytest.raises(SeriesError, match="cannot be read"):
        read_series(tmp_path / "missing.csv")
