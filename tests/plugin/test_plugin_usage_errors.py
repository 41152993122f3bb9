"""The pytest plugin's bad inputs are usage errors: one line and pytest's usage exit (4)
before any item runs -- never the same traceback in every item (exit 1, which reads as a
conformance failure).  Each case is a pytest subprocess in an empty directory, as a user
runs it (tests/plugin/test_plugin_runs.py), on the test double and a 4-case corpus."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.faults.test_faults import GOOD
from tests.plugin.test_plugin_runs import COMMON, run_pytest

ROOT = Path(__file__).resolve().parents[2]


def assert_usage_error(proc, needle: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 4, text[-3000:]
    errors = [ln for ln in text.splitlines() if ln.startswith("ERROR: ")]
    assert len(errors) == 1 and needle in errors[0], text[-3000:]
    assert "Traceback" not in text and "passed" not in text and "failed" not in text, text[-3000:]
    assert len(text.splitlines()) < 10, text[-3000:]


@pytest.mark.parametrize("args,env,needle", [
    (["--klconform-large", "bogus"], {}, "--klconform-large: bogus"),
    (["--klconform-case-timeout", "0"], {}, "--klconform-case-timeout"),
    (["--klconform-case-timeout", "-1"], {}, "--klconform-case-timeout"),
    (["--klconform-case-timeout", "nan"], {}, "--klconform-case-timeout"),
    (["--klconform-shrink-rounds", "-1"], {}, "--klconform-shrink-rounds"),
    ([], {"KLCONFORM_REFERENCE_BACKEND": "bogus"}, "KLCONFORM_REFERENCE_BACKEND"),
    ([], {"KLCONFORM_DEVICE": "gpu"}, "KLCONFORM_DEVICE"),
    ([], {"KLCONFORM_SEED": "seven"}, "--klconform-seed"),
])
def test_a_bad_option_value_is_one_line_and_exit_4(args, env, needle, tmp_path):
    assert_usage_error(run_pytest(tmp_path, "--klconform-adapter", GOOD, *COMMON, *args, **env), needle)


def test_a_mistyped_corpus_is_one_line_and_exit_4(tmp_path):
    missing = tmp_path / "tiny.jsnol"
    proc = run_pytest(tmp_path, "--klconform-adapter", GOOD, *COMMON, "--klconform-corpus", str(missing))
    assert_usage_error(proc, f"--klconform-corpus: {missing}")


def test_a_malformed_corpus_is_one_line_and_exit_4(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "klconform-corpus", "version": 1, "cases": 1, "digest": "x"}\n{not json\n')
    proc = run_pytest(tmp_path, "--klconform-adapter", GOOD, *COMMON, "--klconform-corpus", str(bad))
    assert_usage_error(proc, f"{bad}:2")


def test_a_malformed_record_file_is_one_line_and_exit_4(tmp_path):
    (tmp_path / "badrecords.toml").write_text("[[known]\nid = \n")
    (tmp_path / "recordsdouble.py").write_text(textwrap.dedent("""
        from tests.harness.misbehaving import GoodKL

        class WithBadRecords(GoodKL):
            name = "double.bad_records"
            known_records = ("badrecords.toml",)
    """))
    proc = run_pytest(tmp_path, "--klconform-adapter", "recordsdouble:WithBadRecords", *COMMON)
    assert_usage_error(proc, "badrecords.toml")


def test_bad_values_from_a_conftests_defaults_are_usage_errors_too(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        def pytest_klconform_defaults(config):
            return {{"klconform_adapter": [{GOOD!r}], "klconform_large": "bogus"}}
    """))
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    proc = run_pytest(tmp_path, "--klconform-corpus", COMMON[1], "--klconform-shrink-rounds", "0")
    assert_usage_error(proc, "--klconform-large: bogus")


def test_a_bad_environment_value_does_not_touch_a_run_that_asks_for_no_adapter(tmp_path):
    """The plugin is inert until asked: a garbage variable fails only runs that use it."""
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    proc = run_pytest(tmp_path, KLCONFORM_REFERENCE_BACKEND="bogus", KLCONFORM_DEVICE="gpu")
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr


def test_a_record_file_that_is_a_device_is_one_line_and_exit_4(tmp_path):
    (tmp_path / "devrecords.py").write_text(textwrap.dedent("""
        from tests.harness.misbehaving import GoodKL

        class WithDeviceRecords(GoodKL):
            name = "double.device_records"
            known_records = ("/dev/zero",)
    """))
    proc = run_pytest(tmp_path, "--klconform-adapter", "devrecords:WithDeviceRecords", *COMMON)
    assert_usage_error(proc, "/dev/zero")


def test_an_adapter_whose_documented_raises_fails_its_items_with_one_line(tmp_path):
    """documented() raising is that adapter's failure: its items fail, each with the one
    line saying so -- not klconform's traceback."""
    proc = run_pytest(tmp_path, "--klconform-adapter", "tests.faults.faulty:DocumentedRaises", *COMMON,
                      "--klconform-large", "none")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "documented() raised RuntimeError: documented exploded" in out, out[-3000:]
    assert "klconform: fault.documented_raises could not be checked (error: " in out, out[-3000:]
