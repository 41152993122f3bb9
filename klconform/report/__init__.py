"""Reports of a conformance run: read only :mod:`klconform.results` (results.json), never a
framework.  ``render_markdown`` / ``render_html`` turn a :class:`RunResult` into report.md /
report.html from the model :func:`~klconform.report.summary.build_model` computes;
:mod:`~klconform.report.claims` checks documentation claims.  The observed family point
comes with the results (:mod:`klconform.fingerprint`)."""
