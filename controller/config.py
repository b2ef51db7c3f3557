"""kiosk.toml: read, validate, and refuse loudly before a motor moves (Klipper-style).

Every problem is one line naming the file, the key and what is wrong; kioskd exits 2 on it.
Device sections are validated against the ``Options`` dataclass of the driver they name.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/etc/kiosk/kiosk.toml")


class ConfigError(Exception):
    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path, self.key, self.problem = str(path), key, problem


@dataclass(frozen=True)
class KioskSection:
    id: str
    hall: str
    simulate: bool = False
    state_dir: str = "/var/lib/kiosk"  # the journal lives here (systemd StateDirectory)
    runtime_dir: str = "/run/kiosk"  # kioskctl's socket, emulator control sockets
    log_level: str = "info"
    stop_grace_s: float = 20.0  # how long SIGTERM waits for the customer in flight
    services: list[str] = field(default_factory=lambda: list(_service_names()))  # offered on this kiosk's menu


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = 1883
    keepalive_s: int = 30
    telemetry_interval_s: float = 60.0
    ca_file: str = ""  # all three set: TLS with this kiosk's client certificate (CN = kiosk id)
    cert_file: str = ""
    key_file: str = ""
    session_expiry_s: int = 86400  # the broker keeps our session (subscriptions, queued acks/commands)


@dataclass(frozen=True)
class BossSection:
    via: str = ""  # "hall" (boss/req over MQTT, halld forwards) | "url" (HTTP straight to `url`); "": url if set, else hall
    url: str = ""  # the BOSS adapter for via = "url" (bosssim in tests and the bench)
    timeout_s: float = 5.0

    @property
    def route(self) -> str:
        return self.via or ("url" if self.url else "hall")


@dataclass(frozen=True)
class SalesSection:
    """Which dispenser holds which recharge card: face value in fen (as a string key) -> device name."""

    card_dispensers: dict[str, str] = field(default_factory=dict)
    sim_dispenser: str = ""  # the dispenser holding blank SIMs, under the PC/SC writer (issue 11)


@dataclass(frozen=True)
class UiSection:
    """The customer's touch screen (controller/ui): where kioskd serves it, what the idle screen says."""

    listen: str = "127.0.0.1:8080"  # host:port; "" = no UI. Loopback only unless allow_remote
    allow_remote: bool = False  # the page and its WebSocket move money: serve beyond loopback only on purpose
    notices: list[str] = field(default_factory=list)  # hall notices on the idle screen, "中文 / English" each
    large_text: bool = False  # each customer starts with the larger text (a hall serving many older customers)


@dataclass(frozen=True)
class UpdateSection:
    """A/B updates (controller/updater.py): the fleet's update key, the boot files, the root slots."""

    public_key: str = "/etc/kiosk/update.pub"  # ed25519; missing: every update is refused
    boot_dir: str = "/boot/firmware"  # slot.txt, tryboot.txt, trying.txt (provisioning/updates.py)
    slot_a: str = ""  # root slot devices and the one running; "": read from the mounts (the SD image)
    slot_b: str = ""
    running: str = ""


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    driver: str
    options: Any


@dataclass(frozen=True)
class Config:
    path: str
    kiosk: KioskSection
    mqtt: MqttSection
    devices: dict[str, DeviceConfig]
    raw_hash: str
    boss: BossSection = BossSection()
    sales: SalesSection = SalesSection()
    flows: Any = None  # transactions.FlowConfig  # reported in the birth message so the hall sees config drift
    ui: UiSection = UiSection()
    update: UpdateSection = UpdateSection()
    settings: str = ""  # the hall's settings file over kiosk.toml (--settings), where set_config writes

    @property
    def simulate(self) -> bool:
        return self.kiosk.simulate


LOG_LEVELS = {"debug", "info", "warning", "error"}
PIN_FACTORIES = ("lgpio", "mock")


