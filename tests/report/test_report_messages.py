"""Reports people act on: every count says what it counts (the corpus beside the results'
cases), the reproduction command names the side interpreter a NAME@ENV run used, and no
value prints as a numpy repr (np.float64(...))."""
import re

import numpy as np

from klconform import engine
from klconform.case import Case
from klconform.report.html import render_html
from klconform.report.markdown import render_markdown
from tests.report import doubles


class Side(doubles.TargetEps):
    name = "double.side"

    def setup(self):
        return {**super().setup(), "python": "/opt/side/bin/python"}


def _result():
    cases = [Case(target=np.array([[0.25, 0.75], [0.5, 0.5]]), pred=np.log([[0.5, 0.5], [0.25, 0.75]]),
                  reduction="batchmean"),
             Case(target=np.array([[0.5, 0.0, 0.5]]), pred=np.log([[0.0, 0.5, 0.5]]), reduction="sum")]
    a = Side()
    t = engine.Target(run_id="double.side@side", adapter=a, runner=engine.InProcessRunner(a), env=a.setup())
    result = engine.run_conformance([], cases, targets=[t], shrink_rounds=0,
                                    command="python -m klconform run --frameworks double.side@side")
    return result, cases


def test_header_counts_say_what_they_count_and_reproduction_names_the_interpreter():
    result, cases = _result()
    md = render_markdown(result)
    assert f"corpus of {len(cases)} cases" in md
    assert re.search(r"\d+ outcomes compared \(adapter run × case\) over 1 of 1 adapter run", md), md[:600]
    assert "--python side=/opt/side/bin/python" in md
    html = render_html(result)
    assert f"corpus of {len(cases)} cases" in html and "--python side=/opt/side/bin/python" in html


def test_rendered_reports_carry_no_numpy_reprs():
    result, _ = _result()
    # quoted framework documentation (claims, <q>...</q>) may show its own numpy output
    for text in (render_markdown(result), re.sub(r"<q>.*?</q>", "", render_html(result), flags=re.S)):
        assert not re.search(r"np\.(float|int|uint|bool_?|str_)\d*\(|array\(\[", text), \
            re.search(r".{60}np\.\w+\(.{60}", text)
