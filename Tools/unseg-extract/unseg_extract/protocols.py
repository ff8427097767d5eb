"""Label protocols (raw dataset ids -> evaluation class ids), as the unseg toolkit defines them.

Kept equal to ``Sources/.../LabelProtocol.swift`` (names, order, mapping); a test checks every raw
id of each protocol. A protocol here also says which raw ids a dataset may legitimately contain
(``valid_raw``): ids mapped to a class, the dataset's own void ids, and 255 (ignore). Any other id
in a label file is an error, not a silent ignore, so that a wrong file or protocol is noticed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class Protocol:
    """A label protocol.

    ``lut``: ``[256]`` uint8, raw id -> class id (``255`` = ignore). ``valid_raw``: ``[256]`` bool,
    raw ids allowed in a label file of this protocol's dataset. ``class_names``: one per class.
    """

    name: str
    class_names: tuple
    lut: np.ndarray
    valid_raw: np.ndarray
    raw_description: str

    @property
    def class_count(self) -> int:
        return len(self.class_names)


def _make(name, class_names, pairs, valid_ids, raw_description) -> Protocol:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for raw, cls in pairs:
        lut[raw] = cls
    valid = np.zeros(256, dtype=bool)
    valid[list(valid_ids)] = True
    valid[IGNORE] = True
    lut.setflags(write=False)
    valid.setflags(write=False)
    return Protocol(name, tuple(class_names), lut, valid, raw_description)


CITYSCAPES27_NAMES = (
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail",
    "bridge", "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train",
    "motorcycle", "bicycle")

# Cityscapes labelIds 7..33 -> 0..26; 0..6 are void (unlabeled, ego vehicle, ...) -> ignore.
CITYSCAPES27 = _make("cityscapes27", CITYSCAPES27_NAMES, [(i, i - 7) for i in range(7, 34)],
                     range(0, 34), "Cityscapes labelIds 0..33 (gtFine *_labelIds.png), 255 = ignore")

COCOSTUFF27_NAMES = (
    "electronic", "appliance", "food (things)", "furniture (things)", "indoor", "kitchen",
    "accessory", "animal", "outdoor", "person", "sports", "vehicle", "ceiling", "floor",
    "food (stuff)", "furniture (stuff)", "rawmaterial", "textile", "wall", "window", "building",
    "ground", "plant", "sky", "solid", "structural", "water")

# Fine COCO-Stuff ids (0-based, 0..181) of each coarse class, as in shared/specs/evaluation.md.
COCOSTUFF_FINE_IDS = (
    list(range(71, 77)), list(range(77, 83)), list(range(51, 61)), list(range(61, 71)),
    list(range(83, 91)), list(range(43, 51)), list(range(25, 33)), list(range(15, 25)),
    list(range(9, 15)), [0], list(range(33, 43)), list(range(1, 9)),
    [101, 102],
    [100] + list(range(113, 118)),
    [120, 121, 152, 169],
    [97, 106, 107, 109, 111, 122, 129, 132, 155, 160, 164],
    [99, 131, 138, 142],
    [91, 92, 103, 104, 108, 130, 136, 140, 151, 166, 167],
    list(range(170, 177)),
    [179, 180],
    [94, 95, 127, 150, 157, 165],
    [110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158],
    [93, 96, 118, 123, 128, 133, 141, 162, 168],
    [105, 156],
    [126, 134, 149, 159, 161, 181],
    [98, 112, 137, 145, 163],
    [119, 147, 154, 177, 178],
)

COCOSTUFF27 = _make("cocostuff27", COCOSTUFF27_NAMES,
                    [(fine, coarse) for coarse, ids in enumerate(COCOSTUFF_FINE_IDS) for fine in ids],
                    range(0, 182), "COCO-Stuff fine ids 0..181 (stuffthingmaps PNGs), 255 = ignore")

POTSDAM3 = _make("potsdam3", ("road/car", "building/clutter", "vegetation"),
                 [(0, 0), (4, 0), (1, 1), (5, 1), (2, 2), (3, 2)],
                 range(0, 6), "ISPRS Potsdam ids 0..5 (gt/*.mat key 'gt'), 255 = ignore")

KNOWN = {p.name: p for p in (CITYSCAPES27, COCOSTUFF27, POTSDAM3)}


def generic(class_count: int, class_names=None) -> Protocol:
    """``generic<N>``: class ids ``0..N-1`` stored as they are, ``255`` ignore (what unseg calls genericN)."""
    if not 1 <= class_count <= 255:
        raise ValueError(f"class count {class_count} must be in 1..255")
    names = tuple(class_names) if class_names else tuple(f"class{i}" for i in range(class_count))
    return _make(f"generic{class_count}", names, [(i, i) for i in range(class_count)],
                 range(class_count), f"class ids 0..{class_count - 1}, 255 = ignore")


def class_id_protocol(p: Protocol) -> Protocol:
    """The same protocol for files that already hold its class ids (``0..n-1``, 255 ignore)."""
    n = p.class_count
    return _make(p.name, p.class_names, [(i, i) for i in range(n)], range(n),
                 f"{p.name} class ids 0..{n - 1}, 255 = ignore")


def named(name: str) -> Protocol:
    """A known protocol by name, or ``genericN``; ``ValueError`` listing the known names otherwise."""
    if name in KNOWN:
        return KNOWN[name]
    if name.startswith("generic") and name[7:].isdigit():
        return generic(int(name[7:]))
    raise ValueError(f"unknown label protocol '{name}'; known: {', '.join(KNOWN)}, or genericN "
                     f"(N classes 1..255, ids stored as they are)")
