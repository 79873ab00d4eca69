"""``[dropout]``: Darknet's dropout_layer.c at inference time -- the identity.

Both lineages give the layer the previous layer's output buffer (PJ src/parser.c:831, AB
src/parser.c:1516: ``l.output = net.layers[count-1].output``) and return from its forward when
not training (PJ src/dropout_layer.c:41, AB src/dropout_layer.c:70): later layers read the
previous layer's values under the dropout's index.  ``probability`` and AlexeyAB's dropblock
keys act in training only (the key audit accepts them).

MDFI builds it as a one-input ``[route]`` of the previous layer (kind ``route``): the same
float values, the same integers (a route of one input in its own format copies it; the C
engine makes it a view), and the same golden model (``route`` with shift 0).
"""

from __future__ import annotations

from .route import RouteLayer


class DropoutLayer(RouteLayer):
    kind = "route"

    @classmethod
    def from_section(cls, index, section, net):
        if index == 0:
            raise section.error("the first layer: Darknet gives a dropout the output of the layer before it "
                                "(src/parser.c, net.layers[count-1]), which does not exist")
        shape = net.shape_of(index - 1)
        layer = cls(index, section, [index - 1], [shape])
        layer.groups, layer.group_id = 1, 0
        layer.out_shape = shape
        return layer

    def describe(self) -> str:
        return f"dropout (inference: layer {self.inputs[0]} unchanged)"
