"""The 1x1 transparent GIF and the fixed headers every pixel response carries."""

from __future__ import annotations

# GIF89a, 1x1, a two-colour global table, a graphic control extension marking
# colour 0 transparent, one image block and the trailer: the smallest GIF that
# every browser renders as an invisible pixel (43 bytes).
TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    b"\x02\x02D\x01\x00;"
)

# A browser never retries a failed <img>, and a cached pixel is a conversion
# that never reaches us: forbid every cache (HTTP/1.0 proxies included).
NO_STORE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
)

GIF_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(TRANSPARENT_GIF))),
    *NO_STORE_HEADERS,
    ("X-Content-Type-Options", "nosniff"),
)
