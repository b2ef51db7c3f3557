"""The camera: a still JPEG and a face check (OpenCV's Haar cascade); sources that cannot open are faults."""
import io
import sys

from PIL import Image

from hal.camera import Camera, CameraFailed, drawn_face, has_face
from hal.device import DeviceContext, Health


def camera(**options) -> Camera:
    events = []
    cam = Camera("camera", Camera.Options(**options), DeviceContext(report=events.append))
    cam.events = events
    return cam


async def test_the_test_source_gives_a_jpeg_with_a_face():
    async with camera(width=320, height=240) as cam:
        photo = await cam.capture()
        assert photo.face is True and (photo.width, photo.height) == (320, 240)
        assert Image.open(io.BytesIO(photo.jpeg)).size == (320, 240) and photo.jpeg[:2] == b"\xff\xd8"
        cam.face_next = False  # the customer stepped away
        assert (await cam.capture()).face is False


def test_the_face_check_finds_no_face_in_a_plain_picture_and_says_none_without_opencv(monkeypatch):
    assert has_face(drawn_face(face=False)) is False
    monkeypatch.setitem(sys.modules, "cv2", None)  # an import of cv2 now fails
    assert has_face(drawn_face()) is None


async def test_a_pi_camera_off_the_pi_is_a_fault_not_a_crash():
    async with camera(source="picamera2") as cam:
        assert cam.health == Health.FAULT and cam.events[0].code == "camera_unavailable"
        try:
            await cam.capture()
            raise AssertionError("captured without a camera")
        except CameraFailed as exc:
            assert exc.code == "camera_unavailable"


async def test_a_usb_camera_that_is_not_there():
    async with camera(source="opencv", index=97) as cam:
        assert cam.health == Health.FAULT and "video97" in cam.health_detail


async def test_without_the_face_check():
    async with camera(face_check=False) as cam:
        assert (await cam.capture()).face is None
