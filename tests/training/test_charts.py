"""Curves for the run page."""

from training.charts import HEIGHT, MAX_POINTS, WIDTH, curve


def test_a_curve_spans_the_box_from_first_to_last_step():
    c = curve([{"step": 1, "loss": 2.0}, {"step": 2}, {"step": 3, "loss": 1.0}], "loss", "Loss")
    assert c.points == f"0.0,0.0 {WIDTH:.1f},{HEIGHT:.1f}" and c.last == 1.0 and c.count == 2


def test_fixed_bounds_and_a_minimum_span_keep_noise_flat():
    accuracy = curve([{"step": 1, "a": 0.5}, {"step": 2, "a": 1.0}], "a", "Acc", low=0.0, high=1.0)
    assert accuracy.points.split()[0] == f"0.0,{HEIGHT / 2:.1f}"
    flat = curve([{"step": 1, "l": 2.0420}, {"step": 2, "l": 2.0421}], "l", "Loss")
    ys = [float(point.split(",")[1]) for point in flat.points.split()]
    assert abs(ys[0] - ys[1]) < 1 and flat.high - flat.low >= 0.1


def test_smoothing_and_thinning():
    history = [{"step": s, "loss": float(s % 2)} for s in range(1, 2001)]
    c = curve(history, "loss", "Loss", smoothing=0.9)
    assert c.count <= MAX_POINTS + 1 and 0.3 < c.last < 0.7


def test_no_values_no_curve():
    assert curve([{"step": 1}], "loss", "Loss").count == 0
