"""The value-error plot's axes fit the data: a few subnormal-magnitude cases do not stretch
the x axis to 1e-300 and squeeze every other point against the right edge."""
import re

from klconform.report import plots


def test_x_axis_fits_the_bulk_of_the_data():
    pts = [(10.0 ** (-3 + 3 * i / 99), 0.5, "float32") for i in range(100)] + [(1e-300, 0.5, "float64"), (0.0, 1.0, "float64")]
    svg = plots.scatter_panels("t", [("a", pts)], x_label="max |value|", y_label="err/bound")
    ticks = [int(t) for t in re.findall(r">1e(-?\d+)</text>", svg)]
    assert min(ticks) >= -4, ticks            # was 1e-300: the axis spanned 300 decades
    assert "2 ≤1e-3: left" in svg
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    # the bulk spreads over the panel, not into its right 2 %
    assert max(xs) - min(xs[:100]) > 200
