"""Customer-facing words, kept as data (messages.json), Chinese first, English alongside.

Flows speak in keys (``customer.show("insert_cash", due="50.00")``); the screen, receipts and
SMS look the words up here. The tone is the operator's counter service: 您好 / 请您 / 对不起,
请您稍等 / 非常抱歉. Placeholders are ``str.format`` fields; amounts are passed in yuan strings
made by ``yuan(fen)`` (money stays integer fen until it is shown).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

LANGS = ("zh", "en")


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    data = json.loads(resources.files(__package__).joinpath("messages.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def text(key: str, lang: str = "zh", **fmt: Any) -> str:
    """The message in one language; a missing key is a bug (KeyError), caught by the catalogue test."""
    return catalogue()[key][lang].format(**{k: in_lang(v, lang) for k, v in fmt.items()})


def in_lang(value: Any, lang: str) -> Any:
    """A value that has words of its own (a plan's name from the BOSS) as ``{"zh": .., "en": ..}``:
    the one for ``lang``; any other value as it is."""
    return value.get(lang, value.get("zh")) if isinstance(value, dict) else value


def both(key: str, **fmt: Any) -> str:
    """"中文 / English", as receipts print labels and titles."""
    return f"{text(key, 'zh', **fmt)} / {text(key, 'en', **fmt)}"


def yuan(fen: int) -> str:
    """Integer fen to a yuan string with two decimals, without ever going through a float."""
    if type(fen) is not int:
        raise TypeError(f"{fen!r} is not integer fen")
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def money(fen: int) -> str:
    """An amount as a receipt prints it: 5000 -> "￥50.00", -50 -> "-￥0.50". The full-width
    yuan sign, because GB2312/GBK printers have no U+00A5."""
    text = yuan(fen)
    return f"-￥{text[1:]}" if text.startswith("-") else f"￥{text}"
