#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_frame (one valid frame, or a short stream
of frames, per file) into corpus/frame.  Run from tests/fuzz; the output is
committed, so this is only needed when the format changes."""
import os
import struct
import zlib

MAGIC, VERSION = 0x46425350, 1


def frame(ftype, body, host=1, req=0x100000002):
    hdr = struct.pack('<IBBHII', MAGIC, VERSION, ftype, host, len(body), 0) + struct.pack('<Q', req)
    crc = zlib.crc32(hdr[0:6] + hdr[8:12] + hdr[16:24] + body) & 0xffffffff
    return hdr[0:12] + struct.pack('<I', crc) + hdr[16:24] + body


def frame_nocrc(ftype, body, host=1, req=0x100000002):
    """A data connection's frame: type bit 0x80, crc field 0, unchecked."""
    return struct.pack('<IBBHII', MAGIC, VERSION, ftype | 0x80, host, len(body), 0) + struct.pack('<Q', req) + body


def kv(n, vlen, push):
    b = struct.pack('<IIQII', 0, vlen, 1000, n, 0) + b''.join(struct.pack('<Q', 10 + i) for i in range(n))
    if push:
        b += struct.pack('<%df' % (n * vlen), *([0.5] * (n * vlen)))
    return b


# Wire filters (lib/net/filter.h): kv flags KEYDEF 0x10, KEYREF 0x20, ZVALS
# 0x40; a REPLY's nvals bit 31; a block is u8 method (1 zeros, 2 LZ4), 3
# zero bytes, then the data.
def kv_filtered(n, vlen, flags, keys, values):
    b = struct.pack('<IIQII', 0, vlen, 1000, n, flags)
    if flags & 0x30:
        b += struct.pack('<Q', 7)  # the list's id
    if keys:
        b += b''.join(struct.pack('<Q', 10 + i) for i in range(n))
    return b + values


