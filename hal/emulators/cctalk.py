"""One emulated multi-drop ccTalk bus: coin acceptor at 2, bill validator at 40, hopper at 3.

The bus is what the kiosk's one serial port sees (cctalk.md §1.1): several devices on one
wire, each answering only frames addressed to it. With ``echo`` on, every byte the host sends
comes back first, as on a real shared data line (§1.1: "an emulator of the bus should be able
to echo"). Written from the notes, not from hal/protocols/cctalk.py.

Control commands are listed in docs/emulators.md ("cctalk").
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

from .cctalk_bill import BillValidator
from .cctalk_coin import COS_ACTIVATED, CoinAcceptor
from .cctalk_device import H_RESET, Peripheral
from .cctalk_frame import CHECKSUMS, CRC16, HOST, SIMPLE, FrameSplitter, build, parse
from .cctalk_hopper import SECURITY_MODES, Hopper
from .model import ControlError, EmulatorModel

DEFAULT_COINS = {1: 10, 2: 50, 3: 100}  # 1 jiao, 5 jiao, 1 yuan (fen)
DEFAULT_BILLS = {1: 100, 2: 500, 3: 1000, 4: 2000, 5: 5000, 6: 10000}  # 1..100 yuan (fen)
DEVICES = ("coin", "bill", "hopper")


def _table(values: dict[Any, Any] | None, default: dict[int, int]) -> dict[int, int]:
    """TOML/JSON keys are strings: {"1": 10} and {1: 10} mean the same position."""
    return {int(k): int(v) for k, v in (values or default).items()}


class CcTalkBus(EmulatorModel):
    name = "cctalk"
    tick_interval = 0.1  # lets the escrow timer, watchdogs and hopper motor run between requests

    def __init__(
        self,
        coins: dict[Any, Any] | None = None,
        bills: dict[Any, Any] | None = None,
        checksum: str = SIMPLE,
        checksums: dict[str, str] | None = None,
        echo: bool = False,
        escrow_timeout: float = 30.0,
        hopper_level: int = 100,
        hopper_coin_fen: int = 100,
        payout_rate: float = 20.0,
        dry_timeout: float = 0.5,
        hopper_security: str = "serial",
        hopper_serial: int = 3345678,
        country: str = "CN",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        per_device = {name: checksum for name in DEVICES} | dict(checksums or {})
        for dev, kind in per_device.items():
            if dev not in DEVICES or kind not in CHECKSUMS:
                raise ValueError(f"checksum for {dev!r} must be one of {CHECKSUMS}, got {kind!r}")
        self.clock = clock
        self.echo = echo
        self.coin = CoinAcceptor(
            _table(coins, DEFAULT_COINS), country, checksum=per_device["coin"],
            product="EMU-COIN", serial=12345678,
        )
        self.bill = BillValidator(
            _table(bills, DEFAULT_BILLS), country, escrow_timeout, checksum=per_device["bill"],
            product="EMU-BILL", serial=2345679,
        )
        self.hopper = Hopper(
            hopper_level, hopper_coin_fen, payout_rate, dry_timeout, security=hopper_security,
            checksum=per_device["hopper"], product="EMU-HOPPER", serial=hopper_serial,
        )
        self.devices: dict[str, Peripheral] = {"coin": self.coin, "bill": self.bill, "hopper": self.hopper}
        self._splitter = FrameSplitter()
        self.heard: collections.deque[bytes] = collections.deque(maxlen=500)  # the frames, as they came
        self.frames = 0  # complete frames heard
        self.bad_checksum = 0
        self.not_ours = 0  # frames for an address no device has
        self.unanswered = 0  # frames a device stayed silent on (unknown header, bad length)
        self.lost = 0  # replies dropped by a ``silence`` fault (the device acted, the host heard nothing)
        self.silence: dict[str, dict[str, Any]] = {}  # device -> armed ``silence`` fault
        self.answered = {name: 0 for name in DEVICES}  # replies each device sent (a host waits on these)
        now = clock()
        for dev in self.devices.values():
            dev.power_up(now)

    # -- bytes ---------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        for dev in self.devices.values():
            dev.advance(now)

    def receive(self, data: bytes, now: float) -> bytes:
        self._advance(now)
        out = bytearray(data if self.echo else b"")  # the host hears itself first on a shared wire
        by_address = {dev.address: dev for dev in self.devices.values()}
        for raw in self._splitter.feed(data, now):
            self.frames += 1
            self.heard.append(raw)
            dev = by_address.get(raw[0])
            if dev is None:  # §1.11: not ours (or broadcast, whose replies would collide): silent
                self.not_ours += 1
                continue
            request = parse(raw, dev.checksum)
            if request is None:  # §1.5: silent on a bad checksum
                self.bad_checksum += 1
                continue
            reply = dev.handle(request.header, request.data, now)
            if reply is None:  # §1.5: silent on an unsupported header
                self.unanswered += 1
                continue
            if self._reply_lost(dev, request.header, now):
                self.lost += 1
                continue
            self.answered[self._name(dev)] += 1
            # §1.2: replies cross the addresses over; under CRC there is no source, reply to the host
            dest = HOST if dev.checksum == CRC16 or request.src is None else request.src
            header, payload = reply
            out += build(dest, dev.address, header, payload, dev.checksum)
            if request.header == H_RESET:
                dev.power_up(now)  # §1.5: the ACK goes out just before the device resets
        return bytes(out)

    def tick(self, now: float) -> bytes:
        self._advance(now)
        return b""

    def _name(self, dev: Peripheral) -> str:
        return next(n for n, d in self.devices.items() if d is dev)

    def _reply_lost(self, dev: Peripheral, header: int, now: float) -> bool:
        """A ``silence`` fault: the device did what it was asked, its reply never reaches the host.

        Why at the bus and per device: a validator busy stacking, a hopper whose line drops out
        mid-payout, a route whose ACK is lost are all "the slave acted, the host heard nothing"
        (§1.5: the host cannot tell these apart from a request that never arrived).
        """
        name = self._name(dev)
        s = self.silence.get(name)
        if s is None:
            return False
        if s["after"] is not None:  # armed: this reply still goes out, the silence starts after it
            if header == s["after"]:
                s["after"] = None
                s["until"] = now + s["seconds"] if s["seconds"] else None
            return False
        if s["header"] is not None and header != s["header"]:
            return False
        if s["count"] is not None:
            s["count"] -= 1
            if s["count"] <= 0:
                del self.silence[name]
            return True
        if s["until"] is not None and now < s["until"]:
            return True
        del self.silence[name]
        return False

    # -- script --------------------------------------------------------------------------
    def control(self, cmd: str, args: dict[str, Any]) -> Any:
        now = self.clock()
        self._advance(now)
        if cmd == "insert_coin":
            if "coin_id" in args:
                return self.coin.insert(self.coin.position_of(coin=args["coin_id"]), now)
            return self.coin.insert(self.coin.position_of(value=int(args["value"])), now)
        if cmd == "reject_coin":
            self.coin.reject()
            return "rejected"
        if cmd == "insert_bill":
            return self.bill.insert(int(args["value"]), now)
        if cmd == "reject_bill":
            self.bill.reject()
            return "rejected"
        if cmd == "jam_bill":
            self.bill.jam(int(args.get("code", 6)))
            return None
        if cmd == "clear_jam":
            self.bill.jammed = False
            return None
        if cmd == "fraud":
            device = self._device(args, ("coin", "bill"))
            if device == "coin":
                self.coin.events.push(0, int(args.get("code", COS_ACTIVATED)))
            else:
                self.bill.fraud(int(args.get("code", 8)))
            return None
        if cmd == "remove_stacker":
            self.bill.remove_stacker()
            return None
        if cmd == "replace_stacker":
            self.bill.replace_stacker()
            return None
        if cmd == "stacker_full":
            self.bill.fill_stacker()
            return None
        if cmd == "power_cycle":
            device = self._device(args, DEVICES)
            if device == "bill":
                self.bill.power_cycle(now, bool(args.get("bill_in_escrow")), bool(args.get("bill_in_stacker")))
            elif device == "hopper":
                self.hopper.power_cycle(now)
            else:
                self.coin.power_up(now)
            return None
        if cmd == "hopper_fill":
            self.hopper.fill(self._count(args))
            return self.hopper.level
        if cmd == "hopper_empty_after":
            self.hopper.empty_after = self._count(args)
            return None
        if cmd == "silence":
            device = self._device(args, DEVICES)
            count = int(args["count"]) if "count" in args else None
            seconds = float(args.get("seconds", 0))
            if (count is None) == (not seconds):
                raise ControlError("silence: give count or seconds (one of them)")
            after = int(args["after_header"]) if "after_header" in args else None
            header = int(args["header"]) if "header" in args else None
            self.silence[device] = {"count": count, "seconds": seconds, "after": after, "header": header,
                                    "until": None if after is not None or not seconds else now + seconds}
            return None
        if cmd == "unsilence":
            self.silence.clear()
            return None
        if cmd == "hopper_security":  # the DIP switch / product variant (cctalk_hopper.py)
            mode = args.get("mode")
            if mode not in SECURITY_MODES:
                raise ControlError(f"mode must be one of {', '.join(SECURITY_MODES)}")
            self.hopper.security = mode
            return mode
        if cmd == "set_echo":
            self.echo = bool(args["on"])
            return self.echo
        if cmd == "drop_events":
            device = self._device(args, DEVICES)
            count = self._count(args)
            if device == "hopper":
                for _ in range(count):
                    self.hopper.counter = 1 if self.hopper.counter >= 255 else self.hopper.counter + 1
            else:
                self.devices[device].events.drop(count)
            return self.devices[device].snapshot()["event_counter"]
        return super().control(cmd, args)

    @staticmethod
    def _device(args: dict[str, Any], allowed: tuple[str, ...]) -> str:
        device = args.get("device")
        if device not in allowed:
            raise ControlError(f"device must be one of {', '.join(allowed)}")
        return device

    @staticmethod
    def _count(args: dict[str, Any]) -> int:
        count = int(args["count"])
        if count < 0:
            raise ControlError("count must be >= 0")
        return count

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        self._advance(now)
        return {
            "coins_accepted_fen": self.coin.accepted_fen,
            "bills_stacked_fen": self.bill.stacked_fen,
            "bills_returned_fen": self.bill.returned_fen,
            "bills_jammed_fen": self.bill.jammed_fen,
            "bills_pulled_fen": self.bill.pulled_fen,
            "hopper_paid": self.hopper.total_paid,
            "hopper_unpaid": self.hopper.total_unpaid,
            "hopper_paid_fen": self.hopper.total_paid * self.hopper.coin_fen,
            "hopper_level": self.hopper.level,
            "echo": self.echo,
            "frames": self.frames,
            "bad_checksum": self.bad_checksum,
            "not_ours": self.not_ours,
            "unanswered": self.unanswered,
            "lost": self.lost,
            "silenced": sorted(self.silence),
            "answered": dict(self.answered),
            "coin": self.coin.snapshot_at(now),
            "bill": self.bill.snapshot(),
            "hopper": self.hopper.snapshot(),
        }
