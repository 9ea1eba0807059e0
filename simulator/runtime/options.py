"""The lab's mitmproxy options: read without a deep copy of a value nobody can change in place.

mitmproxy's `OptManager.__getattr__` returns `copy.deepcopy` of an option's value, twice for one left at its
default (`_Option.default`, then `_Option.current`), so that a caller cannot change a list in place. The
connection handler, the reverse-proxy layer and the listener's HTTP layer read options for every connection
and request: about twenty deep copies per resumed connection under cProfile. A string, number, boolean or
None cannot be changed in place, so `LabOptions` returns those as they are; any other value (a list, a
sequence of specs) still comes as mitmproxy's copy. tests/test_options.py holds the values to mitmproxy's
and trips when mitmproxy changes how it keeps them.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import options
from mitmproxy.optmanager import unset

_UNCHANGEABLE = frozenset({str, int, float, bool, bytes, type(None)})


class LabOptions(options.Options):
    """mitmproxy's `Options`, whose immutable values are read as they are."""

    def __getattr__(self, attr: str) -> Any:
        option = self._options.get(attr)
        if option is not None:
            value = option._default if option.value is unset else option.value
            if type(value) in _UNCHANGEABLE:
                return value
        return super().__getattr__(attr)
