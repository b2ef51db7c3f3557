"""GsmModem against the GsmModemModel emulator on a real pty: SMS in PDU mode, retries, faults."""
import asyncio

import pytest

from hal.device import DeviceContext, Health
from hal.emulators.modem import GsmModemModel
from hal.emulators.runner import EmulatorRunner
from hal.emulators.simports import SimPort
from hal.modem import GsmModem, GsmModemOptions, SmsError
from hal.peripherals import SmsFailed
from hal.protocols.sms_pdu import decode_submit, reassemble
from tests.rig import lines

TO = "+8613800138000"
LONG_ZH = (
    "尊敬的客户：您在自助终端的充值交易未能完成，现金已暂存。请凭此短信中的领取码到营业厅服务台办理退款，"
    "领取码为 A7K3-9QX2，七日内有效。如有疑问请拨打客服热线 10086。感谢您的使用！"
    "Dear customer: your top-up did not complete; claim your refund at the service desk."
)


class Rig:
    def __init__(self, line, modem, events):
        self.line, self.modem, self.events = line, modem, events
        self.control = line.control  # skips on a rig whose modem is real

    @property
    def model(self):
        return self.line.model  # on the rig: skips (the emulator is another process)

    @property
    def runner(self):
        return self.line.runner or self.line.model.runner

    def recorded_texts(self):
        """Decode what the emulator recorded with OUR codec: the other direction of the check."""
        parts = [decode_submit(bytes.fromhex(p["hex"])) for p in self.model.pdus if p["mr"] is not None]
        return parts


FAST = dict(backoff_s=0.01, command_timeout_s=0.3, prompt_timeout_s=0.3, result_timeout_s=0.5)


@pytest.fixture
async def rig(tmp_path):
    async with lines.device_line("modem", GsmModemModel(), str(tmp_path / "emu-modem.sock")) as line:
        events = []
        on_rig = lines.rig_device("modem").options if lines.rig_mode() else {}
        modem = GsmModem("modem", GsmModemOptions(port=line.path, **{**FAST, **on_rig}), DeviceContext(report=events.append))
        await modem.start()
        try:
            yield Rig(line, modem, events)
        finally:
            await modem.stop()


async def test_the_modem_tells_what_it_is_ati_maker_model_firmware_imei(rig):
    ident = await rig.modem.identify()
    lines.note_identity("modem", **ident)
    assert {"ati", "firmware"} <= set(ident) and all(ident.values())
    if not lines.rig_mode():
        assert ident == {"ati": "SIM800 R14.18", "maker": "SIMCOM_Ltd", "model": "SIMCOM_SIM800",
                         "firmware": "Revision:1418B05SIM800L24", "imei": "867856030000001"}


async def test_init_turns_echo_off_and_selects_pdu_mode(rig):
    assert rig.modem.health == Health.OK
    assert rig.model.commands[-3:] == ["ATE0", "AT+CMEE=1", "AT+CMGF=0"]
    assert not rig.model.echo and rig.model.cmgf == 0


async def test_chinese_text_goes_as_ucs2_and_decodes_back_from_the_recorded_pdu(rig):
    refs = await rig.modem.send_sms(TO, "你好，充值成功")
    assert len(refs) == 1
    sent = await rig.control("sent")
    assert sent == [{"number": TO, "text": "你好，充值成功", "parts": 1, "refs": refs}]
    [submit] = rig.recorded_texts()
    assert submit.dcs == 0x08 and submit.text == "你好，充值成功" and submit.number == TO


