"""Import-time notices of optional libraries are dropped; their other warnings still reach the user."""
import logging
import subprocess
import sys

import ov2_ros  # noqa: F401 - installs the filters


def test_loading_the_model_code_prints_no_extension_notices():
    out = subprocess.run([sys.executable, "-c", "import ov2_ros.model.loading"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Failed to load" not in out.stderr and "register_constant" not in out.stderr


def test_other_records_of_those_loggers_pass(caplog):
    with caplog.at_level(logging.WARNING):
        logging.getLogger("torchao").warning("Failed to load /x/_C_cutlass_90a.abi3.so: no CUDA")
        logging.getLogger("torchao").warning("int4 needs CUDA")
    assert [r.getMessage() for r in caplog.records] == ["int4 needs CUDA"]
