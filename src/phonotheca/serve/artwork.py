"""Placeholder art for albums without a cover: the album's initials on a colour of its own.

The picture is an inline SVG drawn into the page (no request per tile, nothing to cache
apart from the page), the same size as a cover, and a function of the album's id alone:
the same album looks the same on every page and every server. The Content-Security-Policy
allows it as is: SVG presentation attributes are not inline styles.
"""

from __future__ import annotations

import colorsys
import hashlib
import re

from markupsafe import Markup

_WORD = re.compile(r"[^\W_]+")
_LEADING_ARTICLE = {"the", "a", "an"}


def initials(title: str) -> str:
    """Up to two letters: the first letters of the title's first two words (a leading
    "The"/"A"/"An" skipped when more words follow), upper-cased; a note for no word."""
    words = _WORD.findall(title)
    if len(words) > 1 and words[0].lower() in _LEADING_ARTICLE:
        words = words[1:]
    letters = "".join(w[0] for w in words[:2]).upper()
    return letters[:2] or "♪"


def _hex(h: float, lightness: float, saturation: float) -> str:
    r, g, b = colorsys.hls_to_rgb(h, lightness, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def colours(album_id: str) -> tuple[str, str]:
    """Two colours of a diagonal gradient, from a hash of the album's id: a hue from the
    whole circle, dark enough under the white letters (contrast of 3:1 at least, what
    large text needs)."""
    digest = hashlib.sha256(album_id.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536
    shift = (digest[2] / 255 - 0.5) * 0.16  # the second hue within ±29°
    return _hex(hue, 0.36, 0.55), _hex((hue + shift) % 1.0, 0.26, 0.6)


def placeholder(album_id: str, title: str, css_class: str = "art") -> Markup:
    """An inline SVG tile for an album without a cover (``album_id``: its public id)."""
    top, bottom = colours(album_id)
    gradient = "g" + hashlib.sha256(album_id.encode("utf-8")).hexdigest()[:12]
    letters = initials(title)
    size = 40 if len(letters) > 1 else 46
    return Markup(
        '<svg class="{css} placeholder" viewBox="0 0 100 100" role="img"'
        ' aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        '<defs><linearGradient id="{g}" x1="0" y1="0" x2="1" y2="1">'
        '<stop offset="0" stop-color="{top}"/><stop offset="1" stop-color="{bottom}"/>'
        "</linearGradient></defs>"
        '<rect width="100" height="100" fill="url(#{g})"/>'
        '<circle cx="78" cy="80" r="38" fill="#fff" fill-opacity=".07"/>'
        '<circle cx="78" cy="80" r="14" fill="#fff" fill-opacity=".07"/>'
        '<text x="50" y="50" dy=".35em" text-anchor="middle" fill="#fff"'
        " font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""
        ' font-weight="700" font-size="{size}" letter-spacing="1">{letters}</text></svg>'
    ).format(
        css=css_class,
        label=f"No cover: {title}",
        g=gradient,
        top=top,
        bottom=bottom,
        size=size,
        letters=letters,
    )
