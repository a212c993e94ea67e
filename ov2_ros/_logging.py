"""Quiet the import-time notices of optional libraries that say nothing a user can act on.

torchao (installed for the int8/int4 path) is imported by transformers in every process. On CPU torch it logs one
"Failed to load ... .so" warning per CUDA-only extension, and its enum registration makes torch log a deprecation
warning per enum. Both are dropped; every other record of those loggers passes.
"""
from __future__ import annotations

import logging

_NOTICES = {
    "torchao": lambda msg: msg.startswith("Failed to load ") and ".so" in msg,
    "torch.utils._pytree": lambda msg: "register_constant() on Enum subclasses is deprecated" in msg,
}


class _DropNotice(logging.Filter):
    def __init__(self, is_notice) -> None:
        super().__init__()
        self._is_notice = is_notice

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._is_notice(record.getMessage())


def quiet_optional_imports() -> None:
    for name, is_notice in _NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) for f in logger.filters):
            logger.addFilter(_DropNotice(is_notice))
