"""The public surface is pinned: a change to it is a deliberate change here."""

from __future__ import annotations

import tidewire
import tidewire.asyncio
import tidewire.exceptions
import tidewire.protocol
import tidewire.sync

PUBLIC = {
    "__version__", "connect", "serve", "broadcast", "Connection", "ClientConnection",
    "ServerConnection", "Server", "Data", "Close", "CloseCode", "DeflateOptions", "Headers",
    "Request", "Response", "State", "TidewireError", "ConnectionClosed", "ConnectionClosedOK",
    "ConnectionClosedError", "InvalidURI", "InvalidHandshake", "InvalidMessage",
    "InvalidHeader", "InvalidStatus", "NegotiationError", "ProxyError", "ProtocolError",
    "InvalidUTF8", "unix_connect", "unix_serve",
    "PayloadTooBig", "ConcurrencyError",
}


def test_top_level_exports_are_pinned() -> None:
    assert set(tidewire.__all__) == PUBLIC


def test_every_exported_name_resolves() -> None:
    modules = (tidewire, tidewire.asyncio, tidewire.sync, tidewire.exceptions, tidewire.protocol)
    for module in modules:
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"


def test_sync_has_the_names_of_asyncio() -> None:
    assert set(tidewire.sync.__all__) == set(tidewire.asyncio.__all__) - {"broadcast"}


def test_exceptions_share_one_root() -> None:
    for name in tidewire.exceptions.__all__:
        assert issubclass(getattr(tidewire.exceptions, name), tidewire.TidewireError)


HUB_CLIENT = {
    "HubClient", "Subscription", "Backend", "AsyncBackend", "backoff", "TokenGetter",
    "SubscriptionTokenGetter", "HubClientError", "HubError", "BackendError", "RequestTimeout",
    "ConnectionLost", "NotConnected", "TokenError", "State", "SubscriptionState", "Position",
    "ClientInfo", "Publication", "Session", "SubscribedContext", "Join", "Leave",
    "Unsubscribed", "SubscriptionEvent", "DisconnectEvent", "HistoryResult", "PresenceStats",
    "Published",
}


def test_hub_client_exports_are_pinned_and_resolve() -> None:
    import tidewire.hub.client as client
    import tidewire.hub.client.errors as errors

    assert set(client.__all__) == HUB_CLIENT
    for name in client.__all__:
        assert getattr(client, name) is not None, name
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), tidewire.TidewireError)