async def test_a_long_chinese_text_is_split_into_parts_and_reassembles(rig):
    refs = await rig.modem.send_sms(TO, LONG_ZH)
    assert len(LONG_ZH) > 70 and len(refs) == -(-len(LONG_ZH) // 67)
    assert len(set(refs)) == len(refs)  # one TP-MR per part
    [sent] = rig.model.sent
    assert sent["text"] == LONG_ZH and sent["parts"] == len(refs) and sent["refs"] == refs
    parts = rig.recorded_texts()
    assert len({p.concat[0] for p in parts}) == 1  # one concatenation reference for all parts
    assert reassemble(parts) == LONG_ZH


async def test_plain_ascii_goes_as_gsm_7bit(rig):
    await rig.modem.send_sms("10086", "CXYE")
    [submit] = rig.recorded_texts()
    assert submit.dcs == 0x00 and submit.text == "CXYE" and submit.number == "10086"


async def test_transient_cms_error_is_retried_with_backoff_and_then_succeeds(rig):
    await rig.control("fail_next", code=42, count=2)  # 42 congestion
    refs = await rig.modem.send_sms(TO, "重试")
    assert len(refs) == 1
    state = await rig.control("state")
    assert state["failed_attempts"] == 2 and state["sent"][0]["text"] == "重试"


async def test_permanent_cms_error_gives_up_at_once_with_a_named_reason(rig):
    await rig.control("fail_next", code=1, count=5)  # 1 unassigned number
    with pytest.raises(SmsFailed) as info:
        await rig.modem.send_sms(TO, "你好")
    assert isinstance(info.value, SmsError) and info.value.code == "unassigned_number" and info.value.cms == 1
    assert rig.model.fail_count == 4  # exactly one attempt was made
    assert [(e.kind, e.code) for e in rig.events] == [("sms_failed", "unassigned_number")]


async def test_transient_errors_that_never_clear_end_in_sms_failed(rig):
    await rig.control("fail_next", code=331, count=10)
    with pytest.raises(SmsError) as info:
        await rig.modem.send_sms(TO, "你好")
    assert info.value.cms == 331
    assert rig.model.fail_count == 10 - (rig.modem.options.retries + 1)


async def test_not_registered_is_no_network_service_and_shows_in_signal(rig):
    await rig.control("set_registered", registered=False)
    sig = await rig.modem.signal()
    assert sig["registered"] is False and rig.modem.health == Health.DEGRADED
    with pytest.raises(SmsError):
        await rig.modem.send_sms(TO, "你好")
    await rig.control("set_registered", registered=True)
    await rig.control("set_signal", rssi=10)
    sig = await rig.modem.signal()
    assert sig == {"registered": True, "rssi_dbm": -93, "roaming": False}
    assert rig.modem.health == Health.OK


async def test_a_silent_modem_is_a_named_fault_and_recovers_when_it_answers_again(rig):
    await rig.control("mute")
    with pytest.raises(SmsError) as info:
        await rig.modem.send_sms(TO, "你好")
    assert info.value.code == "silent"
    assert ("fault", "silent") in [(e.kind, e.code) for e in rig.events]
    assert rig.modem.health == Health.FAULT
    await rig.control("unmute")
    assert len(await rig.modem.send_sms(TO, "恢复")) == 1
    assert rig.modem.health == Health.OK


async def test_garbage_instead_of_an_answer_is_a_named_fault(rig):
    runner = rig.runner
    runner.muted = True
    task = asyncio.create_task(rig.modem.signal())
    async with asyncio.timeout(2):
        while rig.model.commands[-1] != "AT+CSQ":
            await asyncio.sleep(0.01)
    runner.muted = False
    runner.control("inject", {"hex": (b"\r\n\x93\xfe#!garbage\r\n" + b"\xff" * 1500).hex()})
    sig = await task
    assert sig["fault"] == "garbage" and rig.modem.health == Health.FAULT
    assert ("fault", "garbage") in [(e.kind, e.code) for e in rig.events]


async def test_a_modem_silent_at_start_is_a_fault_not_an_exception(tmp_path):
    model = GsmModemModel()
    runner = EmulatorRunner(model)
    runner.muted = True
    port = SimPort("modem", runner)
    await port.start(None)
    events = []
    modem = GsmModem("modem", GsmModemOptions(port=port.path, command_timeout_s=0.1), DeviceContext(report=events.append))
    try:
        await modem.start()
        assert modem.health == Health.FAULT
        assert [(e.kind, e.code) for e in events] == [("fault", "silent")]
    finally:
        await modem.stop()
        await port.stop()
