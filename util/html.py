"""Static HTML pages of result images (dominate escapes every text and attribute it writes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import quote

import dominate
from dominate.tags import a, br, h3, img, meta, p, table, tbody, td, th, thead, tr
from dominate.util import text


class HTML:
    """An index.html in web_dir with its images under web_dir/images/."""

    def __init__(self, web_dir: str, title: str, refresh: int = 0):
        self.title = title
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.doc = dominate.document(title=title)
        if refresh > 0:
            with self.doc.head:
                meta(http_equiv="refresh", content=str(refresh))

    def get_image_dir(self) -> str:
        """Return the folder the page's images are written to."""
        return self.img_dir

    def add_header(self, header: str) -> None:
        """Add a level-3 heading."""
        with self.doc:
            h3(header)

    def add_paragraph(self, content: str) -> None:
        """Add a paragraph of plain text."""
        with self.doc:
            p(content)

    def add_table(self, header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> None:
        """Add a bordered table with a header row and rows of text cells."""
        attrs = {"border": 1, "style": "border-collapse: collapse; margin-bottom: 12px"}
        if table_id:
            attrs["id"] = table_id
        with self.doc:
            with table(**attrs):
                with thead():
                    with tr():
                        for cell in header:
                            th(cell, style="padding: 2px 8px")
                with tbody():
                    for row in rows:
                        with tr():
                            for cell in row:
                                td(cell, style="padding: 2px 8px; text-align: right")

    def add_images(self, ims: Sequence[str], txts: Sequence[str], width: int = 256, caption: str = "") -> None:
        """Add a row of images (file names inside images/), each linked to itself and captioned."""
        with self.doc:
            if caption:
                p(caption)
            with table(border=1, style="table-layout: fixed;"):
                with tr():
                    for name, label in zip(ims, txts):
                        link = "images/" + quote(name)
                        with td(style="word-wrap: break-word;", halign="center", valign="top"):
                            with p():
                                with a(href=link):
                                    img(style=f"width:{width}px", src=link)
                                br()
                                text(label)

    def save(self) -> str:
        """Write index.html and return its path."""
        path = os.path.join(self.web_dir, "index.html")
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.doc.render())
        return path
