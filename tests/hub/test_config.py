"""The hub's configuration: TOML, defaults and overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tidewire.hub import ConfigError, HubConfig, Namespace, load_config
from tidewire.hub.config import DEFAULT_NAMESPACES


def test_defaults_are_the_demos_namespaces() -> None:
    config = load_config()
    assert config.namespaces == DEFAULT_NAMESPACES
    assert config.namespace("chat:lobby") == DEFAULT_NAMESPACES["chat"]
    assert config.namespace("plain") == DEFAULT_NAMESPACES[""]
    assert config.namespace("nowhere:x") is None


def test_file_namespaces_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        "[hub]\nport = 9000\napi_key = 'a-long-api-key'\n\n"
        "[namespaces.game]\nhistory_size = 50\nhistory_ttl = 30\npresence = true\n\n"
        "[default]\npublish = true\n"
    )
    config = load_config(path)
    assert config.port == 9000 and config.api_key == "a-long-api-key"
    assert set(config.namespaces) == {"game", ""}
    assert config.namespaces["game"] == Namespace(history_size=50, history_ttl=30.0,
                                                  presence=True)
    assert config.namespaces[""].publish is True
    assert config.namespace("chat:x") is None
    assert isinstance(config.namespaces["game"].history_ttl, float)


def test_overrides_win_over_the_file_and_none_is_no_override(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[hub]\nport = 9000\nhost = '0.0.0.0'\n")
    config = load_config(path, port=9100, host=None)
    assert (config.host, config.port) == ("0.0.0.0", 9100)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"token_secret": "short"}, "at least 32 bytes"),
        ({"api_key": "abc"}, "at least 8"),
        ({"port": 70000}, "port must be"),
    ],
)
def test_unsafe_settings_are_refused(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        HubConfig(**changes)  # type: ignore[arg-type]


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[namespaces.chat]\nhistory_size = 'lots'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "namespaces.chat.history_size must be an integer" in str(info.value)


def test_namespace_names_cant_hold_a_colon(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[namespaces."a:b"]\npresence = true\n')
    with pytest.raises(ConfigError, match="can't contain ':'"):
        load_config(path)


def test_origins_are_a_list_of_strings(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[hub]\norigins = ['https://app.example.com']\n")
    assert load_config(path).origins == ("https://app.example.com",)
    path.write_text("[hub]\norigins = [1]\n")
    with pytest.raises(ConfigError, match="hub.origins must be a list of strings"):
        load_config(path)


def test_proxy_table_and_namespace_switches(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        "[proxy]\nconnect = 'http://127.0.0.1:9000/tidewire/connect'\n"
        "subscribe = 'http://127.0.0.1:9000/tidewire/subscribe'\n"
        "timeout = 0.5\nheaders = ['Cookie', 'Authorization']\n\n"
        "[namespaces.chat]\nsubscribe_proxy = true\nprivate = true\n"
    )
    config = load_config(path)
    assert config.proxy.connect == "http://127.0.0.1:9000/tidewire/connect"
    assert config.proxy.url("subscribe") == "http://127.0.0.1:9000/tidewire/subscribe"
    assert config.proxy.url("rpc") is None
    assert (config.proxy.timeout, config.proxy.headers) == (0.5, ("Cookie", "Authorization"))
    assert config.namespaces["chat"] == Namespace(subscribe_proxy=True, private=True)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[proxy]\nrpc = 5\n", "proxy.rpc must be a string"),
        ("[proxy]\nrpc = 'localhost:9000'\n", "proxy.rpc must be an http:// or https:// URL"),
        ("[proxy]\ntimeout = 0\n", "proxy.timeout must be above 0"),
        ("[proxy]\nheaders = 'Cookie'\n", "proxy.headers must be a list of strings"),
        ("[proxy]\nheaders = ['Host']\n", "Host belongs to the proxy request itself"),
        ("[proxy]\nretries = 3\n", "unknown key proxy.retries"),
        ("[namespaces.chat]\npublish_proxy = true\n", "but [proxy] has no publish URL"),
    ],
)
def test_proxy_settings_are_checked(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(path)
