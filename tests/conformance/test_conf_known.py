"""Known discrepancies: the record files validate, and every discrepancy class keeps a
minimal, reproducible counterexample.  That every record is still observed (strict,
KL-VERDICT-*) is the plugin's item klconform::<adapter>::known[<record id>] (xfail strict)."""
from klconform import engine, records


def test_known_files_validate():
    records.load_all()   # raises KnownError naming file and entry


def test_counterexample_per_discrepancy_class(adapter_result):
    run = adapter_result.run
    classes = {v.cls for v in run.verdicts if v.cls != "match"}
    assert classes == set(run.counterexamples)
    for cls, ce in run.counterexamples.items():
        case = engine.case_from_blob(ce["blob"])
        assert case.digest == ce["case"]
        assert ce["verdict"]["cls"] == cls
