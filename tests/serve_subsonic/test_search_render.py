"""The fast paths of search: the XML writer (text, not ElementTree), JSON by msgspec, and
which searches may be answered on the event loop."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonotheca.serve.subsonic.envelope import render, to_xml
from tests.serve_subsonic.conftest import LiveServer
from tests.serve_subsonic.test_protocol import auth  # noqa: F401  (fixture)

NOT_XML = {chr(c) for c in [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]}


def _reference_xml(body: Mapping[str, Any]) -> bytes:
    """The envelope as ElementTree writes it, following the conventions of envelope.py."""

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return "".join(
            "\ufffd" if c in NOT_XML or 0xD800 <= ord(c) <= 0xDFFF else c for c in str(value)
        )

    def fill(element: ET.Element, data: Mapping[str, Any]) -> None:
        for key, value in data.items():
            if value is None:
                continue
            if key == "value" and not isinstance(value, dict | list):
                element.text = scalar(value)
            elif isinstance(value, dict):
                fill(ET.SubElement(element, key), value)
            elif isinstance(value, list):
                for item in value:
                    child = ET.SubElement(element, key)
                    if isinstance(item, dict):
                        fill(child, item)
                    else:
                        child.text = scalar(item)
            else:
                element.set(key, scalar(value))

    root = ET.Element("subsonic-response", {"xmlns": "http://subsonic.org/restapi"})
    fill(root, body)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


NAMES = st.sampled_from(["id", "title", "value", "song", "genre", "artist", "isrc"])
TEXT = st.text(
    alphabet=st.sampled_from(list("ab &<>\"'\r\n\t\x00\x07é日\u2028\ufffe\ud800 ")), max_size=12
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), TEXT)
PAYLOADS = st.recursive(
    st.dictionaries(NAMES, SCALARS, max_size=4),
    lambda inner: st.dictionaries(
        NAMES, st.one_of(SCALARS, inner, st.lists(st.one_of(inner, TEXT), max_size=3)), max_size=4
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(PAYLOADS)
def test_xml_writer_writes_what_elementtree_writes(payload: dict[str, Any]) -> None:
    body = {"status": "ok", **payload}
    written = to_xml(body)
    assert written == _reference_xml(body)
    ET.fromstring(written)  # and it parses


@settings(max_examples=200, deadline=None)
@given(PAYLOADS)
def test_json_leaves_out_nulls_and_keeps_the_rest(payload: dict[str, Any]) -> None:
    payload = json.loads(json.dumps(payload).replace("\\ud800", "?"))  # JSON cannot hold it

    def pruned(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: pruned(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [pruned(v) for v in value]
        return value

    body = json.loads(bytes(render(payload, "json").body))["subsonic-response"]
    assert body == {**body, **pruned(payload)} and body["status"] == "ok"
    jsonp = bytes(render(payload, "jsonp", "cb.done").body)
    assert jsonp.startswith(b"cb.done(") and jsonp.endswith(b");")
    assert json.loads(jsonp[8:-2])["subsonic-response"] == body


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


def test_song_page_is_the_same_with_or_without_albums(
    client: httpx.Client,
    auth: dict[str, str],  # noqa: F811
) -> None:
    """A songs-only search (inline) and a full one (thread) list the same songs."""

    def songs(**counts: str) -> list[dict[str, Any]]:
        # The whole catalog: few of the songs this server plays have a word in "a".
        params = {**auth, "f": "json", "query": "a", "songCount": "8", "musicFolderId": "2"}
        params.update(counts)
        body = client.get("/rest/search3", params=params).json()["subsonic-response"]
        assert body["status"] == "ok"
        found: list[dict[str, Any]] = body["searchResult3"].get("song", [])
        return found

    only = songs(albumCount="0", artistCount="0")
    assert only and only == songs()
