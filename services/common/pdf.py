"""Plain one-page documents with Chinese text (reportlab, with the STSong-Light CID font every PDF
reader carries, so no font file is needed)."""
import io

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))


def text_document(title, lines, subject="", keywords=""):
    """A4 pages: a centred title and then the lines, wrapped onto new pages as needed."""
    buf = io.BytesIO()
    width, height = A4
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    c.setTitle(title)
    c.setSubject(subject)
    c.setKeywords(keywords)
    c.setFont(FONT, 18)
    c.drawCentredString(width / 2, height - 60, title)
    c.setFont(FONT, 11)
    y = height - 100
    for line in lines:
        for part in _wrap(line, 46):
            if y < 50:
                c.showPage()
                c.setFont(FONT, 11)
                y = height - 60
            c.drawString(50, y, part)
            y -= 18
    c.showPage()
    c.save()
    return buf.getvalue()


def _wrap(line, width):
    line = str(line)
    return [line[i:i + width] for i in range(0, len(line), width)] or [""]
