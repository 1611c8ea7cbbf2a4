"""The profile table: one row per measurement (or per aggregate of ``count`` measurements).

Every reader produces this table, so validation and aggregation do not care where the numbers
came from. Columns: ``service``, ``cpu_type`` (nullable integer), ``execution_time_ms``, ``count``
(measurements the row stands for) and ``source`` (``file:line`` or ``file#trace/span``, shown in
error reports). Used by the readers, :mod:`flows.profiles.checks` and :mod:`flows.profiles.dataset`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("service", "cpu_type", "execution_time_ms", "count", "source")
REQUIRED_COLUMNS = ("service", "cpu_type", "execution_time_ms")


def make_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a profile table with the canonical columns and dtypes from row dicts."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    return normalise(frame)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes: string service, nullable Int64 CPU type, float times, int counts."""
    import pandas as pd

    out = frame.loc[:, list(COLUMNS)].copy()
    out["service"] = out["service"].astype("string")
    out["cpu_type"] = pd.array(out["cpu_type"], dtype="Int64")
    out["execution_time_ms"] = pd.to_numeric(out["execution_time_ms"]).astype("float64")
    out["count"] = pd.to_numeric(out["count"]).astype("float64")
    out["source"] = out["source"].astype("string")
    return out.reset_index(drop=True)


def concat(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Combine several profile tables (several files) into one."""
    import pandas as pd

    parts = [t for t in tables if len(t)]
    if not parts:
        return make_table([])
    return normalise(pd.concat(parts, ignore_index=True))


def _weighted_quantile(values: pd.Series, weights: pd.Series, q: float) -> float:
    """Inverted-CDF quantile where each row counts ``weight`` times (exact for one row per sample)."""
    import numpy as np

    order = np.argsort(values.to_numpy(), kind="stable")
    sorted_values = values.to_numpy()[order]
    cumulative = np.cumsum(weights.to_numpy()[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
    return float(sorted_values[min(index, len(sorted_values) - 1)])


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (service, CPU type): ``n`` (samples, counts summed), ``mean_ms`` (count-weighted), ``p50_ms``, ``p95_ms``."""
    import pandas as pd

    usable = frame.dropna(subset=["service", "cpu_type", "execution_time_ms", "count"])
    usable = usable[usable["count"] > 0]
    records = []
    for (service, cpu_type), cell in usable.groupby(["service", "cpu_type"], sort=True):
        weights = cell["count"]
        records.append(
            {
                "service": service,
                "cpu_type": int(cpu_type),
                "n": int(weights.sum()),
                "mean_ms": float((cell["execution_time_ms"] * weights).sum() / weights.sum()),
                "p50_ms": _weighted_quantile(cell["execution_time_ms"], weights, 0.50),
                "p95_ms": _weighted_quantile(cell["execution_time_ms"], weights, 0.95),
            }
        )
    return pd.DataFrame(records, columns=["service", "cpu_type", "n", "mean_ms", "p50_ms", "p95_ms"])