def _service_names() -> tuple[str, ...]:
    from transactions import SPECS  # the flows that exist; imported late (config loads first)

    return tuple(SPECS)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(path: Path, key: str, value: Any, tp: Any) -> Any:
    """Check one TOML value against a dataclass field type; returns the (converted) value."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            try:
                return _check_value(path, key, value, option)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(path, key, " or ".join(errors))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list, got {type(value).__name__} ({value!r})")
        (item,) = typing.get_args(tp)
        return [_check_value(path, f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, key, f"expected a table, got {type(value).__name__} ({value!r})")
        key_type, item = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if key_type is int:
                if not str(k).lstrip("-").isdigit():
                    raise ConfigError(path, f"{key}.{k}", "expected an integer key (TOML: \"3000\" = ...)")
                k = int(k)
            out[k] = _check_value(path, f"{key}.{k}", v, item)
        return out
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(path, key, f"expected {_type_name(tp)}, got {type(value).__name__} ({value!r})")
    return value


def build_section(path: Path, prefix: str, cls: type, table: Any) -> Any:
    """Make dataclass ``cls`` from a TOML table: unknown keys, wrong types and missing keys fail."""
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, f"expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(path, f"{prefix}.{key}", f"unknown key (known keys: {known})")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}"
        if name in table:
            values[name] = _check_value(path, key, table[name], hints[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(path, key, "missing (required)")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # a driver's own range checks (__post_init__)
        raise ConfigError(path, prefix, str(exc)) from None


def _check_device_port(path: Path, key: str, port: str, simulate: bool) -> None:
    if simulate or port.startswith(("sim:", "tcp://", "socket://")):
        return
    if not os.path.exists(port):
        raise ConfigError(path, key, f"no such port {port!r} (is the adapter plugged in?)")


def _check_i2c_bus(path: Path, key: str, bus: int, simulate: bool) -> None:
    """bus = N is /dev/i2c-N on the Pi (-1: the simulated chips); like a serial port, it must exist."""
    if simulate or bus < 0:
        return
    if not os.path.exists(f"/dev/i2c-{bus}"):
        raise ConfigError(path, key, f"no such I2C bus /dev/i2c-{bus} (is I2C enabled? dtparam=i2c_arm=on in "
                                     "/boot/firmware/config.txt; -1 = simulated chips)")


def _check_pin_factory(path: Path, key: str, factory: str, simulate: bool) -> None:
    """gpiozero's pin factory, chosen explicitly (auto-detection has broken on Pi 5): lgpio must be installed."""
    if factory not in PIN_FACTORIES:
        raise ConfigError(path, key, f"expected one of {', '.join(PIN_FACTORIES)}, got {factory!r}")
    if simulate or factory != "lgpio":
        return
    import importlib.util

    if importlib.util.find_spec("lgpio") is None:
        raise ConfigError(path, key, "lgpio is not installed (pip install 'kioskd[pi]', or apt install python3-lgpio)")


def _device(path: Path, name: str, table: Any, simulate: bool, sim_ports: dict[str, str]) -> DeviceConfig:
    """``sim_ports`` maps each port seen so far under --simulate to its emulator port (shared across devices)."""
    from hal.registry import DRIVERS, load_driver

    prefix = f"devices.{name}"
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, "expected a table")
    table = dict(table)
    driver = table.pop("driver", None)
    if driver is None:
        raise ConfigError(path, f"{prefix}.driver", f"missing (one of: {', '.join(sorted(DRIVERS))})")
    if driver not in DRIVERS:
        raise ConfigError(path, f"{prefix}.driver", f"unknown driver {driver!r} (one of: {', '.join(sorted(DRIVERS))})")
    try:
        cls = load_driver(driver)
    except ImportError as exc:
        raise ConfigError(path, f"{prefix}.driver", f"driver {driver!r} cannot be loaded: {exc}") from None
    if simulate and isinstance(table.get("port"), str) and DRIVERS[driver].emulator:
        table["port"] = _simulated_port(table["port"], DRIVERS[driver].emulator, name, sim_ports)
    options = build_section(path, prefix, cls.Options, table)
    port = getattr(options, "port", None)
    if isinstance(port, str):
        _check_device_port(path, f"{prefix}.port", port, simulate)
    bus = getattr(options, "bus", None)  # the I2C drivers' bus number (hal/sensors)
    if isinstance(bus, int) and not isinstance(bus, bool):
        _check_i2c_bus(path, f"{prefix}.bus", bus, simulate)
    factory = getattr(options, "pin_factory", None)
    if isinstance(factory, str):
        _check_pin_factory(path, f"{prefix}.pin_factory", factory, simulate)
    return DeviceConfig(name, driver, options)


def _simulated_port(port: str, emulator: str, device: str, sim_ports: dict[str, str]) -> str:
    """The emulator port standing in for ``port`` under --simulate.

    A sim: port stays as written. Devices sharing one real port (a ccTalk bus) share one emulator;
    a second real port of the same emulator gets its own instance (sim:crt571-DEVICE), so two
    dispensers are never two drivers on one pty.
    """
    if port.startswith("sim:"):
        sim_ports[port] = port
        return port
    if port not in sim_ports:
        taken = set(sim_ports.values())
        sim = f"sim:{emulator}"
        sim_ports[port] = sim if sim not in taken else f"{sim}-{device}"
    return sim_ports[port]


