"""The lab's mitmproxy options (simulator.runtime.options): the same values as mitmproxy's, fewer copies."""

from __future__ import annotations

import copy
import hashlib
import inspect

import pytest
from mitmproxy import options
from mitmproxy.optmanager import OptManager, _Option

from simulator.runtime.options import LabOptions

# mitmproxy 12.2's OptManager.__getattr__, _Option.default and _Option.current, which LabOptions reads past.
MITMPROXY_READ = "3bb5fd8755f2378f14aecd408206c86c53249f2a7c2fcbb858edb7893187607d"


def test_mitmproxys_way_of_reading_an_option_is_still_the_one_the_lab_reads_past() -> None:
    # When this fails, mitmproxy changed how it keeps or returns an option's value: check LabOptions.__getattr__
    # against it (simulator/runtime/options.py), then record the new digest here.
    source = (inspect.getsource(OptManager.__getattr__) + inspect.getsource(_Option.default.fget)  # type: ignore[attr-defined]
              + inspect.getsource(_Option.current))
    assert hashlib.sha256(source.encode()).hexdigest() == MITMPROXY_READ, source


def test_every_option_reads_as_mitmproxys_at_its_default_and_when_set() -> None:
    ours, theirs = LabOptions(), options.Options()
    assert set(ours._options) == set(theirs._options)
    for name in theirs._options:
        assert getattr(ours, name) == getattr(theirs, name), name
    changes = dict(listen_host="127.0.0.1", server=True, mode=["reverse:http://a"], listen_port=8443, ssl_insecure=True,
                   tcp_timeout=30)
    ours.update(**changes)
    theirs.update(**changes)
    for name in theirs._options:
        assert getattr(ours, name) == getattr(theirs, name), name
    with pytest.raises(AttributeError, match="No such option: proxy_debug"):
        ours.proxy_debug  # noqa: B018 - what mitmproxy's layers look up with getattr(..., False)
    assert getattr(ours, "proxy_debug", False) is False


def test_a_value_that_can_change_in_place_is_still_a_copy() -> None:
    ours = LabOptions()
    ours.update(mode=["reverse:http://a"])
    ours.mode.append("reverse:http://b")  # a caller changing what it read changes nothing
    assert ours.mode == ["reverse:http://a"]
    assert ours.mode is not ours.mode
    ours.update(confdir="/tmp/lab")
    assert ours.confdir is ours._options["confdir"].value  # a string: returned as it is, no copy
    assert copy.deepcopy(ours).confdir == "/tmp/lab"


def test_an_unchangeable_value_is_read_without_a_deep_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[object] = []
    deepcopy = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda value, *a: copies.append(value) or deepcopy(value, *a))
    ours, theirs = LabOptions(), options.Options()
    ours.update(listen_host="127.0.0.1")
    theirs.update(listen_host="127.0.0.1")
    copies.clear()
    assert (ours.listen_host, ours.tcp_timeout, ours.ssl_insecure, ours.listen_port) == ("127.0.0.1", 600, False, None)
    assert copies == []
    assert (theirs.listen_host, theirs.tcp_timeout, theirs.ssl_insecure, theirs.listen_port) == ("127.0.0.1", 600, False, None)
    assert len(copies) == 7  # mitmproxy: one copy of a value set, two of a default
    copies.clear()
    assert ours.mode == ["regular"] and len(copies) == 2  # a list: mitmproxy's copies, as before
