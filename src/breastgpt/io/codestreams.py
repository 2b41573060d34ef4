"""The declared size of a JPEG, JPEG-LS or JPEG 2000 codestream, read from its header without decoding.

Decoders allocate what a codestream declares, whatever its container (a DICOM frame, a TIFF tile) says; the
readers compare the two first, so a small file cannot make a decoder allocate gigabytes.
"""

from __future__ import annotations

import struct

# Start-of-frame markers carrying the frame size: SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC); F7 is
# JPEG-LS's SOF55.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
HEAD_BYTES = 64 * 1024  # a codestream's SOF / SIZ lies within its first bytes


def jpeg_size(head: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from the first SOF marker of a JPEG or JPEG-LS codestream, None if unreadable."""
    if head[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _SOF_MARKERS and position + 10 <= len(head):
            rows, columns = struct.unpack(">HH", head[position + 5:position + 9])
            return rows, columns, head[position + 9]
        position += 2 + struct.unpack(">H", head[position + 2:position + 4])[0]
    return None


def j2k_size(head: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from the SIZ marker of a JPEG 2000 codestream (bare or inside a JP2 file)."""
    start = head.find(b"\xff\x4f\xff\x51")
    if start < 0 or start + 42 > len(head):
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[start + 8:start + 24])
    components = struct.unpack(">H", head[start + 40:start + 42])[0]
    return ysiz - yosiz, xsiz - xosiz, components
