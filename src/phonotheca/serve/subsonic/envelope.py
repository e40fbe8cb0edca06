"""The ``subsonic-response`` envelope, its errors, and rendering as XML, JSON or JSONP.

Handlers build one payload, a nested dict in the JSON shape of the Subsonic API, and
:func:`render` writes it in the format the client asked for (``f=xml|json|jsonp``). The
XML follows the Subsonic XSD's conventions: scalar fields are attributes, objects and
lists of objects are child elements named after their key (one per item), lists of
strings are child elements holding text, and a ``value`` key is the element's text (as
in ``<genre songCount="3">Rock</genre>``).

Errors are answered with HTTP 200 and ``status="failed"``, as Subsonic clients expect;
a response never says ``ok`` about an error.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from phonotheca import __version__

API_VERSION = "1.16.1"
SERVER_TYPE = "phonotheca"
XML_NAMESPACE = "http://subsonic.org/restapi"
FORMATS = ("xml", "json", "jsonp")

# Error codes (Subsonic 1.16.1 and the OpenSubsonic apiKeyAuthentication extension).
GENERIC = 0
MISSING_PARAMETER = 10
CLIENT_TOO_OLD = 20
SERVER_TOO_OLD = 30
WRONG_CREDENTIALS = 40
TOKEN_AUTH_UNSUPPORTED = 41
AUTH_MECHANISM_UNSUPPORTED = 42
CONFLICTING_AUTH = 43
INVALID_API_KEY = 44
NOT_AUTHORIZED = 50
NOT_FOUND = 70

Payload = dict[str, Any]
# A JSONP callback is a JavaScript name or dotted path; anything else could inject code.
_CALLBACK = re.compile(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*")
# Characters XML 1.0 cannot hold at all, even escaped; a title may contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class SubsonicError(Exception):
    """An error answered in the envelope: ``code`` from the table above, a message."""

    def __init__(self, code: int, message: str, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def envelope(status: str = "ok") -> Payload:
    return {
        "status": status,
        "version": API_VERSION,
        "type": SERVER_TYPE,
        "serverVersion": __version__,
        "openSubsonic": True,
    }


def render(
    payload: Mapping[str, Any] | None,
    fmt: str | None,
    callback: str | None = None,
    *,
    error: SubsonicError | None = None,
) -> Response:
    """The HTTP response: the envelope with ``payload``'s keys, or with ``error``."""
    if fmt not in FORMATS:
        fmt = "xml"  # the Subsonic default, also for unknown values
    if fmt == "jsonp" and (callback is None or not _CALLBACK.fullmatch(callback)):
        error = SubsonicError(
            MISSING_PARAMETER,
            "f=jsonp needs a 'callback' parameter naming a JavaScript function",
        )
        fmt = "json"
    body = envelope("failed" if error is not None else "ok")
    if error is not None:
        body["error"] = {"code": error.code, "message": error.message}
    elif payload:
        body.update(payload)
    status = error.http_status if error is not None else 200
    if fmt == "xml":
        return Response(to_xml(body), status, media_type="application/xml; charset=utf-8")
    text = json.dumps(
        {"subsonic-response": _prune(body)}, ensure_ascii=False, separators=(",", ":")
    )
    if fmt == "jsonp":
        return Response(
            f"{callback}({text});", status, media_type="application/javascript; charset=utf-8"
        )
    return Response(text, status, media_type="application/json")


def _prune(value: Any) -> Any:
    """Leave out fields without a value (``None``), as the XML does, at every level."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(element: ET.Element, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if value is None:
            continue
        if key == "value" and not isinstance(value, dict | list):
            element.text = _scalar(value)
        elif isinstance(value, dict):
            _fill(ET.SubElement(element, key), value)
        elif isinstance(value, list):
            for item in value:
                child = ET.SubElement(element, key)
                if isinstance(item, dict):
                    _fill(child, item)
                else:
                    child.text = _scalar(item)
        else:
            element.set(key, _scalar(value))


def to_xml(body: Mapping[str, Any]) -> bytes:
    """``<subsonic-response xmlns="http://subsonic.org/restapi" ...>`` for the body."""
    root = ET.Element("subsonic-response", {"xmlns": XML_NAMESPACE})
    _fill(root, body)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data
