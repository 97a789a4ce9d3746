"""Importing ``Handler = "module:function"`` (or Lambda's ``module.function``) from the current
directory and PYTHONPATH, and finding a handler's module without running it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from poller.config.functions import split_handler
from poller.errors import HandlerImportError

__all__ = ["find_handler_module", "load_handler"]


def _on_path() -> str:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return cwd


def find_handler_module(reference: str) -> None:
    """Check the handler's module exists, without importing it (it runs in its environments).

    Raises :class:`HandlerImportError` for a malformed reference or a module that is not there.
    """
    parts = split_handler(reference)
    if parts is None:
        raise HandlerImportError(
            f"Handler {reference!r} is not a handler reference (expected 'module.function' or "
            "'module:function')"
        )
    module_name = parts[0]
    cwd = _on_path()
    importlib.invalidate_caches()  # a module written since the last look is found too
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as error:  # a parent package is missing or broken
        found = None
        detail = f": {error}"
    else:
        detail = ""
    if found is None:
        raise HandlerImportError(
            f"Handler {reference!r}: module {module_name!r} not found in the current directory "
            f"({cwd}) or PYTHONPATH{detail}"
        )


def load_handler(reference: str) -> Callable[..., Any]:
    """Import ``module:function`` (``package.module:object.attr`` and ``module.function`` work
    too) and return it."""
    parts = split_handler(reference)
    if parts is None:
        raise HandlerImportError(
            f"Handler {reference!r} is not a handler reference (expected 'module.function' or "
            "'module:function')"
        )
    module_name, attribute = parts
    cwd = _on_path()
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
