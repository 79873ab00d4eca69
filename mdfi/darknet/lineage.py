"""Which Darknet a cfg belongs to: pjreddie's original or AlexeyAB's fork.

The two lineages compute differently where a user would not look (docs/darknet.md lists
every difference with file:line): batch-norm epsilon, fused batch norm, the logistic in
float or double, letterbox or plain resize, box correction, NMS.  MDFI follows the lineage
the model comes from.

Detection: a cfg is AlexeyAB's when it uses anything only AlexeyAB's parser knows -- a key
of :mod:`mdfi.darknet.cfgkeys` read by AlexeyAB's ``src/parser.c`` and not by pjreddie's, a section
type only AlexeyAB has, an activation only AlexeyAB's ``get_activation`` knows, or a
``[shortcut]`` with several ``from`` layers.  Anything else is pjreddie's (the classic
YOLOv2/v3 cfgs, which both forks ship unchanged, keep the behaviour and the reference
results MDFI had before lineages existed).  ``darknet="pjreddie"|"alexeyab"`` (CLI
``--darknet``) overrides the detection.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from . import cfgkeys
from ..errors import CfgError

LINEAGES = ("pjreddie", "alexeyab")

#: Sections only AlexeyAB's string_to_layer_type knows (AB src/parser.c:55-100).
AB_SECTIONS = frozenset("""
scale_channels sam gaussian_yolo local_avg local_avgpool reorg3d empty silence implicit
implicit_add implicit_mul contrastive conv_lstm history
""".split())

#: Activations only AlexeyAB's get_activation knows (AB src/activations.c:50-76).
AB_ACTIVATIONS = frozenset("""
swish mish hard_mish relu6 gelu revleaky normalize_channels normalize_channels_softmax
normalize_channels_softmax_maxval
""".split())


def check(name: Optional[str]) -> Optional[str]:
    """Validate a lineage name (None = detect)."""
    if name is None:
        return None
    if name not in LINEAGES:
        raise CfgError(f"darknet={name!r}: expected one of {', '.join(LINEAGES)}")
    return name


def detect(sections: Sequence) -> Tuple[str, str]:
    """``(lineage, reason)`` for parsed cfg sections (``reason`` names the first marker)."""
    for sec in sections:
        if sec.name in AB_SECTIONS:
            return "alexeyab", f"{sec.path}:{sec.line}: section [{sec.name}]"
        for key, opt in sec.options.items():
            k = cfgkeys.lookup(sec.name, key)
            if k is not None and k.ab is not None and k.pj is None:
                return "alexeyab", f"{sec.path}:{opt.line}: [{sec.name}] {key}= (AlexeyAB src/parser.c:{k.ab})"
            if key == "activation" and opt.value in AB_ACTIVATIONS:
                return "alexeyab", f"{sec.path}:{opt.line}: activation={opt.value}"
            if sec.name == "shortcut" and key == "from" and "," in opt.value.strip(","):
                return "alexeyab", f"{sec.path}:{opt.line}: [shortcut] from= with several layers"
    return "pjreddie", "no AlexeyAB-only section, key or activation"


def resolve(sections: Sequence, darknet: Optional[str]) -> Tuple[str, str]:
    """The lineage to use: ``darknet`` if given, else :func:`detect`."""
    if check(darknet) is not None:
        return darknet, "given explicitly"
    return detect(sections)
