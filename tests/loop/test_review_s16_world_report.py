"""Review s16: the bold line of the arms figure is the mean over *all* seeds, never over the ones that survived."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from flows.loop.report import seed_mean, write_arms_plot

# three seeds sampled about every second; seed 2 has no successful request from 3 s to 5 s (an outage)
RUNS = [
    [(0.0, 100.0), (1.1, 100.0), (2.0, 100.0), (3.0, 100.0), (4.0, 100.0), (5.0, 100.0), (6.0, 100.0)],
    [(0.0, 200.0), (0.9, 200.0), (2.1, 200.0), (3.0, 200.0), (4.1, 200.0), (5.0, 200.0), (6.0, 200.0)],
    [(0.0, 300.0), (1.0, 300.0), (2.0, 900.0), (6.0, 300.0)],
]


def _by_time(points: list[tuple[float, float]]) -> dict[float, float]:
    return dict(points)


def test_the_mean_is_over_every_seed_and_nan_where_one_has_no_sample() -> None:
    mean = _by_time(seed_mean(RUNS))
    assert sorted(mean) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert mean[0.0] == pytest.approx(200.0) and mean[1.0] == pytest.approx(200.0)
    assert mean[2.0] == pytest.approx(400.0)  # (100 + 200 + 900) / 3
    assert all(math.isnan(mean[t]) for t in (3.0, 4.0, 5.0))  # not 150: the survivors' mean would hide the outage
    assert mean[6.0] == pytest.approx(200.0)


def test_a_seed_between_two_close_samples_has_the_value_on_the_line_between_them() -> None:
    mean = _by_time(seed_mean([[(0.6, 10.0), (1.4, 30.0)], [(1.0, 40.0)]]))
    assert mean == {1.0: pytest.approx(30.0)}  # seed 1 at 1.0 s: 20 (on its line), seed 2: 40
    assert seed_mean([]) == []


def test_samples_that_miss_a_whole_second_do_not_break_the_mean() -> None:
    """Samples 1.2 s apart leave some 1-s bins empty; the seeds still serve there, so the mean is drawn."""
    steady = [[(0.3 + 1.2 * i, 100.0 + k) for i in range(10)] for k in (0.0, 50.0)]
    mean = seed_mean(steady)
    assert mean and all(v == pytest.approx(125.0) for _, v in mean)


def test_the_bold_line_drawn_is_that_mean_and_its_legend_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    drawn: list[tuple[list[float], list[float], dict[str, Any]]] = []
    plot = Axes.plot

    def recording(self: Axes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("linewidth") == 2:
            drawn.append((list(args[0]), list(args[1]), kwargs))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording)
    write_arms_plot({"learned": RUNS}, 2.5, tmp_path / "arms.png", "t", {"learned": RUNS})
    assert (tmp_path / "arms.png").exists()
    assert len(drawn) == 2  # latency above, failed share below
    xs, ys, kwargs = drawn[0]
    at = dict(zip(xs, ys, strict=True))
    assert at[2.0] == pytest.approx(400.0)
    assert all(math.isnan(at[t]) for t in (3.0, 4.0, 5.0))
    assert "all 3 seeds" in kwargs["label"]
