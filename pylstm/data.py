"""Reading a univariate time series from a CSV file (for `pylstm forecast`, and for anyone's own series).

`read_series(path, column=None)` returns a `Series`: the times exactly as the file spells them (the first column),
the values as float64, the season when the times are dates of a regular frequency, and notes on what was repaired.
Every problem with the file is a `SeriesError` (a ValueError) whose one-line message names the file and the problem.
"""

from __future__ import annotations

import csv
import datetime as _dt
from dataclasses import dataclass, field

import numpy as np


class SeriesError(ValueError):
    """A CSV file that holds no usable series; the message says which file and what is wrong, on one line."""


@dataclass
class Series:
    name: str
    times: list  # the first column's strings, as read
    values: np.ndarray  # float64, no gaps (inner gaps interpolated)
    season: int | None  # 12 monthly, 4 quarterly, 52 weekly, 7 daily, 5 business days; else None
    notes: list = field(default_factory=list)  # what was repaired, one sentence each


_MISSING = {"", "na", "nan", "null", "none", "?", "-"}


def _number(text):
    t = text.strip()
    if t.lower() in _MISSING:
        return None
    return float(t)  # ValueError for anything else that is not a number


_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m", "%Y/%m/%d", "%Y/%m", "%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S", "%Y%m")


def _readings(times):
    """Every reading of the times as dates: one list per format that parses them all (day-first and month-first
    can both parse, "03/04/2000"); quarters ("1959Q1", "1959-Q1") count."""
    out = []
    for fmt in _DATE_FORMATS:
        try:
            out.append([_dt.datetime.strptime(t.strip(), fmt) for t in times])
        except ValueError:
            continue
    quarters = []
    for t in times:
        s = t.strip().upper().replace("-", "")
        if not (len(s) == 6 and s[4] == "Q" and s[:4].isdigit() and s[5] in "1234"):
            break
        quarters.append(_dt.datetime(int(s[:4]), 3 * int(s[5]) - 2, 1))
    else:
        out.append(quarters)
    return out


def _season_of(dates):
    """The season of increasing dates a regular distance apart (the median gap), else None. Daily dates that never
    fall on a Saturday or Sunday are business days: 5."""
    gaps = np.diff([d.toordinal() for d in dates])
    if len(gaps) == 0 or (gaps <= 0).any():
        return None
    g = float(np.median(gaps))
    if g == 1 and len(dates) >= 14 and all(d.weekday() < 5 for d in dates):
        return 5
    for lo, hi, season in ((1, 1, 7), (7, 7, 52), (28, 31, 12), (89, 92, 4)):
        if lo <= g <= hi:
            return season
    return None


def infer_season(times):
    """12 (monthly), 4 (quarterly), 52 (weekly), 7 (daily) or 5 (business days) when the times are dates that far
    apart (the median gap), else None. When the times read as dates in two ways (day-first and month-first) that
    give different seasons, None: the caller must say."""
    if len(times) <= 2:
        return None
    seasons = {_season_of(dates) for dates in _readings(times)} - {None}
    return seasons.pop() if len(seasons) == 1 else None


