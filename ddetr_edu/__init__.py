"""ddetr-edu: Deformable DETR to learn, run and train.

Axis glossary, used in every einops pattern and shape comment of the project:

====  ==================================================================
n     batch (images)
q     queries (object queries in the decoder, every pixel in the encoder)
s     flattened tokens of all levels, S = sum_l H_l * W_l
m     attention heads (M)
l     feature levels (L)
k     sampling points per head and level (K)
d     channels per head (D = C / M)
c     model channels (C, ``d_model``)
h, w  height, width of a feature map
xy    the two coordinates of a point, (x, y) = (along W, along H)
====  ==================================================================

Coordinates: boxes are ``cxcywh`` normalised to [0, 1] unless a name says ``xyxy`` or pixels;
sampling locations are normalised (x, y) in the pixel-centre convention of
``grid_sample(align_corners=False)``.
"""
__version__ = "0.1.0"