def _check_files(path: Path, prefix: str, section: Any) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name.endswith("_file") and value and not os.path.exists(value):
            raise ConfigError(path, f"{prefix}.{f.name}", f"no such file {value!r}")


def _check_tls(path: Path, mqtt: MqttSection, kiosk_id: str) -> None:
    """TLS is all three files or none; the certificate's CN must be this kiosk's id, because the
    broker takes the CN as user name and client id (docs/security.md) and the ACL keys on it."""
    files = {"ca_file": mqtt.ca_file, "cert_file": mqtt.cert_file, "key_file": mqtt.key_file}
    given = [k for k, v in files.items() if v]
    if not given:
        return
    if len(given) != 3:
        missing = next(k for k, v in files.items() if not v)
        raise ConfigError(path, f"mqtt.{missing}", "missing (TLS needs ca_file, cert_file and key_file)")
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(Path(mqtt.cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(path, "mqtt.cert_file", f"not a PEM certificate: {exc}") from None
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [kiosk_id]:
        raise ConfigError(path, "mqtt.cert_file", f"certificate CN {', '.join(map(str, cns)) or '(none)'} "
                                                  f"is not this kiosk's id {kiosk_id!r}")


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: tables merged key by key, any other value replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(path: Path | str, *, simulate: bool = False, settings: Path | str | None = None) -> Config:
    """Read and validate kiosk.toml; ``simulate`` forces --simulate on top of the file's setting.

    ``settings``: the hall's settings (set_config, apply_settings) kept in a file of their own over
    kiosk.toml, when kiosk.toml cannot be written (the image's read-only root) or should stay as
    shipped (an update brings a new one; the hall's settings stay). Missing is empty."""
    path = Path(path)
    raw, data = _read(path)
    if settings is not None and Path(settings).exists():
        over_raw, over = _read(Path(settings))
        for key in sorted(IDENTITY_KEYS):
            section, name = key.split(".")
            if name in over.get(section, {}):
                raise ConfigError(settings, key, "the kiosk's identity and directories are set by provisioning, "
                                  "not in the hall's settings")
        raw, data = raw + b"\0" + over_raw, _merge(data, over)
        try:
            config = _validate(path, raw, data, simulate)
        except ConfigError as exc:
            raise ConfigError(f"{path} with {settings}", exc.key, exc.problem) from None
    else:
        config = _validate(path, raw, data, simulate)
    return dataclasses.replace(config, settings=str(settings or ""))


def _validate(path: Path, raw: bytes, data: dict[str, Any], simulate: bool) -> Config:
    known = {"kiosk", "mqtt", "boss", "sales", "flows", "devices", "ui", "update"}
    for key in data:
        if key not in known:
            raise ConfigError(path, key, f"unknown section (known: {', '.join(sorted(known))})")
    if "kiosk" not in data:
        raise ConfigError(path, "kiosk", "missing section [kiosk] (needs id and hall)")
    kiosk = build_section(path, "kiosk", KioskSection, data["kiosk"])
    if simulate:
        kiosk = dataclasses.replace(kiosk, simulate=True)
    if kiosk.log_level not in LOG_LEVELS:
        raise ConfigError(path, "kiosk.log_level", f"expected one of {sorted(LOG_LEVELS)}, got {kiosk.log_level!r}")
    for i, service in enumerate(kiosk.services):
        if service not in _service_names():
            raise ConfigError(path, f"kiosk.services[{i}]",
                              f"unknown service {service!r} (services: {', '.join(_service_names())})")
        if service in kiosk.services[:i]:
            raise ConfigError(path, f"kiosk.services[{i}]", f"{service!r} is listed twice")
    mqtt = build_section(path, "mqtt", MqttSection, data.get("mqtt", {}))
    _check_files(path, "mqtt", mqtt)
    _check_tls(path, mqtt, kiosk.id)
    devices_table = data.get("devices", {})
    if not isinstance(devices_table, dict):
        raise ConfigError(path, "devices", "expected tables [devices.NAME]")
    sim_ports: dict[str, str] = {}
    devices = {name: _device(path, name, t, kiosk.simulate, sim_ports) for name, t in devices_table.items()}
    boss = build_section(path, "boss", BossSection, data.get("boss", {}))
    if boss.via not in ("", "hall", "url"):
        raise ConfigError(path, "boss.via", f"expected \"hall\" or \"url\", got {boss.via!r}")
    if boss.via == "url" and not boss.url:
        raise ConfigError(path, "boss.url", "missing (required with via = \"url\")")
    sales = build_section(path, "sales", SalesSection, data.get("sales", {}))
    for face, device in sales.card_dispensers.items():
        if not face.isdigit():
            raise ConfigError(path, f"sales.card_dispensers.{face}", "expected a face value in fen, e.g. \"3000\"")
        if device not in devices:
            raise ConfigError(path, f"sales.card_dispensers.{face}", f"no device named {device!r}")
    if sales.sim_dispenser and sales.sim_dispenser not in devices:
        raise ConfigError(path, "sales.sim_dispenser", f"no device named {sales.sim_dispenser!r}")
    from transactions.flow import FlowConfig

    flows = build_section(path, "flows", FlowConfig, data.get("flows", {}))
    if flows.outbox_warn and not 0 < flows.outbox_warn < flows.max_outbox:
        raise ConfigError(path, "flows.outbox_warn", f"must be 0 (half of max_outbox) or above 0 and below "
                          f"flows.max_outbox ({flows.max_outbox}), so the alarm comes before cash is refused")
    ui = build_section(path, "ui", UiSection, data.get("ui", {}))
    _check_ui_listen(path, ui)
    update = build_section(path, "update", UpdateSection, data.get("update", {}))
    if update.running not in ("", "A", "B"):
        raise ConfigError(path, "update.running", f"expected \"A\" or \"B\", got {update.running!r}")
    return Config(str(path), kiosk, mqtt, devices, hashlib.sha256(raw).hexdigest()[:12], boss, sales, flows, ui,
                  update)


def ui_address(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to (host, port); ValueError says what is wrong."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, e.g. \"127.0.0.1:8080\", got {listen!r}")
    return host, int(port)


def _check_ui_listen(path: Path, ui: UiSection) -> None:
    if not ui.listen:
        return
    import ipaddress

    try:
        host, _ = ui_address(ui.listen)
    except ValueError as exc:
        raise ConfigError(path, "ui.listen", str(exc)) from None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not ui.allow_remote:
        raise ConfigError(path, "ui.listen", f"{host} is not a loopback address; the customer's screen is "
                                             "served on loopback only unless [ui] allow_remote = true")


# -- set_config (hall command): one key, validated by this loader, persisted atomically ----------

IDENTITY_KEYS = {"kiosk.id", "kiosk.hall", "kiosk.state_dir", "kiosk.runtime_dir"}  # never changed remotely


def with_setting(path: Path | str, key: str, value: Any, *, simulate: bool = False) -> tuple[str, "Config"]:
    """kiosk.toml's text with ``key`` (dotted, e.g. ``flows.idle_timeout``) set to ``value``, and
    the Config it loads to. Comments and layout survive (tomlkit). Raises ConfigError naming the
    key when the result does not validate, exactly as kioskd would refuse it at start."""
    return with_settings(path, {key: value}, simulate=simulate)


def with_settings(path: Path | str, settings: dict[str, Any], *, simulate: bool = False,
                  over: Path | str | None = None) -> tuple[str, "Config"]:
    """The same for several keys at once (the hall's apply_settings): one text, validated whole.

    With ``over`` (the settings file over kiosk.toml) that file's text is returned, kiosk.toml is
    only read; a settings file not there yet starts empty."""
    import tomlkit

    path = Path(path)
    edited = Path(over) if over else path
    try:
        doc = tomlkit.parse(edited.read_text("utf-8") if over is None or edited.exists() else "")
    except OSError as exc:
        raise ConfigError(edited, "", f"cannot read: {exc.strerror}") from None
    except Exception as exc:  # tomlkit's own parse errors
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    for key, value in settings.items():
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(edited, key, "expected section.key (e.g. flows.idle_timeout)")
        if key in IDENTITY_KEYS:
            raise ConfigError(edited, key, "the kiosk's identity and directories are set by provisioning, not remotely")
        table: Any = doc
        for i, part in enumerate(parts[:-1]):
            if part not in table:
                table[part] = tomlkit.table(is_super_table=i == 0 and parts[0] == "devices")
            table = table[part]
            if not isinstance(table, dict):
                raise ConfigError(edited, ".".join(parts[: i + 1]), "is a value, not a table")
        table[parts[-1]] = value
    text = tomlkit.dumps(doc)
    tmp = edited.with_name(f".{edited.name}.check")
    tmp.write_text(text, "utf-8")
    try:
        config = load(path, simulate=simulate, settings=tmp) if over else load(tmp, simulate=simulate)
    except ConfigError as exc:
        raise ConfigError(edited, exc.key, exc.problem) from None
    finally:
        tmp.unlink(missing_ok=True)
    return text, dataclasses.replace(config, settings=str(over or ""))


def write_atomically(path: Path | str, text: str) -> None:
    """Replace the file so that a power cut leaves the old or the new one, never half of either:
    write a temporary file beside it, fsync it, rename over, fsync the directory (the rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.new")
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o640
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
