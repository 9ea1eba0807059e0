"""The lab's web console: certificates, listeners, traffic, the connection log and TLS policies in a browser.

Server-rendered HTML from the standard library, one small JavaScript file that refreshes charts and the
listener status, no third-party code; every action is the call the management API makes (docs/console.md).
"""

from simulator.faces.console.app import ConsoleServer

__all__ = ["ConsoleServer"]
