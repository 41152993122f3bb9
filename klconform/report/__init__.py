"""Reports of a conformance run: read only :mod:`klconform.results` (results.json), never a
framework.  ``render_markdown`` / ``render_html`` turn a :class:`RunResult` into report.md /
report.html; :func:`~klconform.report.fingerprint.infer_fingerprint` infers the observed
family point of an adapter; :mod:`~klconform.report.claims` checks documentation claims."""
