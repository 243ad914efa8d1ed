"""An independent PNG decoder for tests/viz: zlib + the five PNG row filters, no libpng.

Usage: decode_png.py IN.png OUT.raw  -> writes the 8-bit pixels (rows top first, channels
interleaved) to OUT.raw and prints "WIDTH HEIGHT CHANNELS". Handles what medseg writes:
bit depth 8, colour types 0 (grey), 2 (RGB) and 6 (RGBA), no interlacing.
"""
import struct
import sys
import zlib


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, "bad CRC in " + kind.decode()
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (0, 2, 6), header
    channels = {0: 1, 2: 3, 6: 4}[colour]
    raw, stride = zlib.decompress(idat), width * channels
    out, prev = bytearray(), bytearray(stride)
    for r in range(height):
        f, row = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            row[i] = (row[i] + (0, a, b, (a + b) // 2, paeth(a, b, c))[f]) & 0xFF
        out += row
        prev = row
    return width, height, channels, bytes(out)


if __name__ == "__main__":
    w, h, ch, pixels = decode(open(sys.argv[1], "rb").read())
    open(sys.argv[2], "wb").write(pixels)
    print(w, h, ch)
