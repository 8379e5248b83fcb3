"""Table 4: Mask R-CNN on COCO with a BlockSwap backbone (docs/detection.md).

`model` builds the detector over this package's ResNets, `coco` reads COCO in its own layout,
`search` ranks backbone candidates by Fisher potential through the detection loss, `train` trains
with torchvision's reference Mask R-CNN schedule and `evaluate` scores with COCOeval.
"""

# The COCO metrics of a detection metrics file (`evaluate` writes them, Table 4 reads them): box and
# mask AP, each at these six readings of COCOeval's summary.
IOU_TYPES = ("bbox", "segm")
AP_NAMES = ("AP", "AP50", "AP75", "APS", "APM", "APL")
