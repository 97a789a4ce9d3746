"""What every store implementation shares: ``async with store:`` closes it on the way out."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["ClosingStore"]


class ClosingStore:
    """A store usable as an async context manager; subclasses implement ``aclose``."""

    __slots__ = ()

    async def aclose(self) -> None:
        """Flush and close."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
