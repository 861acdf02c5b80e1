"""The licence document: a one-page PDF with the licence in Chinese, a QR code carrying the
identifier and a verification token, and the signed directory fields in the PDF's metadata so that
the document can be verified offline with only the issuer's public key (tools/verify_license.py)."""
import base64
import functools
import io
import itertools
import json

import numpy as np
from reportlab.graphics.barcode import qrencoder
from reportlab.lib.pagesizes import A5, landscape
from reportlab.pdfgen import canvas

from services.common.pdf import FONT
from services.elicense import codec

MARKER = "onething-license/1"


def qr_token(fields):
    """The verification token the QR code carries: the first 24 characters of the signature. Public
    verification (VerifyLicense) needs it with the identifier: the identifier alone is not enough."""
    return (fields.get("signature") or "")[:24]


def qr_payload(fields):
    """What the QR code carries: the identifier and a verification token (qr_token), enough for a
    window clerk's scanner to look the licence up and check it."""
    return json.dumps({"id": fields["license_id"], "token": qr_token(fields), "kid": fields["key_id"]},
                      separators=(",", ":"))


def _gf_tables():
    """GF(256) with the QR code's polynomial x^8 + x^4 + x^3 + x^2 + 1: EXP[i] = α^i (doubled in
    length, so a sum of two logarithms needs no modulo), LOG its inverse."""
    exp, log, value = [0] * 510, [0] * 256, 1
    for i in range(255):
        exp[i] = exp[i + 255] = value
        log[value] = i
        value <<= 1
        if value & 0x100:
            value ^= 0x11D
    return exp, log


_EXP, _LOG = _gf_tables()


@functools.lru_cache(maxsize=32)
def _generator(degree):
    """The Reed-Solomon generator (x - α^0)(x - α^1)…(x - α^(degree-1)), coefficients from x^degree
    down, as logarithms (the leading 1 left out)."""
    poly = [1]
    for i in range(degree):
        out = [*poly, 0]
        for j, c in enumerate(poly):
            if c:
                out[j + 1] ^= _EXP[_LOG[c] + i]
        poly = out
    return tuple(_LOG[c] for c in poly[1:])


def _remainder(data, degree):
    """The `degree` error-correction codewords of `data`: data·x^degree mod the generator."""
    gen = _generator(degree)
    rem = [0] * degree
    for byte in data:
        factor = byte ^ rem[0]
        rem = [*rem[1:], 0]
        if factor:
            lf = _LOG[factor]
            rem = [r ^ _EXP[lf + g] for r, g in zip(rem, gen, strict=True)]
    return rem


