"""The kiosk's camera: one still JPEG of the customer at the counter, and whether a face is in it.

Sources, chosen in kiosk.toml (``source``): ``picamera2`` (the Pi's camera module, imported only
when used: it exists only on a Pi), ``opencv`` (a USB camera through OpenCV headless), ``test``
(a drawn picture: --simulate and tests). The photo is personal data: the flow seals it at once.

The face check uses OpenCV's frontal-face Haar cascade (shipped inside opencv-python-headless,
offline, a few ms on a 640x480 frame). Without OpenCV the check answers None ("not checked").
"""
from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..device import Device, Health

log = logging.getLogger("hal.camera")


@dataclass(frozen=True)
class Photo:
    jpeg: bytes = field(repr=False)
    width: int
    height: int
    face: bool | None  # None: no face detector on this kiosk


class CameraFailed(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


def has_face(rgb: Any) -> bool | None:
    """True/False from OpenCV's Haar cascade on an RGB array, None when OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    side = max(48, min(gray.shape[:2]) // 6)  # a customer at the kiosk fills a good part of the frame
    return len(cascade.detectMultiScale(gray, 1.1, 4, minSize=(side, side))) > 0


def to_jpeg(rgb: Any, quality: int = 85) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality)
    return out.getvalue()


def drawn_face(width: int = 640, height: int = 480, face: bool = True) -> Any:
    """A test picture: a plain background, and a simple face (which the Haar cascade finds) or none."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    img = Image.new("L", (width, height), 90)
    if face:
        d = ImageDraw.Draw(img)
        s = min(width, height) // 2
        cx, cy = width // 2, height // 2

        def oval(x: int, y: int, rx: int, ry: int, shade: int) -> None:
            d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=shade)
        oval(cx, cy, int(s * .42), int(s * .55), 200)
        for dx in (-1, 1):
            ex, ey = cx + dx * int(s * .17), cy - int(s * .12)
            oval(ex, ey, int(s * .09), int(s * .05), 40)
            oval(ex, ey - int(s * .1), int(s * .11), int(s * .025), 60)
        oval(cx, cy + int(s * .08), int(s * .04), int(s * .09), 170)
        oval(cx, cy + int(s * .28), int(s * .15), int(s * .04), 70)
        img = img.filter(ImageFilter.GaussianBlur(3))
    return np.asarray(img.convert("RGB"))


class Camera(Device):
    kind: ClassVar[str] = "camera"

    @dataclass(frozen=True)
    class Options:
        source: str = "test"  # picamera2 | opencv | test
        index: int = 0  # opencv: /dev/video<index>
        width: int = 640
        height: int = 480
        face_check: bool = True

    def __init__(self, name: str, options: Any, ctx: Any) -> None:
        super().__init__(name, options, ctx)
        if options.source not in ("picamera2", "opencv", "test"):
            raise ValueError(f"camera source {options.source!r}: picamera2, opencv or test")
        self.face_next = True  # test source: whether the next picture has a face (the demo's control)
        self._cam: Any = None

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._open)
            self.set_health(Health.OK, self.options.source)
        except Exception as exc:  # noqa: BLE001 - a missing camera is a fault, not a crash
            self.report("fault", "camera_unavailable", f"{self.options.source}: {exc}")
            self.set_health(Health.FAULT, f"{self.options.source}: {exc}")

    def _open(self) -> None:
        o = self.options
        if o.source == "picamera2":
            from picamera2 import Picamera2  # only on a Pi

            cam = Picamera2()
            cam.configure(cam.create_still_configuration(main={"size": (o.width, o.height), "format": "RGB888"}))
            cam.start()
            self._cam = cam
        elif o.source == "opencv":
            import cv2

            cam = cv2.VideoCapture(o.index)
            if not cam.isOpened():
                raise CameraFailed("camera_unavailable", f"/dev/video{o.index} does not open")
            cam.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
            cam.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
            self._cam = cam

    async def stop(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            await asyncio.to_thread(cam.stop if self.options.source == "picamera2" else cam.release)

    def _frame(self) -> Any:
        o = self.options
        if o.source == "test":
            return drawn_face(o.width, o.height, self.face_next)
        if self._cam is None:
            raise CameraFailed("camera_unavailable", "not open")
        if o.source == "picamera2":
            return self._cam.capture_array()[:, :, ::-1]  # RGB888 is BGR in memory order
        import cv2

        ok, bgr = self._cam.read()
        if not ok:
            raise CameraFailed("no_frame", "the USB camera returned no frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _still(self) -> Photo:
        rgb = self._frame()
        face = has_face(rgb) if self.options.face_check else None
        return Photo(to_jpeg(rgb), rgb.shape[1], rgb.shape[0], face)

    async def capture(self) -> Photo:
        """One still, in a worker thread (a capture and a JPEG encode take tens of ms)."""
        try:
            photo = await asyncio.to_thread(self._still)
        except CameraFailed as exc:
            self.report("fault", exc.code, str(exc))
            self.set_health(Health.FAULT, str(exc))
            raise
        except Exception as exc:  # noqa: BLE001
            self.report("fault", "camera_failed", repr(exc))
            self.set_health(Health.FAULT, repr(exc))
            raise CameraFailed("camera_failed", repr(exc)) from None
        self.set_health(Health.OK, self.options.source)
        return photo

    async def self_test(self) -> str:
        try:
            p = await self.capture()
        except CameraFailed as exc:
            return f"{self.name}: FAIL {exc}"
        return f"{self.name}: ok, {p.width}x{p.height}, {len(p.jpeg)} bytes, face {p.face}"
