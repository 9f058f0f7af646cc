#!/usr/bin/env python3
"""Draws the volunteer page's icons (the PNGs beside this file).

One button in a ring, on the pages' dark blue: the wristband's single
button. Plain Python (zlib + struct), no imaging library; 4x4 supersampling
for smooth edges. Run from anywhere: `python3 assets/icons/make-icons.py`.
"""

import math
import os
import struct
import zlib

NAVY = (0x1D, 0x2B, 0x3A)
WHITE = (0xFF, 0xFF, 0xFF)
RED = (0xE5, 0x48, 0x4D)
HERE = os.path.dirname(os.path.abspath(__file__))
SS = 4  # samples per pixel along each axis


def rounded_square(x, y, radius):
    """Inside a unit square (0..1) with corners rounded by `radius`."""
    cx = min(max(x, radius), 1 - radius)
    cy = min(max(y, radius), 1 - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2 and 0 <= x <= 1 and 0 <= y <= 1


def layers(x, y, kind):
    """The colour (r, g, b, a) of one sample at (x, y) in 0..1."""
    d = math.hypot(x - 0.5, y - 0.5)
    if kind == "badge":
        # Monochrome (only the alpha counts): Android draws it in the status bar.
        if 0.30 <= d <= 0.42 or d <= 0.21:
            return (*WHITE, 255)
        return (0, 0, 0, 0)
    # "any": a rounded tile; "maskable" and "apple": full bleed (the
    # platform cuts its own shape), the ring inside the 40 % safe circle.
    if kind == "any" and not rounded_square(x, y, 0.22):
        return (0, 0, 0, 0)
    if 0.25 <= d <= 0.31:
        return (*WHITE, 255)
    if d <= 0.19:
        return (*RED, 255)
    return (*NAVY, 255)


def render(size, kind):
    rows = []
    step = 1.0 / (size * SS)
    for py in range(size):
        row = bytearray([0])  # filter: none
        for px in range(size):
            r = g = b = a = 0
            for sy in range(SS):
                for sx in range(SS):
                    x = (px * SS + sx + 0.5) * step
                    y = (py * SS + sy + 0.5) * step
                    cr, cg, cb, ca = layers(x, y, kind)
                    r += cr * ca
                    g += cg * ca
                    b += cb * ca
                    a += ca
            n = SS * SS
            if a:
                row += bytes((r // a, g // a, b // a, a // n))
            else:
                row += b"\0\0\0\0"
        rows.append(bytes(row))
    return png(size, size, b"".join(rows))


def png(width, height, raw):
    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


ICONS = [
    ("volunteer-192.png", 192, "any"),
    ("volunteer-512.png", 512, "any"),
    ("volunteer-maskable-512.png", 512, "maskable"),
    ("apple-touch-icon.png", 180, "apple"),
    ("badge-96.png", 96, "badge"),
]

if __name__ == "__main__":
    for name, size, kind in ICONS:
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(render(size, kind))
        print(name, size, kind)
