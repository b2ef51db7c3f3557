"""The ID card photo: 1024 bytes of the vendor's wavelet format ("WLT"), decoded only by the vendor.

There is no public decoder (reader notes §3.5). Where the reader vendor's Linux library is
installed we call it through ctypes; otherwise the photo stays as the opaque bytes the card
gave, which is what the kiosk seals and sends anyway — the hall can decode it later.

Vendor libraries export ``int unpack(char *wlt, char *bmp, int save_bmp)`` returning 1 on
success and writing a 102 x 126 24-bit BMP (38 862 bytes) — check your vendor's header; the
name of the library is configurable (``wlt_library`` in the reader's config section).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Callable

log = logging.getLogger("hal.idcard")

BMP_SIZE = 54 + 308 * 126  # 102 px * 3 bytes padded to 308 per row, 126 rows
LIBRARY_NAMES = ("libwlt2bmp.so", "libwltdecode.so")

Decoder = Callable[[bytes], "bytes | None"]


def no_decoder(wlt: bytes) -> None:
    return None


def vendor_decoder(library: str | None = None) -> Decoder:
    """A decoder calling the vendor library, or ``no_decoder`` when none can be loaded."""
    names = (library,) if library else LIBRARY_NAMES
    for name in names:
        path = name if "/" in name else (ctypes.util.find_library(name.removeprefix("lib").removesuffix(".so")) or name)
        try:
            lib = ctypes.CDLL(path)
            unpack = lib.unpack
        except (OSError, AttributeError):
            continue
        unpack.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int)
        unpack.restype = ctypes.c_int

        def decode(wlt: bytes, _unpack=unpack) -> bytes | None:
            out = ctypes.create_string_buffer(BMP_SIZE)
            if _unpack(wlt, out, 0) != 1:
                return None
            return out.raw

        log.info("ID photo decoder: %s", path)
        return decode
    return no_decoder
