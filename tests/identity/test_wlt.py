"""The ID photo decoder's ctypes path, against a shared library built here with the vendor's ABI.

The vendors' WLT decoders are closed binaries we cannot ship or run in CI, so this library only
keeps their calling convention (``int unpack(char *wlt, char *bmp, int save_bmp)``, 1 = decoded,
a 102 x 126 24-bit BMP written into the caller's buffer): it proves our binding, the buffer size
and the failure paths, not the wavelet decoding itself.
"""
import ctypes
import ctypes.util
import datetime as dt
import struct
import subprocess

import pytest

from hal.idcard.wlt import BMP_SIZE, no_decoder, vendor_decoder

from .cards import GOOD

ABI = r"""
#include <string.h>
/* the vendor's signature; writes a BMP header and the first WLT byte as every pixel */
int unpack(char *wlt, char *bmp, int save_bmp) {
    if ((unsigned char)wlt[0] == 0xEE) return -2;          /* what a vendor says for a bad photo */
    memset(bmp, 0, %(size)d);
    bmp[0] = 'B'; bmp[1] = 'M';
    *(int *)(bmp + 2) = %(size)d;                          /* file size */
    *(int *)(bmp + 10) = 54;                               /* pixel data offset */
    *(int *)(bmp + 18) = 102; *(int *)(bmp + 22) = 126;   /* width, height */
    memset(bmp + 54, wlt[0], %(size)d - 54);
    return 1;
}
"""


@pytest.fixture(scope="module")
def vendor_library(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wlt")
    source = tmp / "wlt.c"
    source.write_text(ABI % {"size": BMP_SIZE})
    library = tmp / "libwlt2bmp.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=60)
    return library


def test_a_vendor_library_decodes_the_photo_to_a_bmp(vendor_library):
    decode = vendor_decoder(str(vendor_library))
    assert decode is not no_decoder
    bmp = decode(b"\x5a" * 1024)
    assert len(bmp) == BMP_SIZE == 38_862
    assert bmp[:2] == b"BM" and struct.unpack_from("<iii", bmp, 2)[0] == BMP_SIZE
    assert struct.unpack_from("<ii", bmp, 18) == (102, 126)
    assert set(bmp[54:]) == {0x5A}  # every byte the library wrote came back, none cut off


def test_a_photo_the_library_refuses_stays_undecoded(vendor_library):
    assert vendor_decoder(str(vendor_library))(b"\xee" * 1024) is None


def test_no_library_or_one_without_unpack_means_no_decoder(tmp_path):
    assert vendor_decoder(str(tmp_path / "libmissing.so")) is no_decoder
    libc = ctypes.util.find_library("m")  # loads, but has no unpack
    assert libc and vendor_decoder(libc) is no_decoder


async def test_the_reader_hands_the_decoded_photo_with_the_card(rig_factory, vendor_library):
    async with rig_factory(poll_interval_s=0.3, command_timeout_s=0.5, wlt_library=str(vendor_library)) as r:
        await r.emu("place_card", **GOOD, photo="5a" * 1024)
        card = await r.driver.read_card(5, dt.date(2024, 6, 1))
        assert card.photo_wlt == b"\x5a" * 1024  # kept as the card gave it, for sealing
        assert card.photo_bmp[:2] == b"BM" and len(card.photo_bmp) == BMP_SIZE
