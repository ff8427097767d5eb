"""Object boxes for ``/boxes`` (localisation: CorLoc), read from a text file or VOC XML files.

Text format (``--boxes FILE``), one box per line, in ORIGINAL-image pixels::

    # stem x0 y0 x1 y1
    2007_000027 174 101 349 351
    2007_000032 104 78 375 183
    2007_000032 133 88 197 123

- ``stem`` is the image file name without extension (the store's ``/names`` entry);
- ``x0 y0`` is the top-left corner and ``x1 y1`` the bottom-right corner as pixel EDGES, 0-based:
  a box covering a whole W x H image is ``0 0 W H`` (so a VOC box ``xmin..xmax`` inclusive, 1-based,
  is ``xmin-1 ymin-1 xmax ymax``); numbers may be fractional;
- blank lines and lines starting with ``#`` are ignored; an image may have any number of boxes.

VOC (``--voc-annotations DIR``): ``DIR/<stem>.xml`` for each image that has one, every ``<object>``'s
``<bndbox>`` converted as above (``difficult`` objects included).

In the store, ``/boxes`` is ``[M, 5]`` float32 rows ``(image index, x0, y0, x1, y1)`` in crop pixels
(after the resize and centre crop), clipped to the crop; a box with nothing left inside the crop
is dropped. Rows are ordered by image index, then by file order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .errors import ExtractError


def read_text(path: Path, names: set) -> dict:
    """Parses the text format; returns stem -> list of (x0, y0, x1, y1). Errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError("box file not found; pass a text file of lines 'stem x0 y0 x1 y1' (see Docs/datasets.md)",
                           path)
    out: dict = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            t = line.strip()
            if not t or t.startswith("#"):
                continue
            parts = t.split()
            where = f"{path}:{n}"
            if len(parts) != 5:
                raise ExtractError(f"has {len(parts)} fields; a box line is 'stem x0 y0 x1 y1' (5 fields)", where)
            stem = parts[0]
            try:
                x0, y0, x1, y1 = (float(v) for v in parts[1:])
            except ValueError:
                raise ExtractError(f"coordinates '{' '.join(parts[1:])}' are not numbers", where) from None
            if not (x1 > x0 and y1 > y0):
                raise ExtractError(f"box ({x0}, {y0}, {x1}, {y1}) is empty or inverted; need x1 > x0 and y1 > y0 "
                                   f"(corners as pixel edges, 0-based)", where)
            if stem not in names:
                raise ExtractError(f"names image '{stem}', which is not in the dataset; boxes are keyed by the image "
                                   f"file's stem", where)
            out.setdefault(stem, []).append((x0, y0, x1, y1))
    return out


def read_voc(folder: Path, names: set) -> dict:
    """Reads ``folder/<stem>.xml`` (PASCAL VOC) for each name; stem -> list of boxes (pixel edges)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExtractError("VOC annotation folder not found; pass the Annotations/ folder of VOC XML files", folder)
    out: dict = {}
    for stem in sorted(names):
        f = folder / f"{stem}.xml"
        if not f.is_file():
            continue
        try:
            root = ET.parse(f).getroot()
            for obj in root.iter("object"):
                bb = obj.find("bndbox")
                if bb is None:
                    continue
                xmin, ymin, xmax, ymax = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
                if not (xmax >= xmin and ymax >= ymin):
                    raise ValueError(f"inverted box {xmin} {ymin} {xmax} {ymax}")
                out.setdefault(stem, []).append((xmin - 1.0, ymin - 1.0, xmax, ymax))
        except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
            raise ExtractError(f"is not a readable VOC annotation ({e}); fix or remove it", f) from None
    return out
