from .depth_scaling import ScaleDepthWithImage  # noqa: F401
from .dvps_loading import (  # noqa: F401
    LoadKittiDepthAnnotation,
    LoadNextImageFromFile,
    LoadPanopticAnnotation,
)
from .formatting import PackDVPSInputs  # noqa: F401
