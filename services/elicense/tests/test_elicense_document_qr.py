"""The licence's QR code is drawn straight onto the page (one path of each row's dark runs): the
modules on the page are the QR code of the payload, with its finder patterns where a scanner looks,
and the same code reportlab's own widget would have drawn."""
import io
import re

import pytest
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.pdfgen import canvas

from services.elicense import document

PAYLOAD = '{"id":"4f0c2a9e6b1d4e7f8a3c5b2d9e1f0a7c","token":"MEUCIQDx3v1p9Qk2f7b0aZr8sT4u","kid":"k-2026"}'
FINDER = [[1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 1], [1, 0, 1, 1, 1, 0, 1], [1, 0, 1, 1, 1, 0, 1],
          [1, 0, 1, 1, 1, 0, 1], [1, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1]]


def drawn_modules(text, size=130.0, border=4):
    """Draw the code on a page of its own and read the rectangles back into rows of modules."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(size, size), pageCompression=0, invariant=1)
    document.draw_qr(c, text, 0, 0, size, border)
    c.showPage()
    c.save()
    n = len(document.qr_modules(text))
    box = size / (n + 2 * border)
    grid = [[0] * n for _ in range(n)]
    number = r"(-?[\d.]+)"
    rects = re.findall(rf"{number} {number} {number} {number} re".encode(), buf.getvalue())
    assert rects, "no rectangles drawn"
    for x, y, w, _h in rects:
        col = round(float(x) / box) - border
        row = round((size - float(y)) / box) - border - 1
        for k in range(round(float(w) / box)):
            grid[row][col + k] = 1
    return grid


def test_the_page_carries_the_payloads_code():
    expected = [[int(bool(m)) for m in row] for row in document.qr_modules(PAYLOAD)]
    assert drawn_modules(PAYLOAD) == expected


def test_finder_patterns_sit_in_three_corners():
    grid = drawn_modules(PAYLOAD)
    n = len(grid)
    assert [row[:7] for row in grid[:7]] == FINDER
    assert [row[n - 7:] for row in grid[:7]] == FINDER
    assert [row[:7] for row in grid[n - 7:]] == FINDER
    assert any(any(row[8:n - 8]) for row in grid[8:n - 8])  # data, not an empty square


def test_same_code_as_reportlabs_widget():
    widget = QrCodeWidget(PAYLOAD)
    widget.draw()
    assert [list(map(bool, row)) for row in widget.qr.modules] == \
        [list(map(bool, row)) for row in document.qr_modules(PAYLOAD)]


def test_a_different_payload_gives_a_different_code():
    assert document.qr_modules(PAYLOAD) != document.qr_modules(PAYLOAD.replace("k-2026", "k-2027"))


def test_the_mask_is_the_one_reportlabs_own_make_chooses():
    """qr_modules scores the eight masks with numpy (document.mask_penalty): for payloads of every
    length up to a large version, each mask's penalty and so the code are reportlab's."""
    import random
    import string

    import numpy as np
    from reportlab.graphics.barcode import qrencoder
    rng = random.Random(7)
    for length in list(range(1, 40)) + [rng.randint(40, 400) for _ in range(40)]:
        text = "".join(rng.choice(string.ascii_letters + string.digits + '{}":,-_') for _ in range(length))
        code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.L)
        code.addData(text)
        code.version = code.calculate_version()
        for mask in range(8):
            code.makeImpl(True, mask)
            assert document.mask_penalty(np.array(code.modules, dtype=bool)) == qrencoder.QRUtil.getLostPoint(code)
        reference = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.L)
        reference.addData(text)
        reference.make()
        assert document.qr_modules(text) == reference.modules, length


def test_the_codewords_are_reportlabs_for_every_version_and_block_layout():
    """document._codewords (the data, its padding and each block's Reed-Solomon remainder,
    interleaved) equals reportlab's createData, for payloads from one byte to version 40's capacity,
    so for single- and many-block layouts alike."""
    import random
    import string

    from reportlab.graphics.barcode import qrencoder
    rng = random.Random(11)
    seen_versions = set()
    for length in [1, 2, 17, 18, 53, 78, 106, 134, 154, 192, 230, 271, 321, 367, 425, 458, 520, 586, 644, 718,
                   792, 858, 929, 1003, 1091, 1171, 1273, 1367, 1465, 1528, 1628, 1732, 1840, 1952, 2068, 2188,
                   2303, 2431, 2563, 2699, 2809]:
        text = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))
        code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.L)
        code.addData(text)
        code.version = code.calculate_version()
        seen_versions.add(code.version)
        expected = qrencoder.QRCode.createData(code.version, code.errorCorrectLevel, code.dataList)
        assert document._codewords(code) == expected, (length, code.version)
    assert len(seen_versions) >= 35  # nearly every version, so every block layout of level L


def test_a_payload_too_long_for_any_qr_code_is_refused_with_a_clear_error():
    from reportlab.graphics.barcode import qrencoder
    code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.L)
    code.addData("x" * 2953)
    code.version = code.calculate_version()
    code.dataList[0].data = "x" * 3100  # more than version 40 holds
    with pytest.raises(ValueError, match="QR data too long"):
        document._codewords(code)
