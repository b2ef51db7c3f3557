"""Scripted customers at the screen, through kioskd's local API, as the touch UI would be."""

from __future__ import annotations

import time
from pathlib import Path

from hal.emulators.control import call_sync
from hal.emulators.model import ControlError
from hal.protocols.idcard import mask_id_number, mask_name

from .processes import Children, wait_until


class ScriptedVisit:
    """A customer at the screen, through kioskd's local API, as the kiosk's touch UI would be."""

    def __init__(self, sock: str, children: Children | None = None) -> None:
        self.sock, self.children = sock, children

    def bus(self) -> dict:
        return call_sync(self.sock, "emu", name="cctalk", emu_cmd="state")

    def insert_bill(self, fen: int) -> None:
        """Like a person: wait until the validator takes notes, feed one, say 收下 (accept) when the
        screen asks about it, wait until it is stacked."""
        wait_until("the bill validator accepting", lambda: self.bus()["bill"]["master_enabled"]
                   and self.bus()["bill"]["inhibit_mask"] != 0, self.children, timeout=10)
        before = self.bus()["bills_stacked_fen"]
        call_sync(self.sock, "emu", name="cctalk", emu_cmd="insert_bill", value=fen)

        def stacked() -> bool:
            question = call_sync(self.sock, "screen").get("question")
            if question and question["prompt"] == "accept_note":
                print(f"  屏幕 screen: {question['words']['zh']} / {question['words']['en']}  → accept")
                try:
                    call_sync(self.sock, "answer", value="accept", n=question["n"])
                except ControlError:  # answered already: the screen moved on meanwhile
                    pass
            return self.bus()["bills_stacked_fen"] > before
        wait_until("the bill being stacked", stacked, self.children, timeout=10)

    def place_card(self, card: dict) -> None:
        """Lay an ID card on the emulated reader (``{runtime_dir}/emu-idcard.sock``)."""
        call_sync(str(Path(self.sock).parent / "emu-idcard.sock"), "place_card", **card)

    def run(self, service: str, answers: dict[str, str], on_screen: dict[str, list[tuple[str, str, dict]]]) -> dict:
        visit = call_sync(self.sock, "begin", service=service)
        done_shows: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = call_sync(self.sock, "screen")
            if not screen["busy"] and screen["visit"] == visit and screen["last"]:
                return screen["last"]
            for shown in screen["shown"]:
                key = shown["key"]
                if key in on_screen and key not in done_shows:
                    done_shows.add(key)
                    print(f"  屏幕 screen: {shown['words']['zh']} / {shown['words']['en']}")
                    for emulator, cmd, args in on_screen[key]:
                        if cmd == "insert_bill":
                            self.insert_bill(args["value"])
                        elif cmd == "place_card":  # straight to the reader's control socket: the card
                            self.place_card(args)  # has a "name" field, as the kioskd emu command does
                            args = {"id_number": mask_id_number(args["id_number"]), "name": mask_name(args["name"])}
                        else:
                            call_sync(self.sock, "emu", name=emulator, emu_cmd=cmd, **args)
                        print(f"  顾客 customer: {cmd} {args}")
            question = screen.get("question")
            if question and question["prompt"] in answers:
                print(f"  屏幕 screen: {question['words']['zh']}  → {answers[question['prompt']]}")
                call_sync(self.sock, "answer", value=answers[question["prompt"]], n=question["n"])
            if self.children:
                self.children.wait(0.05)
            else:
                time.sleep(0.05)
        raise SystemExit(f"demo: the {service} visit did not finish within 60 s (see var/demo/kioskd.log)")


def topup(visit: ScriptedVisit) -> None:
    print("\n== 空中充值 top-up: 13800138000, 50 元 with 20+20+10 bills (BOSS credit through the hall) ==")
    result = visit.run("topup", {"enter_phone": "13800138000", "choose_amount": "5000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


def card_sale(visit: ScriptedVisit) -> None:
    print("\n== 充值卡销售 card sale: 30 元 card, paid with a 20 and a 10 ==")
    result = visit.run("card_sale", {"choose_card": "3000"},
                       {"insert_cash": [("cctalk", "insert_bill", {"value": 2000}),
                                        ("cctalk", "insert_bill", {"value": 1000})],
                        "take_card": [("crt571", "take_card", {})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


# An invented customer (the ID standard's sample number, GB 11643 valid); never a real person.
DEMO_ID_CARD = dict(name="张三丰", gender="1", nation="01", birth="19491231", address="北京市西城区复兴门内大街一号",
                    id_number="11010519491231002X", authority="北京市公安局西城分局", valid_from="20200101",
                    valid_to="20400101")


def new_number(visit: ScriptedVisit) -> None:
    print("\n== 新号入网 new number: ID card + photo, a number ending in 8, 50 元, a blank SIM written over PC/SC ==")
    result = visit.run("new_number", {"choose_number_suffix": "8", "choose_number": "13512340008",
                                      "confirm_new_number": "confirm"},
                       {"place_id_card": [("idcard", "place_card", DEMO_ID_CARD)],
                        "insert_cash": [("cctalk", "insert_bill", {"value": 5000})],
                        "take_sim": [("crt571-sims", "take_card", {})]})
    print(f"  → {result['state']}  txn {result.get('txn')}")


def save_receipts(work: Path, socks: dict[str, str]) -> None:
    """The receipt each customer took, as the kiosk's printer emulator drew it; both on one sheet."""
    from hal.printer.example import side_by_side

    pictures = []
    for kiosk, sock in socks.items():
        path = work / kiosk / "receipt.png"
        call_sync(sock, "emu", name="escpos", emu_cmd="render_png", file=str(path))
        pictures.append(path)
    print(f"\n  凭条 receipts: {side_by_side(pictures, work / 'receipts.png')}")