def read_series(path, column=None):
    """The series in `path`: a CSV file with a header row, times in the first column and the values in `column` (a
    header name; default: the second column). Inner missing values are filled by linear interpolation and counted in
    the notes; missing values at either end are trimmed, with a note."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except OSError as e:
        raise SeriesError(f"{name}: cannot be read ({e.strerror or e})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise SeriesError(f"{name}: is not a UTF-8 CSV file ({e})") from None
    if not rows:
        raise SeriesError(f"{name}: the file is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if len(header) < 2:
        raise SeriesError(f"{name}: needs a header row and at least two columns (the time, then the values)")
    if column is None:
        k = 1
    elif column in header[1:]:
        k = header.index(column, 1)
    else:
        raise SeriesError(f"{name}: no column {column!r}; the columns are {', '.join(header[1:])}")
    if not body:
        raise SeriesError(f"{name}: has a header row but no data")
    times, values = [], []
    for i, r in enumerate(body, start=2):
        if len(r) <= k:
            raise SeriesError(f"{name}: line {i} has {len(r)} fields, column {header[k]!r} needs {k + 1}")
        try:
            v = _number(r[k])
        except ValueError:
            raise SeriesError(f"{name}: line {i}: {r[k].strip()!r} in column {header[k]!r} is not a number") from None
        if v is not None and not np.isfinite(v):
            raise SeriesError(f"{name}: line {i}: {r[k].strip()!r} in column {header[k]!r} is not a finite number")
        times.append(r[0])
        values.append(np.nan if v is None else v)
    return _repaired(name, header[k], times, values)


def _repaired(where, column, times, values, season=None):
    """The Series of (times, values with NaN for missing): gaps at either end trimmed, inner gaps interpolated, each
    repair noted; the season inferred from the times unless given."""
    y = np.array(values, dtype=np.float64)
    known = np.flatnonzero(~np.isnan(y))
    if known.size == 0:
        raise SeriesError(f"{where}: column {column!r} holds no numbers")
    notes = []
    first, last = int(known[0]), int(known[-1])
    if first > 0 or last < len(y) - 1:
        notes.append(f"trimmed {first} missing value(s) at the start and {len(y) - 1 - last} at the end")
        times, y = times[first:last + 1], y[first:last + 1]
    gaps = np.isnan(y)
    if gaps.any():
        idx = np.arange(len(y))
        y[gaps] = np.interp(idx[gaps], idx[~gaps], y[~gaps])
        notes.append(f"filled {int(gaps.sum())} missing value(s) inside the series by linear interpolation")
    return Series(name=column, times=list(times), values=y, season=season or infer_season(times), notes=notes)


# Real series shipped inside statsmodels (public domain; `pip install "pylstm[data]"`), read through its loaders:
# name -> (module, what it is, season when the times do not give one).
BUILTIN = {
    "co2": ("co2", "atmospheric CO2 at Mauna Loa, ppm, weekly 1958-2001 (statsmodels)", None),
    "elnino": ("elnino", "sea surface temperature off the Pacific coast of South America, deg C, monthly "
               "1950-2010 (statsmodels)", 12),
    "elec_equip": ("elec_equip", "euro-area turnover index of the manufacture of electrical equipment, monthly "
                   "1995-2016 (statsmodels)", None),
    "sunspots": ("sunspots", "yearly mean sunspot number, 1700-2008 (statsmodels; its season, 11, is the solar "
                 "cycle)", 11),
    "nile": ("nile", "yearly flow of the Nile at Aswan, 1871-1970 (statsmodels)", 1),
}


def builtin_series(name):
    """One of BUILTIN's series, through statsmodels' own loader. ImportError (with the install command) when
    statsmodels is missing."""
    if name not in BUILTIN:
        raise ValueError(f"name must be one of {', '.join(BUILTIN)}, got {name!r}")
    import importlib

    module, _, season = BUILTIN[name]
    try:
        d = importlib.import_module(f"statsmodels.datasets.{module}").load_pandas().data
    except ImportError:
        raise ImportError(f"the series {name!r} ships with statsmodels, which is not installed: "
                          f"pip install \"pylstm[data]\" (or give your own with --data FILE.csv)") from None
    if name == "elnino":  # one row per year, one column per month
        times = [f"{int(year)}-{m:02d}" for year in d["YEAR"] for m in range(1, 13)]
        values = d.iloc[:, 1:13].to_numpy(dtype=np.float64).ravel()
    elif name in ("sunspots", "nile"):
        times = [str(int(year)) for year in d.iloc[:, 0]]
        values = d.iloc[:, 1].to_numpy(dtype=np.float64)
    else:  # a date index, one column
        times = [t.strftime("%Y-%m-%d") for t in d.index]
        values = d.iloc[:, 0].to_numpy(dtype=np.float64)
    return _repaired(f"statsmodels' {module}", name, times, values, season)
