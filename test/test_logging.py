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


def test_other_records_of_those_loggers_pass():
    # a handler on the logger itself: other libraries in the suite may change its level or propagation
    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logger, keep = logging.getLogger("torchao"), Keep()
    level, logger.level = logger.level, logging.WARNING
    logger.addHandler(keep)
    try:
        logger.warning("Failed to load /x/_C_cutlass_90a.abi3.so: no CUDA")
        logger.warning("int4 needs CUDA")
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert keep.messages == ["int4 needs CUDA"]
