"""Errors the user can fix: each names the file, the patient ID and the field (exit code 2)."""

from __future__ import annotations

from typing import Iterable, Optional


class InputError(Exception):
    """One problem with the user's input, printed as a single line `file: ID x: field: message`."""

    def __init__(self, message: str, file: Optional[str] = None, id: Optional[str] = None,
                 field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.id = id
        self.field = field

    def located(self, file: Optional[str] = None, id: Optional[str] = None,
                field: Optional[str] = None) -> "InputError":
        """Fill in whatever location parts are still unknown (the caller knows more context)."""
        return InputError(self.message, self.file or file,
                          self.id if self.id is not None else id, self.field or field)

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.id is not None:
            parts.append(f"ID {self.id}")
        if self.field:
            parts.append(str(self.field))
        parts.append(self.message)
        return ": ".join(parts)


class InputErrors(InputError):
    """Several problems found at once (a manifest is checked completely, not to its first error)."""

    def __init__(self, errors: Iterable[InputError]):
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} problem(s)")

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
