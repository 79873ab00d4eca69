"""The detection record returned by :meth:`mdfi.Model.detect` and printed by ``mdfi detect``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


@dataclass(frozen=True)
class Detection:
    """One (box, class) pair above the threshold, like one line of Darknet's output.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the *original* image (not the letterboxed
    network input), clipped to the image.  ``confidence`` is objectness x class
    probability (Darknet's ``prob``); ``objectness`` is kept for analysis.
    """

    class_id: int
    label: str
    confidence: float
    box: Tuple[float, float, float, float]
    objectness: float = 0.0
    # Box centre and size relative to the original image (Darknet's bbox after
    # correct_yolo_boxes), unclipped; used to compare with Darknet's own output.
    rel_box: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def to_dict(self) -> Dict[str, object]:
        """The JSON form used by ``mdfi detect --json``."""
        return {
            "class_id": int(self.class_id),
            "label": self.label,
            "confidence": round(float(self.confidence), 6),
            "box": [round(float(v), 2) for v in self.box],
        }

    def __str__(self) -> str:  # Darknet prints "dog: 57%"
        x1, y1, x2, y2 = self.box
        return (f"{self.label}: {self.confidence * 100:.0f}%"
                f"  box=({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})")


def detections_to_json(image: str, width: int, height: int, dets: List[Detection]) -> Dict[str, object]:
    """One JSON object per image, as ``mdfi detect --json`` prints it."""
    return {"image": image, "width": int(width), "height": int(height),
            "detections": [d.to_dict() for d in dets]}


class Detections(List[Detection]):
    """What :meth:`mdfi.Model.detect` returns: a list of :class:`Detection` (highest
    confidence first) that also knows its image, so it can draw itself::

        dets = model.detect("image.jpg")
        dets.plot().show()                  # a PIL image with boxes and labels
        dets.save("annotated.jpg")

    ``source`` is what was passed to ``detect`` (a path, a PIL image or an array; a path is
    read again when plotting, so a list of results does not hold every decoded image).
    """

    def __init__(self, detections=(), source: Any = None, *, exif: bool = False,
                 num_classes: int = 80) -> None:
        super().__init__(detections)
        self.source = source
        self.exif = exif
        self.num_classes = max(int(num_classes), 1)

    def plot(self, image: Optional[Any] = None, *, line_width: Optional[int] = None, labels: bool = True,
             conf: bool = True) -> "Image.Image":
        """The annotated image (RGB ``PIL.Image.Image``) of these detections on ``image``
        (default: the image they were detected on); see :func:`mdfi.draw.draw_detections`."""
        from .draw import draw_detections
        from .errors import ArgumentError
        from .image import load_image
        src = self.source if image is None else image
        if src is None:
            raise ArgumentError("Detections.plot(): these detections do not know their image; pass image=")
        rgb = load_image(src, exif=self.exif) if image is None else load_image(src)
        return draw_detections(rgb, self, num_classes=self.num_classes, line_width=line_width,
                               labels=labels, conf=conf)

    def save(self, path: "str | os.PathLike[str]", **kw: Any) -> None:
        """Write :meth:`plot` to ``path`` (format from the extension, e.g. ``.jpg``)."""
        from .image import save_image
        save_image(self.plot(**kw), path)

    def __repr__(self) -> str:
        return f"Detections({list.__repr__(self)})"
