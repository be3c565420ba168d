"""Small, real media files made in memory for tests."""

from __future__ import annotations

import struct


def mp4_bytes(size: int = 64 * 1024) -> bytes:
    """Bytes that start like an MP4 (an ftyp box), padded with an mdat box."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"isom", 512) + b"isomiso2"
    mdat_len = max(size - len(ftyp), 8)
    return ftyp + struct.pack(">I4s", mdat_len, b"mdat") + b"\0" * (mdat_len - 8)


def jpeg_bytes(width: int = 1080, height: int = 1080) -> bytes:
    """A real JPEG image made with Pillow."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def mp4_video(width: int = 640, height: int = 360, seconds: int = 4, fps: int = 10) -> bytes:
    """A real H.264 MP4 (encoded with PyAV) of the given size and length."""
    import tempfile
    from pathlib import Path

    import av
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream("h264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for index in range(seconds * fps):
                picture = Image.new("RGB", (width, height), (index * 7 % 256, 90, 160))
                container.mux(stream.encode(av.VideoFrame.from_image(picture)))
            container.mux(stream.encode())
        return path.read_bytes()