def _codewords(code):
    """What reportlab's QRCode.createData gives (the data bits, terminator and padding, then each
    block's data and error-correction codewords interleaved), with the remainders computed above."""
    blocks = qrencoder.QRRSBlock.getRSBlocks(code.version, code.errorCorrectLevel)
    buffer = qrencoder.QRBitBuffer()
    for data in code.dataList:
        data.write(buffer, code.version)
    capacity = 8 * sum(b.dataCount for b in blocks)
    if buffer.getLengthInBits() > capacity:
        raise ValueError(f"QR data too long: {buffer.getLengthInBits()} bits > {capacity}")
    if buffer.getLengthInBits() + 4 <= capacity:
        buffer.put(0, 4)
    while buffer.getLengthInBits() % 8:
        buffer.putBit(False)
    raw = list(buffer.buffer[:buffer.getLengthInBits() // 8])
    pad = (0xEC, 0x11)
    raw += [pad[i % 2] for i in range(capacity // 8 - len(raw))]
    data_blocks, ec_blocks, offset = [], [], 0
    for b in blocks:
        data_blocks.append(raw[offset:offset + b.dataCount])
        offset += b.dataCount
        ec_blocks.append(_remainder(data_blocks[-1], b.totalCount - b.dataCount))
    out: list[int] = []
    for group in (data_blocks, ec_blocks):
        for i in range(max(len(g) for g in group)):
            out.extend(g[i] for g in group if i < len(g))
    return out


@functools.lru_cache(maxsize=64)
def _masks(n):
    """The eight mask patterns of an n×n symbol, as reportlab's QRUtil defines them (True: flip)."""
    return np.array([[[bool(qrencoder.QRUtil.getMask(k)(r, c)) for c in range(n)] for r in range(n)]
                     for k in range(8)], dtype=bool)


def qr_modules(text):
    """The QR code of `text` (error correction level L, the smallest version that holds it, the
    mask pattern of least penalty) as rows of booleans, dark = True: the same code reportlab's
    QRCode.make() gives, made faster where a licence's document spent its time. reportlab lays out
    the symbol once (mask 0); the codewords' error correction is computed with tables (_codewords),
    and the eight masks are applied and scored with numpy (mask_penalty) instead of laying the data
    out eight more times and scoring it row by row in Python."""
    code = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.L)
    code.addData(text)
    code.version = code.calculate_version()
    code.dataCache = _codewords(code)
    code.makeImpl(True, 0)  # mask 0, the format bits left light (as make() scores the masks)
    symbol = np.array(code.modules, dtype=bool)
    masks = _masks(len(symbol))
    cols, rows = np.array(code.dataPosIterator()).T  # where the data went, (col, row) each
    data = symbol[rows, cols] ^ masks[0, rows, cols]  # unmasked
    scores = []
    for mask in range(8):
        symbol[rows, cols] = data ^ masks[mask, rows, cols]
        scores.append(mask_penalty(symbol))
    best = scores.index(min(scores))  # the first of the least, as make() picks
    symbol[rows, cols] = data ^ masks[best, rows, cols]
    code.modules = symbol.tolist()
    code.setupTypeInfo(False, best)  # the format (and version) bits, now set, as make() leaves them
    if code.version >= 7:
        code.setupTypeNumber(False)
    return code.modules


_FINDER_LIKE = np.array([1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)


def mask_penalty(modules):
    """The penalty reportlab's QRUtil.getLostPoint gives a masked symbol (a square bool array):
    runs of five or more alike, in rows and in columns (length - 2 each); 2x2 blocks alike (3
    each); the finder-like 1:1:3:1:1 pattern followed by four light modules, in rows only and at the
    positions its scan reaches (40 each); and the dark share's distance from half. Scored as
    reportlab scores, so the mask chosen is the one its make() would choose."""
    n = len(modules)
    score = 0
    for lines in (modules, modules.T):
        # every line's runs, the lines kept apart by a separator value that never runs long
        flat = np.concatenate([lines.astype(np.int8), np.full((n, 1), 2, dtype=np.int8)], axis=1).ravel()
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        runs = np.diff(np.concatenate(([0], edges, [flat.size])))
        score += int((runs[runs >= 5] - 2).sum())
    # rows only: reportlab's column scan compares tuples with a list, which never matches
    windows = np.lib.stride_tricks.sliding_window_view(modules, len(_FINDER_LIKE), axis=1)
    score += 40 * int((windows[:, :n - len(_FINDER_LIKE)] == _FINDER_LIKE).all(axis=2).sum())
    alike = ((modules[1:, 1:] == modules[1:, :-1]) & (modules[1:, 1:] == modules[:-1, 1:])
             & (modules[1:, 1:] == modules[:-1, :-1]))
    score += 3 * int(alike.sum())
    dark = int(modules.sum())
    score += 10 * (abs(100 * dark // (n * n) - 50) // 5)
    return score


def draw_qr(c, text, x, y, size, border=4):
    """The QR code of `text` in a `size`-point square at (x, y) with a quiet zone of `border`
    modules, as one filled path of each row's dark runs: the code is computed once and the page
    gets one path instead of a drawing object per run."""
    rows = qr_modules(text)
    box = size / (len(rows) + 2 * border)
    path = c.beginPath()
    for r, row in enumerate(rows):
        top = y + size - (r + border + 1) * box
        col = 0
        for dark, run in itertools.groupby(row):
            count = sum(1 for _ in run)
            if dark:
                path.rect(x + (col + border) * box, top, count * box, box)
            col += count
    c.saveState()
    c.setFillColorRGB(0, 0, 0)
    c.drawPath(path, stroke=0, fill=1)
    c.restoreState()


def render(fields, public_key_b64):
    buf = io.BytesIO()
    width, height = landscape(A5)
    c = canvas.Canvas(buf, pagesize=(width, height), invariant=1)
    c.setTitle(f"{fields['type_name']} {fields['license_no']}")
    c.setAuthor(fields["issuer_name"])
    c.setSubject(MARKER)
    # the signed fields travel as base64 JSON in the keywords, ASCII only (the status in its stored form)
    data = {**codec.licence_to_stored(fields), "public_key": public_key_b64}
    c.setKeywords(f"{fields['license_id']} " + base64.b64encode(
        json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")).decode())
    c.setFont(FONT, 22)
    c.drawCentredString(width / 2, height - 60, fields["type_name"])
    c.setFont(FONT, 11)
    rows = [("证照编号", fields["license_no"]), ("持证主体", fields["holder_name"]),
            ("持证主体代码", fields["holder_code"]), ("颁发机构", fields["issuer_name"]),
            ("颁发机构代码", fields["issuer_code"]), ("有效期自", fields["valid_from"]),
            ("有效期至", fields["valid_to"] or "长期"), ("关联事项", fields["item_code"]),
            ("办件编号", fields["case_no"]), ("电子证照标识", fields["license_id"])]
    y = height - 100
    for label, value in rows:
        c.drawString(40, y, f"{label}：{value}")
        y -= 20
    draw_qr(c, qr_payload(fields), width - 130 - 30, 40, 130)
    c.setFont(FONT, 8)
    c.drawString(40, 30, f"签名密钥 {fields['key_id']}  扫码或用 tools/verify_license.py 离线核验")
    c.showPage()
    c.save()
    return buf.getvalue()


def read(pdf_bytes):
    """The signed fields (with the issuer's public key as it was embedded) from a licence PDF.
    Anything else (not a PDF, a PDF of something else, fields that are not what elicense
    embeds): ValueError. The bytes may come from anyone (VerifyLicenseDocument): whatever the PDF
    parser trips over is "not a readable PDF", never another error."""
    from pypdf import PdfReader
    try:
        meta: dict = dict(PdfReader(io.BytesIO(pdf_bytes)).metadata or {})
    except Exception as exc:  # pypdf raises more than PyPdfError on malformed input
        raise ValueError(f"not a readable PDF ({type(exc).__name__})") from None
    if meta.get("/Subject") != MARKER:
        raise ValueError("this is not an onething licence document")
    keywords = meta.get("/Keywords", "")
    _, _, encoded = str(keywords).partition(" ")
    try:
        data = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"))
    except ValueError:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise ValueError("the licence fields embedded in the document cannot be read") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError("the licence fields embedded in the document are not the fields of a licence")
    return codec.licence_of_stored(data)
