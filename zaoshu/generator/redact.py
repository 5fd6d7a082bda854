"""Keys and URLs fit to print: a key travels as `Secret` (repr `***`), a URL or command line is masked
before it is shown, and the credentials inside a URL are listed so a server's echo of them can be hidden.

Its own module so that the option types (which mask a bad base URL in their error) and the providers
(which hold keys) both use it without importing each other.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse


class Secret:
    """An API key that never prints: repr/str show `***`; `.reveal()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


# `scheme://user:password@` and query parameters whose name looks like a credential (key=, api_key=,
# access_token=, sig=, password=...), found anywhere in a text, so a URL inside an error message is covered too.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]+@")
_SECRET_PARAM = re.compile(
    r"([?&;][^=&#\s]*(?:key|token|secret|passw|pwd|sig|auth|credential)[^=&#\s]*=)[^&#\s]+", re.IGNORECASE
)


def safe_url(text: str) -> str:
    """`text` (a URL, or a message containing URLs) fit to print: userinfo and secret-looking query values
    become `***` (`https://u:pw@h/v1?key=K` -> `https://***@h/v1?key=***`). Use it wherever a base URL is shown."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def safe_command(command: str) -> str:
    """A shell command line fit to print: each word masked by `safe_url` (masking the joined line would
    swallow the closing quote of a quoted URL and print a command that cannot be pasted)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return safe_url(command)
    return shlex.join(safe_url(word) for word in words)


def url_secrets(url: str) -> list[str]:
    """The credentials inside a URL (password or bare user token, secret-looking query values), raw and
    decoded, so `redact` can also hide them where a server echoes them outside a URL."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    found = []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        user, _, password = userinfo.partition(":")
        found.append(password or user)
    for pair in parts.query.replace(";", "&").split("&"):
        name, _, value = pair.partition("=")
        if value and _SECRET_PARAM.match("?" + name + "=x"):
            found.append(value)
    found += [urllib.parse.unquote(v) for v in found]
    return sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)  # 4+: never mask "1" everywhere
