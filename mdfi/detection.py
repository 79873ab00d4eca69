"""The detection record returned by :meth:`mdfi.Model.detect` and printed by ``mdfi detect``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple


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
