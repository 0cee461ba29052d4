"""What a webhook URL may be: its form, read with the very parser (urllib3's) that the
deliveries are sent with, so the check and the request cannot disagree about the host.
Pure functions, shared by the contract (a subscription's `url`) and the domain (where a
delivery may go)."""

import ipaddress

from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_webhook_url(url: str) -> Url:
    """`url` as the HTTP client reads it. Deliveries are sent from this very result
    (urllib3's parser), so the address check and the request cannot disagree about
    the host; what other parsers read differently (a backslash, user@host, control
    characters) is refused rather than interpreted."""
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError("a URL may not contain spaces or control characters")
    if "\\" in url:
        raise ValueError("a URL may not contain a backslash")
    try:
        parts = parse_url(url)
    except LocationParseError:
        raise ValueError("not a URL (is its port a number from 1 to 65535?)") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("the URL must start with https:// or http://")
    if parts.auth is not None:
        raise ValueError(
            "a URL may not carry a user name or password (user@host): deliveries are "
            "authenticated by their signature"
        )
    if not parts.host:
        raise ValueError("the URL names no host")
    if parts.port == 0:
        raise ValueError("the URL's port must be from 1 to 65535")
    check_host_form(bare_host(parts.host))
    return parts


def host_of(parts: Url) -> str:
    """The host of a URL that parse_webhook_url accepted (it names one), without the
    brackets of an IPv6 literal."""
    if not parts.host:
        raise ValueError("the URL names no host")
    return bare_host(parts.host)


def port_of(parts: Url) -> int:
    """The port of a URL that parse_webhook_url accepted: its own or its scheme's."""
    return parts.port or DEFAULT_PORTS[str(parts.scheme)]


def bare_host(host: str) -> str:
    """The host without the brackets of an IPv6 literal."""
    return host[1:-1] if host.startswith("[") else host


def check_host_form(host: str) -> None:
    """An IP address is written the standard way: resolvers also read 2130706433,
    0177.0.0.1 or 0x7f.1 as 127.0.0.1, which hides what the URL points at."""
    if "%" in host:
        raise ValueError("a URL may not name a network interface (an IPv6 %zone)")
    if is_ip_literal(host):
        return
    last_label = host.rstrip(".").rpartition(".")[2].lower()
    if last_label.isdigit() or last_label.startswith("0x"):
        raise ValueError(
            "write an IP address as four decimal numbers (e.g. 196.1.100.17) or an IPv6 "
            "address in brackets; other numeric forms are refused"
        )


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_webhook_url(url: str) -> str:
    parse_webhook_url(url)
    return url