def zeros_block(floats):
    bm = bytearray((len(floats) + 7) // 8)
    words = b''
    for i, f in enumerate(floats):
        if f != 0:
            bm[i // 8] |= 1 << (i % 8)
            words += struct.pack('<f', f)
    return bytes([1, 0, 0, 0]) + bytes(bm) + words


def lz4_literals_block(raw):
    # one LZ4 sequence of literals only (a valid last sequence)
    n = len(raw)
    assert 15 <= n < 15 + 255
    return bytes([2, 0, 0, 0, 0xF0, n - 15]) + raw


def sstr(s):
    return bytes([len(s)]) + s.encode()


seeds = {
    'hello': frame(1, struct.pack('<HH', 1, 2) + bytes(range(32)) + struct.pack('<I', 0)),
    'hello_data': frame(1, struct.pack('<HH', 1, 2) + bytes(range(32)) + struct.pack('<I', 3)),
    'auth': frame(2, bytes(range(32, 64))),
    'refuse': frame(3, struct.pack('<iH', -30920, 11) + b'wrong token'),
    'layout': frame(4, struct.pack('<IHHII', 1, 1, 2, 2, 1) + bytes(32) + bytes(32) + struct.pack('<H', 4000)
                    + sstr('127.0.0.1') + sstr('hosta')),
    'peers': frame(5, struct.pack('<H', 2) + struct.pack('<H', 4000) + sstr('127.0.0.1')
                   + struct.pack('<H', 4001) + sstr('::1')),
    'heartbeat': frame(6, b''),
    'bye': frame(7, struct.pack('<i', 0)),
    'abort': frame(8, struct.pack('<iH', -30923, 4) + b'dead'),
    'pull': frame(16, kv(3, 4, False)),
    'push': frame(17, kv(2, 3, True)),
    'reply': frame(18, struct.pack('<iI', 0, 4) + struct.pack('<4f', 1, 2, 3, 4)),
    'barrier': frame(19, struct.pack('<QQiI', 1, 77, 0, 0)),
    'release': frame(20, struct.pack('<QQiI', 1, 77, 0, 1)),
    'redirect': frame(21, struct.pack('<II', 2, 0) + struct.pack('<IiQ', 0, 2, 10) + struct.pack('<IiQ', 2, -1, 12)),
    'move': frame(22, struct.pack('<IIIIQII', 0, 1, 4, 1, 1000, 2, 0) + struct.pack('<QQ', 10, 11)),
    'move_reply': frame(23, struct.pack('<iIII', 0, 2, 2, 1) + struct.pack('<iiii', 1, 0, 0, 2)
                        + struct.pack('<2f', 1.5, 2.5)),
    'clock': frame(25, struct.pack('<QQ', 7, (2 << 32) | 3), req=0),
    'rpull': frame(27, kv(3, 4, False)),
    'rpush': frame(28, kv(2, 3, True)),
    'barrier_min': frame(19, struct.pack('<QQiI', 2, 5, 0, 2)),
    'ckpt': frame(29, struct.pack('<iH', 0, 13) + b'/tmp/job.ckpt'),
    # a backup round's last frame (net/backup.c: node 0, BK_END, round 7)
    'backup': frame(30, kv(2, 3, True), req=(1 << 55) | 7),
    # elastic jobs (bridge.c EL1-EL8)
    'welcome': frame(40, struct.pack('<HHH', 2, 2, 2)
                     + struct.pack('<HBH', 0, 1, 4000) + b'127.0.0.1'.ljust(64, b'\0')
                     + struct.pack('<HBH', 1, 1, 4001) + b'127.0.0.1'.ljust(64, b'\0'), req=0),
    'sync': frame(41, struct.pack('<QQQQIiHHHHQ', 5, 3, 7, (1 << 32), 0, 0, 1, 0, 0, 0, 99)
                  + struct.pack('<H', 2), req=0),
    'sync_result': frame(41, struct.pack('<QQQQIiHHHHQ', 5, 3, 0, 0, 2, 0, 1, 1, 2, 0, 0)
                         + struct.pack('<HH', 2, 3) + struct.pack('<HQQ', 0, 7, 1 << 32)
                         + struct.pack('<HQQ', 2, 7, 0), req=0),
    'ready': frame(42, struct.pack('<Q', 99), req=0),
    'leave': frame(43, b'', req=0),
    'datafd': frame(44, struct.pack('<H', 2), req=0),
}
sparse = [0.0] * 5 + [1.5] + [0.0] * 3 + [-2.0, 0.0, 0.0]  # 2 x 6 floats
seeds['pull_keydef'] = frame(16, kv_filtered(3, 4, 0x10, True, b''))
seeds['pull_keyref'] = frame(16, kv_filtered(3, 4, 0x20, False, b''))
seeds['push_keyref_zeros'] = frame(17, kv_filtered(2, 6, 0x60, False, zeros_block(sparse)))
seeds['push_keydef_lz4'] = frame(17, kv_filtered(2, 2, 0x50, True,
                                                 lz4_literals_block(struct.pack('<4f', 1, 2, 3, 4))))
seeds['reply_zeros'] = frame(18, struct.pack('<iI', 0, 12 | 0x80000000) + zeros_block(sparse))
seeds['reply_lz4'] = frame(18, struct.pack('<iI', 0, 4 | 0x80000000) + lz4_literals_block(struct.pack('<4f', 1, 2, 3, 4)))
seeds['stream'] = seeds['pull'] + seeds['push'] + seeds['heartbeat']
# a data connection between nodes: every type it carries, without checksum
seeds['data_stream'] = (frame_nocrc(16, kv(3, 4, False)) + frame_nocrc(17, kv(2, 3, True))
                        + frame_nocrc(21, struct.pack('<II', 1, 0) + struct.pack('<IiQ', 0, 2, 10))
                        + frame_nocrc(18, struct.pack('<iI', 0, 4) + struct.pack('<4f', 1, 2, 3, 4))
                        + frame_nocrc(22, struct.pack('<IIIIQII', 0, 1, 4, 1, 1000, 1, 0) + struct.pack('<Q', 10))
                        + frame_nocrc(23, struct.pack('<iIII', 0, 1, 2, 1) + struct.pack('<ii', 1, 0)
                                      + struct.pack('<2f', 1.5, 2.5))
                        + frame_nocrc(27, kv(1, 4, False)) + frame_nocrc(28, kv(1, 3, True)))
seeds['truncated'] = seeds['push'][:-3]
os.makedirs('corpus/frame', exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join('corpus/frame', name), 'wb') as f:
        f.write(data)
