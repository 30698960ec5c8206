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

A detector in three lines (:mod:`ddetr_edu.inference`)::

    from ddetr_edu import load_detector
    detector = load_detector("runs/demo/checkpoint_best.pth")  # no argument: the shipped reference model
    detections = detector.detect("photo.jpg", score_threshold=0.3)  # [Detection(class_name, score, box), ...]
"""
__version__ = "0.1.0"

_INFERENCE_NAMES = ("load_detector", "Detector", "Detection")


def __getattr__(name: str):
    """``from ddetr_edu import load_detector`` imports torch and the model on first use only, so
    that ``import ddetr_edu`` (the command line's start) stays light."""
    if name in _INFERENCE_NAMES:
        from ddetr_edu import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ddetr_edu' has no attribute {name!r}")


__all__ = ["__version__", *_INFERENCE_NAMES]
