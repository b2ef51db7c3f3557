"""Writing a SIM through real pcscd + vpcd to the virtual USIM (SIM notes §8, vpcd notes §7)."""
import asyncio
import json
import os
import subprocess
import sys

import pytest

from hal.device import Health
from hal.protocols.usim import SimProfile, enc_imsi
from hal.simcard import SimWriteFailed

PROFILE = SimProfile(imsi="460001234567890", ki="000102030405060708090A0B0C0D0E0F",
                     opc="F0E0D0C0B0A090807060504030201000", spn="KIOSK TEL")
ADM = "3838383838383838"  # the blank card's ADM1 (the emulator's default)


async def test_a_blank_card_is_written_and_read_back(usim, writer):
    assert writer.health == Health.OK
    iccid = await writer.write(PROFILE, ADM)
    files = usim.card.files()
    assert iccid == usim.card.iccid
    assert files["ADF.USIM/6F07"] == "084906002143658709"  # §8.2 worked IMSI
    assert files["3F00/7F20/6F07"] == enc_imsi(PROFILE.imsi).hex().upper()
    assert files["ADF.USIM/6FAD"] == "00000002"
    assert files["ADF.USIM/6F46"].startswith("014B494F534B2054454C")  # display flag + "KIOSK TEL"
    assert files["ADF.USIM/6F78"] == "0001"  # IMSI ends in 0: access class 0
    assert files["ADF.USIM/6F7E"] == "FFFFFFFF64F000FFFEFF01"
    assert files["3F00/7FF0/FF02"] == "written"
    assert usim.card.adm_left == 3


async def test_with_one_adm_try_left_nothing_is_tried(usim, writer):
    usim.card.adm_left = 1
    with pytest.raises(SimWriteFailed) as exc:
        await writer.write(PROFILE, ADM)
    assert exc.value.code == "adm_low" and not exc.value.written
    assert usim.card.adm_left == 1 and usim.card.files()["ADF.USIM/6F07"] == "FF" * 9


async def test_a_wrong_adm_key_is_tried_once_only(usim, writer):
    with pytest.raises(SimWriteFailed) as exc:
        await writer.write(PROFILE, "0000000000000000")
    assert exc.value.code == "adm_rejected"
    assert usim.card.adm_left == 2  # one try spent, not three


async def test_a_blocked_card(usim, writer):
    usim.card.adm_left = 0
    with pytest.raises(SimWriteFailed) as exc:
        await writer.write(PROFILE, ADM)
    assert exc.value.code == "adm_blocked"


@pytest.mark.parametrize("sw,code", [("6A82", "file_not_found"), ("6982", "security"), ("6983", "adm_blocked")])
async def test_a_card_refusing_an_update(usim, writer, sw, code):
    usim.card.control("fail_next", {"ins": "D6", "sw": sw})
    with pytest.raises(SimWriteFailed) as exc:
        await writer.write(PROFILE, ADM)
    assert exc.value.code == code and exc.value.written


async def test_a_card_whose_memory_does_not_keep_the_write(usim, writer):
    usim.card.control("stuck", {"fid": "6F46"})  # EF.SPN acknowledges updates and keeps nothing
    with pytest.raises(SimWriteFailed) as exc:
        await writer.write(PROFILE, ADM)
    assert exc.value.code == "verify_mismatch" and exc.value.written and "6F46" in exc.value.detail


async def test_no_card_at_the_reader(pcscd, writer):
    with pytest.raises(SimWriteFailed) as exc:
        await writer.read_iccid()
    assert exc.value.code == "no_card"


async def test_a_bad_profile_from_the_boss(usim, writer):
    with pytest.raises(SimWriteFailed) as exc:
        await writer.write(SimProfile(imsi="46000ABC", ki="00", opc="00"), ADM)
    assert exc.value.code == "bad_profile"


async def test_the_standalone_emulator_plugs_into_vpcd(pcscd, writer, tmp_path):
    sock = str(tmp_path / "usim.sock")
    proc = subprocess.Popen([sys.executable, "-m", "hal.emulators", "usim", "--vpcd", f"127.0.0.1:{pcscd.port}",
                             "--control", sock], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        for _ in range(100):  # the card is in once pcscd has powered it
            try:
                iccid = await writer.read_iccid()
                break
            except SimWriteFailed:
                await asyncio.sleep(0.1)
        await writer.write(PROFILE, ADM)
        out = subprocess.run([sys.executable, "-m", "hal.emulators", "send", sock, json.dumps({"cmd": "state"})],
                             capture_output=True, text=True, timeout=20)
        state = json.loads(out.stdout)
        assert state["iccid"] == iccid and state["files"]["ADF.USIM/6F07"] == "084906002143658709"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_pcscd_gone_is_a_named_failure_not_a_crash(usim, writer, pcscd):
    pcscd.stop()
    try:
        with pytest.raises(SimWriteFailed) as exc:
            await writer.write(PROFILE, ADM)
        assert exc.value.code == "pcsc_gone" and writer.health == Health.FAULT
    finally:
        pcscd.start()
