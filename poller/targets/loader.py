"""Importing ``Handler = "module:function"`` from the current directory and PYTHONPATH."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from poller.errors import HandlerImportError

__all__ = ["load_handler"]


def load_handler(reference: str) -> Callable[..., Any]:
    """Import ``module:function`` (``package.module:object.attr`` works too) and return it."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise HandlerImportError(
            f"Handler {reference!r} is not a handler reference (expected 'module:function')"
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise HandlerImportError(
                f"Handler {reference!r}: module {module_name!r} not found in the current "
                f"directory ({cwd}) or PYTHONPATH"
            ) from None
        raise HandlerImportError(
            f"Handler {reference!r}: importing {module_name!r} failed: {error}"
        ) from error
    except Exception as error:
        raise HandlerImportError(
            f"Handler {reference!r}: importing {module_name!r} raised "
            f"{type(error).__name__}: {error}"
        ) from error
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerImportError(
                f"Handler {reference!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise HandlerImportError(f"Handler {reference!r} is not callable")
    return target  # type: ignore[no-any-return]
