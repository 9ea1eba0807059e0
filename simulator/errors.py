"""One error type for every layer: a stable code, a message, the field at fault and the fix.

The CLI prints it, the REST API serialises it, the config loader prefixes it with the field path.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any


@dataclass
class LbsimError(Exception):
    """A caller's mistake, described well enough to fix it.

    `code` is stable (tests and scripts match on it), `message` may quote the vendor's own wording,
    `field` names the input at fault (``"cert"``, ``"listeners[1].tls_policy"``), `hint` says how to fix it.
    """

    code: str
    message: str
    field: str | None = None
    hint: str | None = None
    details: dict[str, Any] = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{self.code}: {self.message}{hint}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out
