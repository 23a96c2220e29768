"""Cut the shipped sample clip ``data/people_walking.mp4`` from OpenCV's ``vtest.avi``.

Source: Debian package ``opencv-doc`` (4.6.0+dfsg-12), file
``/usr/share/doc/opencv-doc/examples/data/vtest.avi`` (upstream ``samples/data/vtest.avi`` of
OpenCV). Get it without installing the package::

    apt-get download opencv-doc && dpkg -x opencv-doc_*_all.deb opencv-doc

then run (PyAV and Pillow are enough)::

    python data/cut_sample_clip.py opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi

It keeps frames 540–603 (64 frames, 6.4 s at the source's 10 fps), downscales 768×576 → 320×240
with a Lanczos filter and encodes H.264 (libx264, CRF 23, yuv420p, a keyframe every 16 frames).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

FIRST, COUNT, SIZE = 540, 64, (320, 240)


def cut(source: Path, target: Path) -> None:
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        fps = Fraction(stream.average_rate)
        frames = []
        for i, frame in enumerate(src.decode(stream)):
            if i >= FIRST + COUNT:
                break
            if i >= FIRST:
                frames.append(frame.to_image().resize(SIZE, Image.LANCZOS))
    if len(frames) != COUNT:
        raise ValueError(f"{source} has only {FIRST + len(frames)} frames, need {FIRST + COUNT}")
    with av.open(str(target), mode="w") as out:
        enc = out.add_stream("libx264", rate=fps)
        enc.width, enc.height, enc.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        enc.options = {"crf": "23", "preset": "slow", "g": "16"}
        for image in frames:
            for packet in enc.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in enc.encode():
            out.mux(packet)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="path to vtest.avi")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("people_walking.mp4"))
    args = parser.parse_args()
    cut(args.source, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
