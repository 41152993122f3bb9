"""The temp-directory isolation of tests/faults (its conftest): pytest and klconform
processes these tests start write their temp files, logs included, in the test's own."""
from tests.faults.conftest import private_temp_dir, module_temp_dir  # noqa: F401
