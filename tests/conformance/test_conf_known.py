"""Known discrepancies are strict: every record must still be observed (KL-VERDICT-*),
and every discrepancy class keeps a minimal, reproducible counterexample."""
from klconform import engine, records


def test_known_files_validate():
    records.load_all()   # raises KnownError naming file and entry


def test_every_known_record_is_observed(adapter_result):
    run = adapter_result.run
    assert not run.unmatched_known, (
        f"{run.adapter}: recorded discrepancies no case showed any more: {run.unmatched_known}")


def test_counterexample_per_discrepancy_class(adapter_result):
    run = adapter_result.run
    classes = {v.cls for v in run.verdicts if v.cls != "match"}
    assert classes == set(run.counterexamples)
    for cls, ce in run.counterexamples.items():
        case = engine.case_from_blob(ce["blob"])
        assert case.digest == ce["case"]
        assert ce["verdict"]["cls"] == cls
