"""An action's parameters, read with Tencent's error codes, whichever way the client sent them.

JSON bodies (TC3 POST) arrive nested; query strings and forms (TC3 GET, HmacSHA256) arrive flat, with the
SDK's own flattening: ``Certificate.CertId=..``, ``Targets.0.InstanceId=..`` (values as text). `unflatten`
turns the second into the first, so every action reads one shape.
"""

from __future__ import annotations

from typing import Any, Iterable

from simulator.faces.tencent.errors import INVALID_VALUE, MISSING, UNKNOWN_PARAMETER, UNSUPPORTED, TencentError


def unflatten(flat: dict[str, str]) -> dict[str, Any]:
    """``{"A.0.B": "x"}`` -> ``{"A": [{"B": "x"}]}``; numeric path parts make lists (in index order)."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if not isinstance(node, dict):
                raise TencentError(INVALID_VALUE, f"the parameter {key} mixes a value and a structure")
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


class Params:
    """Typed access to one (sub)structure of parameters; `path` names it in errors (``Certificate.CertId``)."""

    def __init__(self, data: Any, path: str = ""):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise TencentError(INVALID_VALUE, f"the parameter {path or 'body'} must be an object")
        self.data, self.path = data, path

    def where(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def check_known(self, honoured: Iterable[str], ignored: Iterable[str] = (), refused: Iterable[str] = ()) -> None:
        """UnknownParameter for names the action does not have; UnsupportedOperation for ones lbsim refuses."""
        honoured, ignored, refused = set(honoured), set(ignored), set(refused)
        for name in self.data:
            if name in refused and self.data[name] not in (None, [], {}):
                raise TencentError(UNSUPPORTED, f"the parameter {self.where(name)} is not supported by lbsim",
                                   hint="docs/vendor-apis.md lists what each action honours")
            if name not in honoured | ignored | refused:
                raise TencentError(UNKNOWN_PARAMETER, f"the parameter {self.where(name)} is not recognized",
                                   hint="check its spelling and the action's API version")

    def str(self, name: str, required: bool = False, default: str | None = None, max_len: int = 4096) -> str | None:
        value = self.data.get(name)
        if value is None or value == "" and required:
            if required:
                raise TencentError(MISSING, f"the request is missing the required parameter {self.where(name)}")
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} must be a string")
        value = str(value)
        if len(value) > max_len:
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} is longer than {max_len} characters")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None, required: bool = False) -> str | None:
        value = self.str(name, required=required, default=default)
        if value is not None and value not in allowed:
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} is {value!r}; expected one of "
                               f"{', '.join(allowed)}")
        return value

    def int(self, name: str, lo: int, hi: int, default: int | None = None, required: bool = False) -> int | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise TencentError(MISSING, f"the request is missing the required parameter {self.where(name)}")
            return default
        if isinstance(value, bool):
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} must be an integer")
        try:
            number = int(value)
            if isinstance(value, float) and number != value:
                raise ValueError
        except (TypeError, ValueError):
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} must be an integer, not {value!r}") from None
        if not lo <= number <= hi:
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} is {number}; expected {lo} to {hi}")
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} must be true or false")

    def list(self, name: str, required: bool = False, max_items: int = 1000) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            if required:
                raise TencentError(MISSING, f"the request is missing the required parameter {self.where(name)}")
            return []
        if not isinstance(value, list):
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} must be an array")
        if required and not value:
            raise TencentError(MISSING, f"the parameter {self.where(name)} must not be empty")
        if len(value) > max_items:
            raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)} holds more than {max_items} items")
        return value

    def strs(self, name: str, required: bool = False, max_items: int = 100) -> list[str]:
        items = self.list(name, required=required, max_items=max_items)
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise TencentError(INVALID_VALUE, f"the parameter {self.where(name)}.{i} must be a string")
        return [str(item) for item in items]

    def obj(self, name: str, required: bool = False) -> Params | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise TencentError(MISSING, f"the request is missing the required parameter {self.where(name)}")
            return None
        return Params(value, self.where(name))

    def objs(self, name: str, required: bool = False, max_items: int = 100) -> list[Params]:
        return [Params(item, f"{self.where(name)}.{i}") for i, item in enumerate(self.list(name, required, max_items))]
